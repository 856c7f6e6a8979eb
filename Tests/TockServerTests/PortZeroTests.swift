import Foundation
import Glibc
import ServiceLifecycle
import Testing
import TockProtocol
import TockServer
import TockSockets

/// Port 0 ("any free port", as these tests, scripts/e2e and `tockd --ntp 0` use it) must give
/// a listener a port of its own.
///
/// Each test holds many sockets on an address no other test uses (127.0.0.2, 127.0.0.3), so
/// that the kernel's choice for a new listener on that address lands on one of their ports
/// with a high probability unless the listener excludes it, and creates servers until it
/// does (or 40 times).
@Suite("Port 0", .serialized)
struct PortZeroTests {
    /// A quarter of the descriptor limit, at most 6000 (a fifth of the ephemeral range): the
    /// other tests in this process need descriptors too.
    static var heldCount: Int {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        return min(6000, Int(min(limit.rlim_cur, 1 << 20)) / 4)
    }
    static let attempts = 40

    /// Binds `count` sockets of `type` to `ip`:0; with `reusePort`, SO_REUSEPORT is set first.
    /// Returns port → fd.
    static func hold(count: Int, ip: String, type: Int32, reusePort: Bool) -> [UInt16: Int32] {
        var held: [UInt16: Int32] = [:]
        let address = SocketEndpoint(ip: ip, port: 0)!
        for _ in 0..<count {
            let fd = socket(address.family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { break }
            var one: Int32 = 1
            if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
            guard address.withSockAddr({ bind(fd, $0, $1) }) == 0, let local = try? Sockets.localAddress(fd) else {
                close(fd)
                continue
            }
            if held[local.port] != nil {
                close(fd)
            } else {
                held[local.port] = fd
            }
        }
        return held
    }

    /// Runs `servers` and shuts them down, which closes their sockets.
    static func dispose(_ servers: [TockServer]) async {
        guard !servers.isEmpty else { return }
        let group = ServiceGroup(configuration: .init(services: servers.map { .init(service: $0) }, logger: quietLogger))
        let task = Task { try await group.run() }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    @Test("An NTP listener on port 0 never shares its port with another SO_REUSEPORT socket")
    func ntpPortIsPrivate() async throws {
        let count = Self.heldCount
        let held = Self.hold(count: count, ip: "127.0.0.2", type: Int32(SOCK_DGRAM.rawValue), reusePort: true)
        defer { for fd in held.values { close(fd) } }
        try #require(held.count > count / 2, "could only hold \(held.count) of \(count) sockets")
        var servers: [TockServer] = []
        var shared: (server: TockServer, fd: Int32)?
        for _ in 0..<Self.attempts {
            do throws(ListenerError) {
                let server = try TockServer(
                    configuration: TockServerConfiguration(ntpListeners: [SocketEndpoint(ip: "127.0.0.2", port: 0)!], clockSource: .local(stratum: 10), ntpWorkers: 1),
                    logger: quietLogger
                )
                servers.append(server)
                if let fd = held[server.addresses(.ntp)[0].port] {
                    shared = (server, fd)
                    break
                }
            } catch {
                Issue.record("cannot create a server: \(error)")
                break
            }
        }
        let group = ServiceGroup(configuration: .init(services: servers.map { .init(service: $0) }, logger: quietLogger))
        let task = Task { try await group.run() }
        if let shared {
            let address = shared.server.addresses(.ntp)[0]
            // What a client sees: requests from 32 source ports; the kernel spreads them over the
            // sockets that share the port, and those that reach the other socket go unanswered.
            let (unanswered, stolen) = await blocking { () -> (Int, Int) in
                let probes = (0..<32).map { _ in UDPProbe(target: address) }
                for p in probes { p.send(ntpRequest(version: 4, mode: 3)) }
                var unanswered = 0
                let deadline = SystemClock.monotonicNanoseconds() + 300_000_000
                for p in probes {
                    let left = Int32(max(0, (deadline - SystemClock.monotonicNanoseconds()) / 1_000_000))
                    if p.receive(timeoutMilliseconds: left) == nil { unanswered += 1 }
                }
                var stolen = 0
                var buffer = [UInt8](repeating: 0, count: 512)
                while buffer.withUnsafeMutableBytes({ recv(shared.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 { stolen += 1 }
                return (unanswered, stolen)
            }
            Issue.record("""
                TockServer's NTP listener on 127.0.0.2:0 was given port \(address.port), which another SO_REUSEPORT \
                socket of this user already had (found after \(servers.count) servers with \(held.count) such sockets \
                held): the kernel split 32 requests between them, \(unanswered) went unanswered and \(stolen) reached \
                the other socket. (ListenerSocket.udp sets SO_REUSEPORT before binding port 0.)
                """)
        }
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }

    @Test("Daytime and Time on port 0 never fail because the UDP port's TCP twin is taken")
    func textTimePortZeroNeverFails() async throws {
        let count = Self.heldCount
        let held = Self.hold(count: count, ip: "127.0.0.3", type: Int32(SOCK_STREAM.rawValue), reusePort: false)
        defer { for fd in held.values { close(fd) } }
        try #require(held.count > count / 2, "could only hold \(held.count) of \(count) sockets")
        var servers: [TockServer] = []
        var failure: ListenerError?
        for _ in 0..<Self.attempts {
            do throws(ListenerError) {
                servers.append(try TockServer(
                    configuration: TockServerConfiguration(daytimeListeners: [SocketEndpoint(ip: "127.0.0.3", port: 0)!], daytimeFormat: .hms, clockSource: .local(stratum: 10)),
                    logger: quietLogger
                ))
            } catch {
                failure = error
                break
            }
        }
        await Self.dispose(servers)
        #expect(failure == nil, """
            a Daytime listener on 127.0.0.3:0 failed after \(servers.count) successful ones with \(held.count) TCP \
            sockets bound on that address: \(failure?.description ?? ""). (TockServer.init binds TCP to the port the \
            kernel chose for UDP without checking that it is free for TCP.)
            """)
    }
}
