import CTockShims
import Glibc
import TockProtocol
import TockSockets

/// A connected client socket with receive timestamps, for one exchange.
///
/// Each exchange opens its own socket, so every request leaves from a fresh ephemeral port that
/// the kernel chooses at random (RFC 9109), and the connected socket accepts datagrams only
/// from the server's address.
struct ClientSocket: ~Copyable {
    let fd: Int32
    let server: SocketEndpoint

    init(server: SocketEndpoint, type: Int32) throws(ClientError) {
        do {
            fd = try Sockets.open(family: server.family, type: type)
        } catch {
            throw .network(server: server.description, error)
        }
        self.server = server
        try? Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPNS, value: 1, "SO_TIMESTAMPNS")
    }

    deinit {
        close(fd)
    }

    /// Connects; for TCP, waits at most until `deadline` (monotonic nanoseconds).
    func connect(deadline: Int64) throws(ClientError) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        let rc = server.withSockAddr { Glibc.connect(fd, $0, $1) }
        if rc != 0 {
            guard errno == EINPROGRESS else { throw .network(server: server.description, SystemError("connect")) }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ms = Int32(clamping: max(0, (deadline - SystemClock.monotonicNanoseconds()) / 1_000_000))
            guard poll(&pfd, 1, ms) == 1 else { throw .timeout(server: server.description, seconds: 0) }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else { throw .network(server: server.description, SystemError("connect", errorNumber: err)) }
        }
    }

    /// Connects like `connect(deadline:)`, but a TCP connection not made by `deadline` throws
    /// `timedOut` (which names the server and the whole timeout as the caller states them).
    func connect(deadline: Int64, timedOut: @autoclosure () -> ClientError) throws(ClientError) {
        do throws(ClientError) {
            try connect(deadline: deadline)
        } catch {
            if case .timeout = error { throw timedOut() }
            throw error
        }
    }

    /// Sends `bytes`, returning the local time just before the call (T1).
    func send(_ bytes: [UInt8]) throws(ClientError) -> UTCInstant {
        let t1 = SystemClock.now()
        let rc = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard rc == bytes.count else { throw .network(server: server.description, SystemError("send")) }
        return t1
    }

    /// Receives one datagram (or stream chunk) before `deadline`; nil on timeout, an empty
    /// array at end of stream. Returns the kernel's receive timestamp (T4) when it has one.
    func receive(deadline: Int64, capacity: Int = 2048) throws(ClientError) -> (bytes: [UInt8], time: UTCInstant)? {
        while true {
            let remaining = deadline - SystemClock.monotonicNanoseconds()
            guard remaining > 0 else { return nil }
            let readable: Bool
            do {
                readable = try Sockets.waitReadable(fd, timeoutNanoseconds: remaining)
            } catch {
                throw .network(server: server.description, error)
            }
            guard readable else { return nil }
            var buffer = [UInt8](repeating: 0, count: capacity)
            var control = [UInt8](repeating: 0, count: 128)
            let (n, kernelTime): (Int, UTCInstant?) = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { ctl in
                    var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var msg = msghdr()
                        msg.msg_iov = iovp
                        msg.msg_iovlen = 1
                        msg.msg_control = ctl.baseAddress
                        msg.msg_controllen = ctl.count
                        let n = recvmsg(fd, &msg, Int32(MSG_DONTWAIT))
                        return (n, n >= 0 ? ReceivedControl(reading: &msg).receiveTime : nil)
                    }
                }
            }
            let now = SystemClock.now()
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw .network(server: server.description, SystemError("recv"))
            }
            return (Array(buffer[..<n]), kernelTime ?? now)
        }
    }
}
