import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets
import TockTestSupport

// MARK: - Running blocking code off the cooperative pool

/// Runs `body` on a thread of its own and returns its result.
///
/// Every blocking call in these tests (raw sockets, NTPQuery, TextTimeQuery, Process) goes
/// through here: the cooperative pool has one thread per core, and tests blocked in poll() on
/// it would starve the servers' own async start-up in parallel tests.
func blockingThrows<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
        let thread = Thread {
            do {
                continuation.resume(returning: try body())
            } catch {
                continuation.resume(throwing: error)
            }
        }
        thread.start()
    }
}

/// `blocking` for code that cannot throw.
func blocking<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns its last value.
func eventually(timeout: Duration = .seconds(2), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// A flag set from any thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

// MARK: - Servers

let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

let loopbackV4 = SocketEndpoint(ip: "127.0.0.1", port: 0)!
let loopbackV6 = SocketEndpoint(ip: "::1", port: 0)!

extension TockServerConfiguration {
    /// Every requested service on 127.0.0.1:0 and [::1]:0.
    static func loopback(
        ntp: Bool = true,
        daytime: Bool = true,
        time: Bool = true,
        daytimeFormat: DaytimeFormat = .hms,
        daytimeZone: DaytimeZone = .local,
        clockSource: ClockSource = .local(stratum: 10),
        ntpWorkers: Int = 2,
        tcpConnectionTimeout: Duration = .seconds(5)
    ) -> TockServerConfiguration {
        TockServerConfiguration(
            ntpListeners: ntp ? [loopbackV4, loopbackV6] : [],
            daytimeListeners: daytime ? [loopbackV4, loopbackV6] : [],
            timeListeners: time ? [loopbackV4, loopbackV6] : [],
            daytimeFormat: daytimeFormat,
            daytimeZone: daytimeZone,
            clockSource: clockSource,
            ntpWorkers: ntpWorkers,
            tcpConnectionTimeout: tcpConnectionTimeout
        )
    }
}

/// A TockServer running in a ServiceGroup, as tockd runs it.
final class RunningServer: @unchecked Sendable {
    let server: TockServer
    let group: ServiceGroup
    let runTask: Task<Void, Error>
    let finished: Flag

    init(_ server: TockServer) {
        self.server = server
        let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: quietLogger))
        self.group = group
        let finished = Flag()
        self.finished = finished
        self.runTask = Task {
            defer { finished.set() }
            try await group.run()
        }
    }

    /// Triggers graceful shutdown and waits (at most `timeout`) for the server to stop
    /// (`TockServer.State.stopped`: listeners closed, workers joined); returns whether it did.
    ///
    /// The server's own shutdown is what is timed. The service group's `run` returns after it,
    /// on the task pool every test shares; under CPU starvation that hop alone has taken over
    /// 5 s (seen with twice as many CPU hogs as cores), so it gets a wide bound of its own and
    /// a message of its own. If the group has not returned by then, the run task is cancelled.
    @discardableResult
    func stop(timeout: Duration = .seconds(5)) async -> Bool {
        await group.triggerGracefulShutdown()
        let stopped = await eventually(timeout: timeout) { server.currentState == .stopped }
        let returned = await eventually(timeout: .seconds(30)) { finished.isSet }
        if !returned {
            Issue.record("the service group's run() did not return within 30 s of graceful shutdown (server state: \(server.currentState))")
            runTask.cancel()
        }
        do {
            try await runTask.value
        } catch {
            Issue.record("the service group's run() threw: \(error)")
        }
        return stopped
    }
}

/// Ports bound by test servers that are running now, to notice two of them sharing one (see
/// `PortZeroTests`: the kernel may hand an SO_REUSEPORT socket bound to port 0 a port another
/// such socket already has).
private let livePorts = NSLock()
nonisolated(unsafe) private var livePortSet: [String: Int] = [:]

private func udpKeys(_ server: TockServer) -> [String] {
    (server.addresses(.ntp) + server.addresses(.daytime) + server.addresses(.time) + server.addresses(.roughtime)).map { "udp \($0)" }
}

/// Starts a server with `configuration`, waits until it answers, runs `body`, and shuts the
/// server down gracefully (checking that it stops within 5 s).
func withServer(
    _ configuration: TockServerConfiguration,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TockServer) async throws -> Void
) async throws {
    let server: TockServer
    do throws(ListenerError) {
        server = try TockServer(configuration: configuration, logger: quietLogger)
    } catch {
        let allPortsZero = (configuration.ntpListeners + configuration.daytimeListeners + configuration.timeListeners).allSatisfy { $0.port == 0 }
        if allPortsZero, error.errorNumber == EADDRINUSE {
            // Not retried: this is the port-0 bug PortZeroTests shows (the kernel gave a UDP
            // listener a port another SO_REUSEPORT socket, e.g. a concurrently running test
            // server, already had, and the TCP twin then collided with that server's listener).
            Issue.record("port 0 gave a port in use: \(error.description) (see PortZeroTests)", sourceLocation: sourceLocation)
        }
        throw error
    }
    let keys = udpKeys(server)
    livePorts.withLock {
        for key in keys {
            if livePortSet[key, default: 0] > 0 {
                Issue.record("UDP address \(key) was given to two running test servers (port 0 with SO_REUSEPORT)", sourceLocation: sourceLocation)
            }
            livePortSet[key, default: 0] += 1
        }
    }
    let running = RunningServer(server)
    do {
        try await waitUntilReady(server)
        try await body(server)
    } catch {
        await running.stop()
        livePorts.withLock { for key in keys { livePortSet[key]! -= 1 } }
        throw error
    }
    let stopped = await running.stop()
    livePorts.withLock { for key in keys { livePortSet[key]! -= 1 } }
    #expect(stopped, "the server did not stop within 5 s of graceful shutdown", sourceLocation: sourceLocation)
}

struct NotReady: Error, CustomStringConvertible {
    var description: String
}

/// Waits until the server says it serves (`TockServer.State.serving`: every worker thread
/// started and every TCP listener accepting), the signal tockd gives systemd as READY=1.
///
/// Readiness comes from the server, not from a probe answered within a fixed time, which a
/// loaded machine (many test servers starting at once on two cores) can miss. The 60 s bound
/// only keeps a broken server from hanging the suite.
func waitUntilReady(_ server: TockServer) async throws {
    let ready = await eventually(timeout: .seconds(60)) { server.currentState == .serving }
    guard ready else { throw NotReady(description: "the server did not reach .serving within 60 s (state \(server.currentState))") }
}

// MARK: - Raw UDP

/// A UDP socket for raw probes.
final class UDPProbe: @unchecked Sendable {
    let fd: Int32
    let target: SocketEndpoint

    init(target: SocketEndpoint) {
        self.target = target
        // On failure (EMFILE) fd stays -1: sends fail and nothing is received, so the test
        // fails instead of the process crashing.
        fd = socket(target.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        // Connected, so only the target's datagrams are received: tests run in parallel, and a
        // late reply from another test's server to a reused ephemeral port must not count.
        if fd >= 0 { _ = target.withSockAddr { connect(fd, $0, $1) } }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Sends `bytes` to the target; returns whether the kernel took the whole datagram.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard fd >= 0 else { return false }
        let rc = bytes.withUnsafeBytes { raw in
            target.withSockAddr { sendto(fd, raw.baseAddress, raw.count, 0, $0, $1) }
        }
        return rc == bytes.count
    }

    /// The next datagram, or nil if none arrives within `timeoutMilliseconds`.
    func receive(timeoutMilliseconds: Int32) -> [UInt8]? {
        guard fd >= 0 else { return nil }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let deadline = SystemClock.monotonicNanoseconds() + Int64(timeoutMilliseconds) * 1_000_000
        while true {
            let remaining = Int32(max(0, (deadline - SystemClock.monotonicNanoseconds()) / 1_000_000))
            let rc = poll(&pfd, 1, remaining)
            if rc < 0, errno == EINTR { continue }
            guard rc > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return nil
            }
            return Array(buffer[..<n])
        }
    }
}

/// Sends `request` from a fresh socket and returns the first reply, or nil after the timeout.
func udpExchange(_ request: [UInt8], to target: SocketEndpoint, timeoutMilliseconds: Int32 = 1000) -> [UInt8]? {
    let probe = UDPProbe(target: target)
    guard probe.send(request) else { return nil }
    return probe.receive(timeoutMilliseconds: timeoutMilliseconds)
}

// MARK: - Raw TCP

enum StreamEnd: Equatable, Sendable {
    /// The server closed with FIN (read returned 0).
    case endOfFile
    /// The server reset the connection (ECONNRESET).
    case reset
    /// Neither within the timeout.
    case timedOut
    /// connect or read failed otherwise.
    case failed(Int32)
}

/// Opens a TCP connection (blocking connect; loopback). Returns the fd, or -errno.
func tcpConnect(to target: SocketEndpoint) -> Int32 {
    let fd = socket(target.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return -errno }
    let rc = target.withSockAddr { connect(fd, $0, $1) }
    if rc != 0 {
        let e = errno
        close(fd)
        return -e
    }
    return fd
}

/// Reads from `fd` until end of stream, reset or the timeout; does not close it.
func tcpRead(_ fd: Int32, timeoutMilliseconds: Int32) -> (bytes: [UInt8], end: StreamEnd) {
    var bytes: [UInt8] = []
    let deadline = SystemClock.monotonicNanoseconds() + Int64(timeoutMilliseconds) * 1_000_000
    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let remaining = Int32(max(0, (deadline - SystemClock.monotonicNanoseconds()) / 1_000_000))
        let rc = poll(&pfd, 1, remaining)
        if rc < 0, errno == EINTR { continue }
        guard rc > 0 else { return (bytes, .timedOut) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n == 0 { return (bytes, .endOfFile) }
        if n < 0 {
            let e = errno
            if e == EAGAIN || e == EINTR { continue }
            return (bytes, e == ECONNRESET ? .reset : .failed(e))
        }
        bytes += buffer[..<n]
    }
}

/// Connects, reads everything the server sends until it closes, and closes.
func tcpReadAll(from target: SocketEndpoint, timeoutMilliseconds: Int32 = 2000) -> (bytes: [UInt8], end: StreamEnd) {
    let fd = tcpConnect(to: target)
    guard fd >= 0 else { return ([], .failed(-fd)) }
    defer { close(fd) }
    return tcpRead(fd, timeoutMilliseconds: timeoutMilliseconds)
}

// MARK: - NTP bytes

/// A 48-byte NTP header: first byte from leap/version/mode, poll byte `poll`, transmit
/// timestamp `transmit` (random by default), all else zero; followed by `trailer`.
func ntpRequest(leap: UInt8 = 0, version: UInt8, mode: UInt8, poll: UInt8 = 0, transmit: UInt64 = UInt64.random(in: 1...UInt64.max), trailer: [UInt8] = []) -> [UInt8] {
    ntpRequest(first: leap << 6 | version << 3 | mode, poll: poll, transmit: transmit, trailer: trailer)
}

func ntpRequest(first: UInt8, poll: UInt8 = 0, transmit: UInt64 = UInt64.random(in: 1...UInt64.max), trailer: [UInt8] = []) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: 48)
    bytes[0] = first
    bytes[2] = poll
    for i in 0..<8 { bytes[40 + i] = UInt8(truncatingIfNeeded: transmit >> UInt64(56 - 8 * i)) }
    return bytes + trailer
}

/// An RFC 7822 extension field `length` bytes long whose length field says `declaredLength`.
func extensionField(length: Int, declaredLength: Int? = nil, type: UInt16 = 0x0104) -> [UInt8] {
    let declared = UInt16(truncatingIfNeeded: declaredLength ?? length)
    var field = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(declared >> 8), UInt8(declared & 0xFF)]
    field += [UInt8](repeating: 0x5A, count: max(0, length - 4))
    return Array(field.prefix(length))
}

/// A legacy MAC: key ID and an MD5 (20 bytes) or SHA-1 (24 bytes) digest.
func mac(length: Int) -> [UInt8] {
    [0, 0, 0, 7] + [UInt8](repeating: 0xC3, count: length - 4)
}

func be32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

func be64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    bytes[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) }
}

/// Hex for failure messages.
func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

// MARK: - Processes


// MARK: - Time

/// Seconds of the local day (0..<86400) for `instant` in the process's zone.
func localSecondOfDay(_ instant: UTCInstant) -> Int {
    var t = time_t(instant.secondsSinceUnixEpoch)
    var tm = Glibc.tm()
    localtime_r(&t, &tm)
    return Int(tm.tm_hour) * 3600 + Int(tm.tm_min) * 60 + Int(tm.tm_sec)
}

/// The distance in seconds between two seconds-of-day, across midnight.
func secondOfDayDistance(_ a: Int, _ b: Int) -> Int {
    let d = abs(a - b) % 86400
    return min(d, 86400 - d)
}

/// `HH:MM:SS` as seconds of the day, or nil.
func parseHMS(_ text: String) -> Int? {
    let parts = text.split(separator: ":")
    guard parts.count == 3, let h = Int(parts[0]), let m = Int(parts[1]), let s = Int(parts[2]) else { return nil }
    return h * 3600 + m * 60 + s
}

/// Whether `text` matches `pattern` in full.
func fullyMatches(_ text: String, _ pattern: String) -> Bool {
    guard let regex = try? Regex(pattern) else { return false }
    return text.wholeMatch(of: regex) != nil
}

/// The package root: Tests/TockServerTests/<file>.swift, three levels up.
func packageRoot(_ filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
