import Foundation
import Glibc
import Testing
import TockClient
import TockProtocol
import TockSockets
import TockTestSupport

/// Runs `body` on a thread of its own (blocking socket and process calls must not occupy the
/// cooperative pool, which the parallel tests share).
func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

/// How a fake NTP server answers one request (or nil: no answer).
typealias FakeBehaviour = @Sendable (_ request: [UInt8], _ receiveTime: UTCInstant) -> [UInt8]?

/// A UDP server on 127.0.0.1:0 that answers with `behaviour`, on a thread of its own, until
/// stopped.
final class FakeUDPServer: @unchecked Sendable {
    let fd: Int32
    let address: SocketEndpoint
    private let behaviour: FakeBehaviour
    private let lock = NSLock()
    private var stopping = false
    private var _requests: [[UInt8]] = []
    private let exited = DispatchSemaphore(value: 0)

    init(_ behaviour: @escaping FakeBehaviour) {
        self.behaviour = behaviour
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0)
        let requested = SocketEndpoint(ip: "127.0.0.1", port: 0)!
        precondition(requested.withSockAddr { bind(fd, $0, $1) } == 0, "bind: \(errno)")
        self.fd = fd
        address = try! Sockets.localAddress(fd)
        Thread { [self] in self.serve() }.start()
    }

    /// The requests received so far.
    var requests: [[UInt8]] { lock.withLock { _requests } }

    /// SO_TIMESTAMPNS (and SCM_TIMESTAMPNS) on Linux.
    static let timestampOption: Int32 = 35

    private func serve() {
        defer { exited.signal() }
        // T2 is the kernel's receive timestamp, as a real server takes it: a time read after
        // this thread wakes up would include its scheduling delay, which on a busy machine
        // is milliseconds, in the offset.
        var on: Int32 = 1
        setsockopt(fd, SOL_SOCKET, Self.timestampOption, &on, socklen_t(MemoryLayout<Int32>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var control = [UInt8](repeating: 0, count: 256)
        while !lock.withLock({ stopping }) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 20) > 0 else { continue }
            var from = sockaddr_storage()
            var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            var kernelTime: UTCInstant?
            let n = buffer.withUnsafeMutableBytes { raw in
                control.withUnsafeMutableBytes { ctl in
                    withUnsafeMutablePointer(to: &from) { fromPointer in
                        var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                        return withUnsafeMutablePointer(to: &iov) { iovPointer in
                            var msg = msghdr()
                            msg.msg_name = UnsafeMutableRawPointer(fromPointer)
                            msg.msg_namelen = fromLength
                            msg.msg_iov = iovPointer
                            msg.msg_iovlen = 1
                            msg.msg_control = ctl.baseAddress
                            msg.msg_controllen = ctl.count
                            let n = recvmsg(fd, &msg, Int32(MSG_DONTWAIT))
                            fromLength = msg.msg_namelen
                            if n >= 0 { kernelTime = ReceivedControl(reading: &msg).receiveTime }
                            return n
                        }
                    }
                }
            }
            guard n >= 0 else { continue }
            let request = Array(buffer[..<n])
            let receiveTime = kernelTime ?? SystemClock.now()
            lock.withLock { _requests.append(request) }
            guard let reply = behaviour(request, receiveTime) else { continue }
            _ = reply.withUnsafeBytes { raw in
                withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, raw.baseAddress, raw.count, 0, $0, fromLength) }
                }
            }
        }
    }

    /// Stops the thread and closes the socket.
    func stop() {
        lock.withLock { stopping = true }
        exited.wait()
        close(fd)
    }

    /// Runs `body` with a fake server and stops it afterwards.
    static func with<T>(_ behaviour: @escaping FakeBehaviour, _ body: (FakeUDPServer) async throws -> T) async rethrows -> T {
        let server = FakeUDPServer(behaviour)
        defer { server.stop() }
        return try await body(server)
    }
}

// MARK: - Replies

enum Replies {
    /// A reply as a correct server builds it: mode 4, version echoed, origin = the request's
    /// transmit timestamp, T2 = receipt, T3 = now, stratum 2, leap `leap`.
    static func correct(leap: UInt8 = 0, stratum: UInt8 = 2, referenceID: UInt32 = 0x7F00_0001) -> FakeBehaviour {
        { request, receiveTime in
            guard request.count >= 48 else { return nil }
            var reply = [UInt8](repeating: 0, count: 48)
            reply[0] = leap << 6 | (request[0] & 0x38) | 4
            reply[1] = stratum
            reply[2] = request[2]
            reply[3] = UInt8(bitPattern: -20)
            put32(&reply, 8, 0x0000_0010)  // root dispersion ~ 0.24 ms
            put32(&reply, 12, referenceID)
            put64(&reply, 16, NTPTimestamp(receiveTime.advanced(byNanoseconds: -1_000_000_000)).rawValue)
            reply[24..<32] = request[40..<48]
            put64(&reply, 32, NTPTimestamp(receiveTime).rawValue)
            put64(&reply, 40, NTPTimestamp(SystemClock.now()).rawValue)
            return reply
        }
    }

    /// A correct reply with the origin timestamp changed.
    static func wrongOrigin() -> FakeBehaviour {
        let base = correct()
        return { request, time in
            guard var reply = base(request, time) else { return nil }
            reply[31] ^= 0x01
            return reply
        }
    }

    /// A kiss-o'-death: stratum 0, the code in the reference ID, origin echoed, mode 4.
    static func kissOfDeath(_ code: String, echoOrigin: Bool = true) -> FakeBehaviour {
        let base = correct()
        return { request, time in
            guard var reply = base(request, time) else { return nil }
            reply[0] = 0xE4 & 0xC7 | (request[0] & 0x38)  // leap 3, version echoed, mode 4
            reply[1] = 0
            reply.replaceSubrange(12..<16, with: Array(code.utf8.prefix(4)))
            if !echoOrigin { reply[31] ^= 0x01 }
            return reply
        }
    }

    /// Leap indicator 3 at stratum 2: an unsynchronised server.
    static func unsynchronized() -> FakeBehaviour {
        correct(leap: 3)
    }

    static func put32(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt32(24 - 8 * i)) }
    }

    static func put64(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * i)) }
    }
}

/// A loopback UDP port nothing listens on: bound, read back and released.
func unusedUDPPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    let address = SocketEndpoint(ip: "127.0.0.1", port: 0)!
    _ = address.withSockAddr { bind(fd, $0, $1) }
    return (try? Sockets.localAddress(fd).port) ?? 9
}

/// A short description of a query's outcome, for expectations and messages.
func describe(_ error: ClientError?) -> String {
    guard let error else { return "no error" }
    switch error {
    case .resolution: return "resolution"
    case .timeout: return "timeout"
    case .network(_, let e): return "network(\(e.operation), errno \(e.errorNumber))"
    case .unreadableReply: return "unreadableReply"
    case .rejected(_, let problem):
        switch problem {
        case .bogusOrigin: return "bogusOrigin"
        case .kissOfDeath(let code): return "kissOfDeath(\(code))"
        case .unsynchronized: return "unsynchronized"
        default: return "rejected(\(problem))"
        }
    case .ntsKeyEstablishment(_, let failure): return "ntsKeyEstablishment(\(failure))"
    case .roughtimeRejected(_, let problem): return "roughtimeRejected(\(problem))"
    case .ntsRejected(_, let problem): return "ntsRejected(\(problem))"
    }
}

// MARK: - The tock executable

/// The directory with the build products: the test binary's (Linux: `tockPackageTests.xctest`
/// is an executable there; macOS: a bundle there).
func buildProductsDirectory() -> URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    // macOS: .../debug/tockPackageTests.xctest/Contents/MacOS/tockPackageTests
    while url.path.contains(".xctest") { url = url.deletingLastPathComponent() }
    return url
}


/// Runs `executable` with `arguments` (at most `timeout` seconds) and collects its output.
func run(_ executable: URL, _ arguments: [String], timeout: Double = 10) async -> ProcessResult {
    await blocking { spawn(executable.path, arguments, timeout: timeout) }
}
