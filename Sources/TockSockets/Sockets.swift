import CTockShims
import Glibc

/// Small wrappers over the socket calls tock's transports and client share.
package enum Sockets {
    /// SOCK_DGRAM, as an `Int32`.
    package static let datagram = Int32(SOCK_DGRAM.rawValue)
    /// SOCK_STREAM, as an `Int32`.
    package static let stream = Int32(SOCK_STREAM.rawValue)

    /// A new socket, close-on-exec.
    package static func open(family: Int32, type: Int32) throws(SystemError) -> Int32 {
        let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        return fd
    }

    /// Sets an integer socket option.
    package static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32, _ what: String) throws(SystemError) {
        var v = value
        guard setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SystemError("setsockopt(\(what))")
        }
    }

    /// Sets SO_RCVTIMEO / SO_SNDTIMEO.
    package static func setTimeout(_ fd: Int32, option: Int32, nanoseconds: Int64) throws(SystemError) {
        var tv = timeval(tv_sec: Int(nanoseconds / 1_000_000_000), tv_usec: Int(nanoseconds % 1_000_000_000 / 1000))
        guard setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
            throw SystemError("setsockopt(timeout)")
        }
    }

    /// binds `fd` to `address`.
    package static func bind(_ fd: Int32, to address: SocketEndpoint) throws(SystemError) {
        let rc = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard rc == 0 else { throw SystemError("bind") }
    }

    /// The address a socket is bound to (to read back port 0).
    package static func localAddress(_ fd: Int32) throws(SystemError) -> SocketEndpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw SystemError("getsockname") }
        return SocketEndpoint(storage: storage, length: length)
    }

    /// Waits until `fd` is readable or `timeoutNanoseconds` pass; false on timeout.
    package static func waitReadable(_ fd: Int32, timeoutNanoseconds: Int64) throws(SystemError) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: max(0, (timeoutNanoseconds + 999_999) / 1_000_000))
        while true {
            let rc = poll(&pfd, 1, ms)
            if rc < 0 {
                if errno == EINTR { continue }
                throw SystemError("poll")
            }
            return rc > 0
        }
    }
}
