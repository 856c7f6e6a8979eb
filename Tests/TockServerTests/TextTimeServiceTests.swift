import Foundation
import Glibc
import Testing
import TockTestSupport
import TockClient
import TockProtocol
import TockServer
import TockSockets

@Suite("Daytime and Time over UDP and TCP")
struct TextTimeServiceTests {
    static let weekdays = "(Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday)"
    static let months = "(January|February|March|April|May|June|July|August|September|October|November|December)"

    @Test("Daytime .hms over UDP and TCP: HH:MM:SS in local time, nothing else")
    func daytimeHMS() async throws {
        try await withServer(.loopback(ntp: false, time: false, daytimeFormat: .hms)) { server in
            #expect(server.addresses(.daytime).count == 2)
            for address in server.addresses(.daytime) {
                for tcp in [false, true] {
                    let label = "\(address) \(tcp ? "TCP" : "UDP")"
                    let answer = try await blockingThrows { try TextTimeQuery(kind: .daytime, tcp: tcp).run(server: address) }
                    guard case .daytime(let text) = answer.payload else {
                        Issue.record("\(label): not a daytime answer")
                        continue
                    }
                    #expect(fullyMatches(text, #"\d\d:\d\d:\d\d"#), "\(label): \(text.debugDescription)")
                    if let seconds = parseHMS(text) {
                        let distance = secondOfDayDistance(seconds, localSecondOfDay(SystemClock.now()))
                        #expect(distance <= 2, "\(label): \(text) is \(distance) s from local time")
                    }
                }
                // The exact bytes: eight characters, no line ending.
                let udp = await blocking { udpExchange(Array("Client Requesting Time....".utf8), to: address) }
                #expect(udp?.count == 8, "UDP bytes: \(udp.map(hex) ?? "none")")
                #expect(fullyMatches(String(decoding: udp ?? [], as: UTF8.self), #"\d\d:\d\d:\d\d"#))
                let tcp = await blocking { tcpReadAll(from: address) }
                #expect(tcp.bytes.count == 8, "TCP bytes: \(hex(tcp.bytes))")
                #expect(fullyMatches(String(decoding: tcp.bytes, as: UTF8.self), #"\d\d:\d\d:\d\d"#))
                #expect(tcp.end != .timedOut, "the server must close the TCP connection after the reply")
            }
            let stats = server.datagramStatistics(.daytime)
            #expect(stats.replied >= 4)
        }
    }

    @Test("Daytime over TCP ends with an orderly close (FIN), not a reset")
    func daytimeTCPClose() async throws {
        try await withServer(.loopback(ntp: false, time: false, daytimeFormat: .hms)) { server in
            for address in server.addresses(.daytime) {
                let result = await blocking { tcpReadAll(from: address) }
                #expect(result.bytes.count == 8)
                #expect(result.end == .endOfFile, "\(address): the connection ended with \(result.end)")
            }
        }
    }

    @Test("Daytime .iso8601 in UTC: parses and is within 2 s of now; CRLF on the wire")
    func daytimeISO() async throws {
        try await withServer(.loopback(ntp: false, time: false, daytimeFormat: .iso8601, daytimeZone: .utc)) { server in
            let parser = ISO8601DateFormatter()
            for address in server.addresses(.daytime) {
                for tcp in [false, true] {
                    let label = "\(address) \(tcp ? "TCP" : "UDP")"
                    let before = Date()
                    let answer = try await blockingThrows { try TextTimeQuery(kind: .daytime, tcp: tcp).run(server: address) }
                    let after = Date()
                    guard case .daytime(let text) = answer.payload else {
                        Issue.record("\(label): not a daytime answer")
                        continue
                    }
                    #expect(!text.utf8.contains(13) && !text.utf8.contains(10), "\(label): TextTimeQuery did not remove the line ending: \(text.debugDescription)")
                    #expect(fullyMatches(text, #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"#), "\(label): \(text.debugDescription)")
                    let date = parser.date(from: text)
                    #expect(date != nil, "\(label): \(text) does not parse")
                    if let date {
                        // Whole seconds, so the text is at most 1 s before the query started.
                        #expect(date.timeIntervalSince(before) > -1 && date <= after, "\(label): \(text) outside \(before)...\(after)")
                    }
                }
                let udp = await blocking { udpExchange([0x0A], to: address) } ?? []
                let udpText = String(decoding: udp, as: UTF8.self)
                #expect(fullyMatches(udpText, #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\r\n"#), "UDP: \(udpText.debugDescription)")
                let tcpText = String(decoding: await blocking { tcpReadAll(from: address) }.bytes, as: UTF8.self)
                #expect(fullyMatches(tcpText, #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\r\n"#), "TCP: \(tcpText.debugDescription)")
            }
        }
    }

    @Test("Daytime .rfc867: RFC 867's example style, ending in CRLF")
    func daytimeRFC867() async throws {
        try await withServer(.loopback(ntp: false, time: false, daytimeFormat: .rfc867)) { server in
            let pattern = "\(Self.weekdays), \(Self.months) \\d{1,2}, \\d{4} \\d\\d:\\d\\d:\\d\\d(-[A-Za-z0-9+-]{1,6}|[+-]\\d{4})\r\n"
            for address in server.addresses(.daytime) {
                let udp = String(decoding: await blocking { udpExchange([], to: address) } ?? [], as: UTF8.self)
                #expect(udp.hasSuffix("\r\n"), "UDP: \(udp.debugDescription)")
                #expect(fullyMatches(udp, pattern), "UDP: \(udp.debugDescription)")
                let tcp = String(decoding: await blocking { tcpReadAll(from: address) }.bytes, as: UTF8.self)
                #expect(tcp.hasSuffix("\r\n"), "TCP: \(tcp.debugDescription)")
                #expect(fullyMatches(tcp, pattern), "TCP: \(tcp.debugDescription)")
                // TextTimeQuery hands back the text without its line ending.
                for tcp in [false, true] {
                    let answer = try await blockingThrows { try TextTimeQuery(kind: .daytime, tcp: tcp).run(server: address) }
                    if case .daytime(let text) = answer.payload {
                        #expect(!text.isEmpty)
                        #expect(!text.utf8.contains(13) && !text.utf8.contains(10), "\(tcp ? "TCP" : "UDP"): the line ending was not removed: \(text.debugDescription)")
                        #expect(fullyMatches(text + "\r\n", pattern), "\(text.debugDescription)")
                    }
                }
            }
        }
    }

    @Test("Time (RFC 868) over UDP and TCP: four bytes, within 2 s of now")
    func time() async throws {
        try await withServer(.loopback(ntp: false, daytime: false)) { server in
            #expect(server.addresses(.time).count == 2)
            for address in server.addresses(.time) {
                for tcp in [false, true] {
                    let label = "\(address) \(tcp ? "TCP" : "UDP")"
                    let answer = try await blockingThrows { try TextTimeQuery(kind: .time, tcp: tcp).run(server: address) }
                    guard case .time = answer.payload, let offset = answer.offsetNanoseconds else {
                        Issue.record("\(label): not a time answer")
                        continue
                    }
                    #expect(abs(offset) < 1_500_000_000, "\(label): offset \(offset) ns")
                }
                // Each answer against the clock read just before and just after its own
                // exchange, not a reading taken after both (a slow TCP exchange on a loaded
                // machine once put 3 s between the UDP answer and such a reading).
                let udp = await blocking { (RFC868.value(for: SystemClock.now()), udpExchange([], to: address) ?? [], RFC868.value(for: SystemClock.now())) }
                let tcp = await blocking { (RFC868.value(for: SystemClock.now()), tcpReadAll(from: address).bytes, RFC868.value(for: SystemClock.now())) }
                for (label, (before, bytes, after)) in [("UDP", udp), ("TCP", tcp)] {
                    #expect(bytes.count == 4, "\(label): \(hex(bytes))")
                    guard bytes.count == 4 else { continue }
                    let value = be32(bytes, 0)
                    let early = Int32(bitPattern: before &- value)
                    let late = Int32(bitPattern: value &- after)
                    #expect(early <= 2 && late <= 2, "\(label): \(value) outside \(before)...\(after)")
                }
            }
            #expect(server.datagramStatistics(.time).replied >= 4)
        }
    }

    @Test("An unsynchronised server: NTP says so (LI 3, stratum 0), Daytime and Time stay silent")
    func unsynchronized() async throws {
        try await withServer(.loopback(clockSource: .unsynchronized)) { server in
            for address in server.addresses(.ntp) {
                let result = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 1_000_000_000).run(server: address) }
                #expect(result.samples.isEmpty)
                guard case .rejected(_, .unsynchronized) = result.lastError else {
                    Issue.record("\(address): expected .rejected(_, .unsynchronized), got \(String(describing: result.lastError))")
                    continue
                }
                let request = ntpRequest(version: 4, mode: 3)
                let reply = await blocking { udpExchange(request, to: address) }
                #expect(reply?.count == 48)
                if let reply {
                    #expect(reply[0] >> 6 == 3, "leap indicator \(reply[0] >> 6)")
                    #expect(reply[0] & 7 == 4)
                    #expect(reply[1] == 0, "stratum \(reply[1])")
                    #expect(Array(reply[24..<32]) == Array(request[40..<48]))
                }
            }
            for address in server.addresses(.daytime) + server.addresses(.time) {
                let udp = await blocking { udpExchange([0x0A], to: address, timeoutMilliseconds: 300) }
                #expect(udp == nil, "\(address) UDP answered \(udp.map(hex) ?? "")")
                let tcp = await blocking { tcpReadAll(from: address, timeoutMilliseconds: 1000) }
                #expect(tcp.bytes.isEmpty, "\(address) TCP sent \(hex(tcp.bytes))")
                #expect(tcp.end == .endOfFile, "\(address): the connection should be closed without data (read returns 0), got \(tcp.end)")
            }
            for (kind, addresses) in [(TextTimeQuery.Kind.daytime, server.addresses(.daytime)), (.time, server.addresses(.time))] {
                for address in addresses {
                    for tcp in [false, true] {
                        let outcome = await blocking { () -> String in
                            do throws(ClientError) {
                                let answer = try TextTimeQuery(kind: kind, tcp: tcp, timeoutNanoseconds: 300_000_000).run(server: address)
                                return "answered \(answer.payload)"
                            } catch .timeout {
                                return "timeout"
                            } catch {
                                return "\(error)"
                            }
                        }
                        #expect(outcome == "timeout", "\(kind) \(tcp ? "TCP" : "UDP") \(address): \(outcome)")
                    }
                }
            }
            let stats = server.datagramStatistics(.daytime)
            #expect(stats.replied == 0)
            #expect(stats.drops[DropReason(label: "unsynchronized")!, default: 0] >= 2)
        }
    }

    @Test("100 idle TCP connections do not delay a fresh Time query")
    func idleConnections() async throws {
        try await withServer(.loopback(ntp: false, daytime: false)) { server in
            let address = server.addresses(.time)[0]
            let fds = await blocking { (0..<100).map { _ in tcpConnect(to: address) } }
            defer { for fd in fds where fd >= 0 { close(fd) } }
            #expect(fds.allSatisfy { $0 >= 0 }, "connect failed: \(fds.filter { $0 < 0 })")
            // Timed on the querying thread: the wait for the test's task to be scheduled again
            // (the cooperative pool is shared with every other test) is not the server's delay.
            let (answer, elapsed) = try await blockingThrows {
                let start = ContinuousClock.now
                let answer = try TextTimeQuery(kind: .time, tcp: true, timeoutNanoseconds: 1_000_000_000).run(server: address)
                return (answer, ContinuousClock.now - start)
            }
            #expect(elapsed < .seconds(1), "took \(elapsed)")
            #expect(abs(answer.offsetNanoseconds ?? .max) < 1_500_000_000)
            // The UDP side is unaffected too.
            let udp = await blocking { udpExchange([], to: address) }
            #expect(udp?.count == 4)
        }
    }

    @Test("A TCP client that never closes is disconnected by the server")
    func connectionTimeout() async throws {
        try await withServer(.loopback(ntp: false, daytime: false, tcpConnectionTimeout: .milliseconds(300))) { server in
            let address = server.addresses(.time)[0]
            let (bytes, end, seconds) = await blocking { () -> ([UInt8], StreamEnd, Double) in
                let start = SystemClock.monotonicNanoseconds()
                let fd = tcpConnect(to: address)
                guard fd >= 0 else { return ([], .failed(-fd), 0) }
                defer { close(fd) }
                let (bytes, end) = tcpRead(fd, timeoutMilliseconds: 2000)
                return (bytes, end, Double(SystemClock.monotonicNanoseconds() - start) / 1e9)
            }
            #expect(end == .endOfFile || end == .reset, "the server did not close: \(end)")
            #expect(seconds < 1.0, "closed after \(seconds) s")
            #expect(bytes.count == 4)
        }
    }

    @Test("The seed's client gets the time from a Daytime .hms listener")
    func seedClient() async throws {
        let script = packageRoot().appendingPathComponent("Tests/e2e/seed_client.py").path
        try #require(FileManager.default.fileExists(atPath: script), "the seed client is missing: expected it at \(script)")
        try await withServer(.loopback(ntp: false, time: false, daytimeFormat: .hms)) { server in
            let address = try #require(server.addresses(.daytime).first { !$0.isIPv6 })
            let address4 = address
            let result = await blocking { spawn("python3", [script, address4.ipString, String(address4.port)], searchPath: true) }
            let (status, output, errors) = (result.status, result.output, result.errors)
            #expect(!result.timedOut, "the seed client did not finish within 10 s")
            #expect(status == 0, "seed client exited \(status): \(errors)")
            #expect(fullyMatches(output, #"Time from Server:  \d\d:\d\d:\d\d\n"#), "output: \(output.debugDescription)")
        }
    }
}
