import Foundation
import Glibc
import Testing
import TockClient
import TockProtocol
import TockSockets

@Suite("HostAndPort")
struct HostAndPortTests {
    @Test("Valid forms", arguments: [
        ("example.org", false, "example.org", nil),
        ("example.org:123", false, "example.org", 123),
        ("127.0.0.1:1123", false, "127.0.0.1", 1123),
        ("[::1]:123", false, "::1", 123),
        ("[::1]", false, "::1", nil),
        ("::1", false, "::1", nil),
        ("fe80::1:2", false, "fe80::1:2", nil),
        ("1123", true, nil, 1123),
        ("1123", false, "1123", nil),
        ("example.org", true, "example.org", nil),
        (":123", true, nil, 123),
        ("0", true, nil, 0),
        ("host:65535", false, "host", 65535),
    ] as [(String, Bool, String?, UInt16?)])
    func valid(text: String, bareNumberIsPort: Bool, host: String?, port: UInt16?) throws {
        let parsed = try HostAndPort(parsing: text, bareNumberIsPort: bareNumberIsPort)
        #expect(parsed.host == host)
        #expect(parsed.port == port)
    }

    @Test("Invalid forms", arguments: [
        ("[::1", false),
        ("[::1]x", false),
        ("[::1]:", false),
        ("host:99999", false),
        ("host:65536", false),
        ("host:abc", false),
        ("host:", false),
        ("host:-1", false),
        ("host:0", false),
        ("", false),
        ("", true),
    ])
    func invalid(text: String, bareNumberIsPort: Bool) {
        do throws(HostAndPort.ParseError) {
            let parsed = try HostAndPort(parsing: text, bareNumberIsPort: bareNumberIsPort)
            Issue.record("'\(text)' parsed as \(parsed)")
        } catch {
            #expect(error.input == text)
            #expect(error.description.contains("invalid address"))
        }
    }

    @Test("description brackets IPv6 hosts")
    func description() throws {
        #expect(try HostAndPort(parsing: "[::1]:123", bareNumberIsPort: false).description == "[::1]:123")
        #expect(try HostAndPort(parsing: "example.org:123", bareNumberIsPort: false).description == "example.org:123")
        #expect(try HostAndPort(parsing: "123", bareNumberIsPort: true).description == "*:123")
    }
}

@Suite("Resolver")
struct ResolverTests {
    @Test("Literals are returned as they are, with the port")
    func literals() throws {
        let v4 = try Resolver.resolve("127.0.0.1", port: 1123)
        #expect(v4 == [SocketEndpoint(ip: "127.0.0.1", port: 1123)!])
        #expect(v4.first?.description == "127.0.0.1:1123")
        let v6 = try Resolver.resolve("::1", port: 123)
        #expect(v6 == [SocketEndpoint(ip: "::1", port: 123)!])
        #expect(v6.first?.description == "[::1]:123")
    }

    @Test("localhost resolves to loopback addresses")
    func localhost() async throws {
        let addresses = try await blocking { Result { () throws(ClientError) in try Resolver.resolve("localhost", port: 37) } }.get()
        #expect(!addresses.isEmpty)
        for a in addresses {
            #expect(a.ipString == "127.0.0.1" || a.ipString == "::1" || a.ipString.hasPrefix("127."), "\(a)")
            #expect(a.port == 37)
        }
        #expect(Set(addresses).count == addresses.count, "duplicates: \(addresses)")
    }

    @Test("A name that cannot exist fails with .resolution")
    func nonexistent() async {
        let result = await blocking { Result { () throws(ClientError) in try Resolver.resolve("nonexistent.invalid", port: 123) } }
        switch result {
        case .success(let a): Issue.record("resolved to \(a)")
        case .failure(.resolution(let host, let reason)):
            #expect(host == "nonexistent.invalid")
            #expect(!reason.isEmpty)
        case .failure(let other): Issue.record("expected .resolution, got \(other)")
        }
    }
}

@Suite("NTPQuery against fake servers")
struct NTPQueryTests {
    @Test("A silent server: .timeout after the timeout")
    func silent() async {
        await FakeUDPServer.with({ _, _ in nil }) { server in
            let address = server.address
            // Timed on the querying thread: the wait for the test's task to be scheduled again
            // (the cooperative pool is shared with every other test) is not the query's.
            let (result, elapsed) = await blocking {
                let start = ContinuousClock.now
                let result = NTPQuery(samples: 1, timeoutNanoseconds: 200_000_000).run(server: address)
                return (result, ContinuousClock.now - start)
            }
            #expect(result.samples.isEmpty)
            #expect(result.sent == 1)
            #expect(describe(result.lastError) == "timeout")
            #expect(elapsed >= .milliseconds(200))
            #expect(elapsed < .seconds(3), "bounded by the timeout, with slack for loaded (sanitizer) runs")
            #expect(server.requests.count == 1)
            // The request: 48 bytes, mode 3, version 4, everything zero except the transmit timestamp.
            if let request = server.requests.first {
                #expect(request.count == 48)
                #expect(request[0] == 0x23)
                #expect(request[1..<40].allSatisfy { $0 == 0 })
                #expect(request[40..<48].contains { $0 != 0 })
            }
        }
    }

    @Test("A reply with the wrong origin is ignored: .bogusOrigin once the timeout passes")
    func bogusOrigin() async {
        await FakeUDPServer.with(Replies.wrongOrigin()) { server in
            let address = server.address
            let start = ContinuousClock.now
            let result = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 200_000_000).run(server: address) }
            #expect(ContinuousClock.now - start >= .milliseconds(200))
            #expect(result.samples.isEmpty)
            #expect(describe(result.lastError) == "bogusOrigin")
        }
    }

    @Test("A kiss-o'-death RATE stops the query after the first sample")
    func kissOfDeath() async {
        await FakeUDPServer.with(Replies.kissOfDeath("RATE")) { server in
            let address = server.address
            let result = await blocking { NTPQuery(samples: 5, timeoutNanoseconds: 500_000_000, intervalNanoseconds: 0).run(server: address) }
            #expect(result.samples.isEmpty)
            #expect(result.sent == 1)
            #expect(server.requests.count == 1)
            guard case .rejected(_, .kissOfDeath(let code)) = result.lastError else {
                Issue.record("expected a kiss-o'-death, got \(describe(result.lastError))")
                return
            }
            #expect(code == .rate)
        }
    }

    @Test("A forged kiss-o'-death (wrong origin) does not stop the query")
    func forgedKiss() async {
        await FakeUDPServer.with(Replies.kissOfDeath("DENY", echoOrigin: false)) { server in
            let address = server.address
            let result = await blocking { NTPQuery(samples: 2, timeoutNanoseconds: 150_000_000, intervalNanoseconds: 0).run(server: address) }
            #expect(result.sent == 2)
            #expect(server.requests.count == 2)
            #expect(describe(result.lastError) == "bogusOrigin")
        }
    }

    @Test("Leap indicator 3: .unsynchronized")
    func unsynchronized() async {
        await FakeUDPServer.with(Replies.unsynchronized()) { server in
            let address = server.address
            let result = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 500_000_000).run(server: address) }
            #expect(result.samples.isEmpty)
            #expect(describe(result.lastError) == "unsynchronized")
        }
    }

    @Test("A correct reply gives a sample with a small offset", arguments: [UInt8(4), 3, 2, 1])
    func correct(version: UInt8) async {
        await FakeUDPServer.with(Replies.correct()) { server in
            let address = server.address
            let result = await blocking { NTPQuery(version: version, samples: 3, timeoutNanoseconds: 500_000_000, intervalNanoseconds: 0).run(server: address) }
            #expect(result.samples.count == 3, "\(describe(result.lastError))")
            #expect(result.lastError == nil)
            for sample in result.samples {
                // One clock on both sides: the true offset is 0, so the measured one is within the
                // sample's error bound (half the delay plus the precisions, RFC 5905), however
                // long a busy machine makes the exchange.
                #expect(abs(sample.offsetNanoseconds) <= sample.errorNanoseconds(localPrecision: -20), "offset \(sample.offsetNanoseconds) ns, delay \(sample.delayNanoseconds) ns")
                #expect(sample.delayNanoseconds >= 0 && sample.delayNanoseconds < 1_000_000_000)
                #expect(sample.packet.stratum == 2)
                #expect(sample.packet.version == version)
            }
            // Each sample comes from its own socket, so from its own source port, with its own
            // transmit timestamp.
            let transmits = Set(server.requests.map { Array($0[40..<48]) })
            #expect(transmits.count == 3)
            #expect(server.requests.allSatisfy { ($0[0] >> 3) & 7 == version })
        }
    }

    @Test("Nothing listening: .network (connection refused)")
    func refused() async {
        let address = SocketEndpoint(ip: "127.0.0.1", port: unusedUDPPort())!
        // Timed on the querying thread, not across the hop back to the shared task pool.
        let (result, elapsed) = await blocking {
            let start = ContinuousClock.now
            let result = NTPQuery(samples: 1, timeoutNanoseconds: 10_000_000_000).run(server: address)
            return (result, ContinuousClock.now - start)
        }
        #expect(elapsed < .seconds(5), "should fail at once, not after the 10 s timeout")
        guard case .network(_, let error) = result.lastError else {
            Issue.record("expected .network, got \(describe(result.lastError))")
            return
        }
        #expect(error.errorNumber == ECONNREFUSED)
    }
}

@Suite("TextTimeQuery against fake servers")
struct TextTimeQueryTests {
    @Test("A Time reply of the wrong length is .unreadableReply")
    func wrongLength() async {
        await FakeUDPServer.with({ _, _ in [1, 2, 3] }) { server in
            let address = server.address
            let result = await blocking { Result { () throws(ClientError) in try TextTimeQuery(kind: .time, tcp: false, timeoutNanoseconds: 500_000_000).run(server: address) } }
            guard case .failure(.unreadableReply) = result else {
                Issue.record("expected .unreadableReply, got \(result)")
                return
            }
        }
    }

    @Test("A Time reply is read in the era nearest our clock; offset accounts for truncation")
    func timeValue() async {
        await FakeUDPServer.with({ _, now in
            let v = RFC868.value(for: now)
            return [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
        }) { server in
            let address = server.address
            let result = await blocking { Result { () throws(ClientError) in try TextTimeQuery(kind: .time, tcp: false, timeoutNanoseconds: 500_000_000).run(server: address) } }
            guard case .success(let answer) = result, let offset = answer.offsetNanoseconds else {
                Issue.record("\(result)")
                return
            }
            #expect(abs(offset) <= 600_000_000, "offset \(offset)")
        }
    }

    @Test("Daytime text loses its line ending")
    func daytimeText() async {
        await FakeUDPServer.with({ _, _ in Array("Tuesday, February 22, 1982 17:37:43-PST\r\n".utf8) }) { server in
            let address = server.address
            let result = await blocking { Result { () throws(ClientError) in try TextTimeQuery(kind: .daytime, tcp: false, timeoutNanoseconds: 500_000_000).run(server: address) } }
            guard case .success(let answer) = result, case .daytime(let text) = answer.payload else {
                Issue.record("\(result)")
                return
            }
            #expect(text == "Tuesday, February 22, 1982 17:37:43-PST")
        }
    }
}
