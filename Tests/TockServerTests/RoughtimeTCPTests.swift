import Glibc
import Testing
import TockClient
import TockCrypto
import TockProtocol
@testable import TockServer
import TockSockets

/// Roughtime over TCP (RFC 10049 §5) from a real TockServer on loopback: the reply verified by
/// the core's client checks, and hostile connections (short, bad magic, huge length, dribbled,
/// idle, past the cap) closed unanswered and counted by reason.
///
/// Serialized: one server at a time, beside the rest of the suite, so that on a small, busy
/// machine these servers (two of them held for seconds by idle and dribbling clients) do not
/// push every server's graceful stop past its 5 s bound.
@Suite("Roughtime over TCP", .serialized)
struct RoughtimeTCPTests {
    /// Roughtime on 127.0.0.1 (and [::1] with `ipv6`), one UDP worker each: these tests are
    /// about TCP, and run beside the rest of the suite on a small, busy machine.
    static func configuration(timeout: Duration = .seconds(20), maxConnections: Int = 1024, clockSource: ClockSource = .local(stratum: 10), ipv6: Bool = false) -> TockServerConfiguration {
        var configuration = RoughtimeServiceTests.configuration(clockSource: clockSource)
        configuration.roughtimeListeners = ipv6 ? [loopbackV4, loopbackV6] : [loopbackV4]
        configuration.ntpWorkers = 1
        configuration.tcpConnectionTimeout = timeout
        configuration.tcpMaxConnections = maxConnections
        return configuration
    }

    /// The Roughtime TCP listener on `address`.
    static func listener(_ server: TockServer, _ address: SocketEndpoint) -> StreamTimeListener {
        server.streamListeners.first { $0.service == .roughtime && $0.address == address }!
    }

    static func drops(_ server: TockServer) -> [DropReason: UInt64] {
        server.streamStatistics(.roughtime).drops
    }

    @Test("A request over TCP gets one verified reply (a batch of one: PATH empty, INDX 0), then the server closes")
    func exchange() async throws {
        try await withServer(Self.configuration(ipv6: true)) { server in
            let addresses = server.addresses(.roughtime)
            #expect(addresses.count == 2, "UDP and TCP share each address: \(addresses)")
            for address in addresses {
                for versions in [[RoughtimeVersion.rfc], [.draft12], [.rfc, .draft12]] {
                    let request = RoughtimeServiceTests.request(versions: versions)
                    let (reply, end) = await blocking { roughtimeTCPExchange(request, to: address) }
                    #expect(end == .endOfFile)
                    let time = try RoughtimeServiceTests.verify(request, reply)
                    #expect(time.version == (versions.contains(.rfc) ? .rfc : .draft12))
                    #expect(time.radius >= 3)
                    let now = UInt64(SystemClock.now().secondsSinceUnixEpoch)
                    #expect(time.midpoint + 2 >= now && time.midpoint <= now + 2)
                    #expect(reply.count <= request.count)
                    let (pathLength, index) = try reply.withUnsafeBytes { raw in
                        let parsed = try RoughtimeReply(packet: raw)
                        return (parsed.path.count, parsed.index)
                    }
                    #expect(pathLength == 0 && index == 0)
                }
                // The same port still answers over UDP.
                let request = RoughtimeServiceTests.request()
                let reply = try #require(await blocking { udpExchange(request, to: address) })
                _ = try RoughtimeServiceTests.verify(request, reply)
            }
            let tcp = server.streamStatistics(.roughtime)
            #expect(tcp.replied == 6 && tcp.connections == 6)
            #expect(tcp.drops.values.reduce(0, +) == 0, "\(tcp.drops)")
            // Three connections per address, and a responder (with its signer's key setup) per
            // event loop, not per connection.
            for address in addresses {
                let responders = Self.listener(server, address).roughtimeResponderCount
                #expect((1...2).contains(responders), "\(address): \(responders) responders for 3 connections on 2 event loops")
            }
        }
    }

    @Test("tock's client over TCP: the reply passes every check; a wrong key is refused")
    func client() async throws {
        try await withServer(Self.configuration()) { server in
            let address = server.addresses(.roughtime)[0]
            let query = RoughtimeQuery(publicKey: RoughtimeServiceTests.longTermPublicKey, timeoutNanoseconds: 10_000_000_000, tcp: true)
            let answer = try await blockingThrows { try query.run(server: address) }
            #expect(answer.tcp && answer.replyLength <= answer.requestLength)
            #expect(answer.time.version == .rfc)
            let wrong = RoughtimeQuery(publicKey: RoughtimeEd25519Signer().publicKey, timeoutNanoseconds: 10_000_000_000, tcp: true)
            let refused = await blocking { () -> ClientError? in
                do throws(ClientError) { _ = try wrong.run(server: address); return nil } catch { return error }
            }
            guard case .roughtimeRejected(_, .badDelegationSignature)? = refused else {
                Issue.record("a reply under another key was accepted or failed otherwise: \(String(describing: refused))")
                return
            }
        }
    }

    @Test("A client that shuts down its side after the request still gets the reply")
    func halfClose() async throws {
        try await withServer(Self.configuration()) { server in
            let request = RoughtimeServiceTests.request()
            let (reply, end) = await blocking { roughtimeTCPExchange(request, to: server.addresses(.roughtime)[0], shutdownWrite: true) }
            #expect(end == .endOfFile)
            _ = try RoughtimeServiceTests.verify(request, reply)
        }
    }

    @Test("Hostile frames get no reply and are counted by reason, with the UDP reasons")
    func hostile() async throws {
        try await withServer(Self.configuration()) { server in
            let address = server.addresses(.roughtime)[0]
            var badMagic = RoughtimeServiceTests.request()
            badMagic[0] ^= 0xFF
            var huge = RoughtimeServiceTests.request()
            huge.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0x7F])
            var shortFrame = Array(RoughtimeServiceTests.request().prefix(512))
            shortFrame.replaceSubrange(8..<12, with: withUnsafeBytes(of: UInt32(500).littleEndian) { Array($0) })
            let unknownSRV = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 1, count: 32), srv: [UInt8](repeating: 9, count: 32))
            let noCommon = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 1, count: 32), versions: [RoughtimeVersion(rawValue: 7)])
            let cases: [(String, [UInt8], DropReason)] = [
                ("a frame announcing 500 bytes", shortFrame, .tooShort),
                ("bad magic", badMagic, .roughtimeFraming),
                ("HTTP", Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8), .roughtimeFraming),
                ("a length of 2 GiB", huge, .oversized),
                ("an unknown SRV", unknownSRV, .roughtimeSRV),
                ("no common version", noCommon, .roughtimeVersion),
                ("a request cut short by the client's close", Array(RoughtimeServiceTests.request().prefix(700)), .tooShort),
            ]
            var expected: [DropReason: UInt64] = [:]
            for (name, bytes, reason) in cases {
                let (reply, end) = await blocking { roughtimeTCPExchange(bytes, to: address, shutdownWrite: reason == .tooShort) }
                #expect(reply.isEmpty, "answered \(name)")
                #expect(end == .endOfFile || end == .reset, "\(name): \(end)")
                expected[reason, default: 0] += 1
            }
            let counted = await eventually(timeout: .seconds(10)) {
                let drops = Self.drops(server)
                return expected.allSatisfy { drops[$0.key, default: 0] == $0.value }
            }
            #expect(counted, "\(Self.drops(server)), expected \(expected)")
            #expect(server.streamStatistics(.roughtime).replied == 0)
            // Still answering.
            let request = RoughtimeServiceTests.request()
            let (reply, _) = await blocking { roughtimeTCPExchange(request, to: address) }
            _ = try RoughtimeServiceTests.verify(request, reply)
        }
    }

    @Test("A connection that sends nothing is closed at its first-byte deadline and counted as idle")
    func idle() async throws {
        try await withServer(Self.configuration(timeout: .seconds(1))) { server in
            let address = server.addresses(.roughtime)[0]
            let started = SystemClock.monotonicNanoseconds()
            let (bytes, end) = await blocking { () -> ([UInt8], StreamEnd) in
                let fd = tcpConnect(to: address)
                guard fd >= 0 else { return ([], .failed(-fd)) }
                defer { close(fd) }
                return tcpRead(fd, timeoutMilliseconds: 20_000)
            }
            let elapsed = SystemClock.monotonicNanoseconds() - started
            #expect(bytes.isEmpty && end == .endOfFile)
            #expect(elapsed >= 900_000_000, "closed after \(elapsed) ns, before the 1 s timeout")
            #expect(await eventually { Self.drops(server)[.idleConnection, default: 0] == 1 })
        }
    }

    @Test("A client dribbling bytes is cut off at the timeout, and never delays another client")
    func dribble() async throws {
        try await withServer(Self.configuration(timeout: .seconds(8))) { server in
            let address = server.addresses(.roughtime)[0]
            let request = RoughtimeServiceTests.request()
            let started = SystemClock.monotonicNanoseconds()
            // One byte every 20 ms would take 20 s for the whole request; the deadline is 8 s.
            async let dribbled = blocking { () -> (sent: Int, end: StreamEnd) in
                let fd = tcpConnect(to: address)
                guard fd >= 0 else { return (0, .failed(-fd)) }
                defer { close(fd) }
                var sent = 0
                for byte in request {
                    guard tcpSend(fd, [byte]) else { break }
                    sent += 1
                    var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&pfd, 1, 20) > 0 { break }
                }
                return (sent, tcpRead(fd, timeoutMilliseconds: 15_000).end)
            }
            // Meanwhile other clients are answered at once.
            try await Task.sleep(for: .milliseconds(200))
            for _ in 0..<3 {
                let other = RoughtimeServiceTests.request()
                let (reply, _) = await blocking { roughtimeTCPExchange(other, to: address) }
                _ = try RoughtimeServiceTests.verify(other, reply)
            }
            let answeredWithin = SystemClock.monotonicNanoseconds() - started
            let (sent, end) = await dribbled
            let cutAfter = SystemClock.monotonicNanoseconds() - started
            #expect(answeredWithin < 6_000_000_000, "other clients waited for the dribbler (\(answeredWithin) ns)")
            #expect(sent < request.count, "the whole request was dribbled in: the deadline did not hold")
            #expect(end == .endOfFile || end == .reset)
            #expect(cutAfter >= 7_900_000_000 && cutAfter < 20_000_000_000, "cut after \(cutAfter) ns")
            #expect(await eventually { Self.drops(server)[.streamTimeout, default: 0] == 1 })
            #expect(server.streamStatistics(.roughtime).replied == 3)
        }
    }

    @Test("At the cap the oldest silent connection gives way to a real client, which is answered; the eviction is counted")
    func connectionCap() async throws {
        try await withServer(Self.configuration(maxConnections: 3)) { server in
            let address = server.addresses(.roughtime)[0]
            let listener = Self.listener(server, address)
            let held = await blocking { (0..<3).map { _ in tcpConnect(to: address) } }
            defer { for fd in held where fd >= 0 { close(fd) } }
            #expect(held.allSatisfy { $0 >= 0 })
            #expect(await eventually(timeout: .seconds(10)) { listener.table.count == 3 })

            let request = RoughtimeServiceTests.request()
            let (reply, _) = await blocking { roughtimeTCPExchange(request, to: address) }
            _ = try RoughtimeServiceTests.verify(request, reply)
            #expect(listener.counters.evictions(.connectionLimit) == 1)
            // The first held connection was the one closed.
            let (bytes, end) = await blocking { tcpRead(held[0], timeoutMilliseconds: 5_000) }
            #expect(bytes.isEmpty && (end == .endOfFile || end == .reset), "\(end)")
            #expect(server.status(busiestClients: 0).services.first { $0.name == "roughtime" && $0.transport == "tcp" }?.evicted?["connection_limit"] == 1)
        }
    }

    @Test("The access list, the rate limit and an unsynchronised clock apply over TCP, counted as over UDP")
    func policy() async throws {
        var configuration = Self.configuration(ipv6: true)
        configuration.roughtimePolicy = ServicePolicy(
            access: AccessList(deny: [AddressPrefix(bytes: [127, 0, 0, 0], length: 8)]),
            rateLimit: RateLimitPolicy(intervalLog2: 12, burst: 1, leakLog2: 0)
        )
        try await withServer(configuration) { server in
            let v4 = try #require(server.addresses(.roughtime).first { $0.family == AF_INET })
            let v6 = try #require(server.addresses(.roughtime).first { $0.family == AF_INET6 })
            let (denied, _) = await blocking { roughtimeTCPExchange(RoughtimeServiceTests.request(), to: v4) }
            #expect(denied.isEmpty)
            let first = RoughtimeServiceTests.request()
            let (reply, _) = await blocking { roughtimeTCPExchange(first, to: v6) }
            _ = try RoughtimeServiceTests.verify(first, reply)
            let (limited, _) = await blocking { roughtimeTCPExchange(RoughtimeServiceTests.request(), to: v6) }
            #expect(limited.isEmpty)
            #expect(await eventually { Self.drops(server)[.denied, default: 0] == 1 && Self.drops(server)[.rateLimited, default: 0] == 1 })
        }
        try await withServer(Self.configuration(clockSource: .unsynchronized)) { server in
            let (reply, _) = await blocking { roughtimeTCPExchange(RoughtimeServiceTests.request(), to: server.addresses(.roughtime)[0]) }
            #expect(reply.isEmpty)
            #expect(await eventually { Self.drops(server)[.unsynchronized, default: 0] == 1 })
        }
    }

    @Test("A Roughtime TCP socket passed by systemd (socket activation) is served")
    func inherited() async throws {
        let fd = socket(AF_INET, Sockets.stream, 0)
        try #require(fd >= 0)
        guard loopbackV4.withSockAddr({ bind(fd, $0, $1) }) == 0, listen(fd, 16) == 0 else {
            close(fd)
            Issue.record("could not bind a listening TCP socket: \(errno)")
            return
        }
        // From here the server owns the descriptor, and closes it, also on failure.
        let inherited = try SocketActivation.classify([(fd, "roughtime")])
        #expect(inherited.first?.service == .roughtime && inherited.first?.transport == .tcp)
        var configuration = TockServerConfiguration(inheritedSockets: inherited, clockSource: .local(stratum: 10), ntpWorkers: 1)
        configuration.roughtimeKeySeed = RoughtimeServiceTests.seed
        try await withServer(configuration) { server in
            let address = try #require(server.addresses(.roughtime).first)
            let request = RoughtimeServiceTests.request()
            let (reply, end) = await blocking { roughtimeTCPExchange(request, to: address) }
            #expect(end == .endOfFile)
            _ = try RoughtimeServiceTests.verify(request, reply)
        }
    }
}

/// Sends all of `bytes` on `fd`; MSG_NOSIGNAL, so a server that already closed costs an error,
/// not the test process (SIGPIPE). Returns whether everything was sent.
func tcpSend(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { return false }
        offset += n
    }
    return true
}

/// Connects, sends `bytes` (then shuts down the sending side if asked), and reads until the
/// server closes.
func roughtimeTCPExchange(_ bytes: [UInt8], to target: SocketEndpoint, shutdownWrite: Bool = false, timeoutMilliseconds: Int32 = 10_000) -> (bytes: [UInt8], end: StreamEnd) {
    let fd = tcpConnect(to: target)
    guard fd >= 0 else { return ([], .failed(-fd)) }
    defer { close(fd) }
    // A server that refuses from the header may close before the rest is sent.
    _ = tcpSend(fd, bytes)
    if shutdownWrite { shutdown(fd, Int32(SHUT_WR)) }
    return tcpRead(fd, timeoutMilliseconds: timeoutMilliseconds)
}
