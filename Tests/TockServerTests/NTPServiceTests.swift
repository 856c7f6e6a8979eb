import Foundation
import Glibc
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets

@Suite("NTP over UDP")
struct NTPServiceTests {
    @Test("NTPQuery over IPv4 and IPv6 gets valid stratum-10 samples")
    func queryBothFamilies() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            #expect(server.addresses(.ntp).count == 2)
            #expect(server.addresses(.ntp).map(\.isIPv6) == [false, true])
            for address in server.addresses(.ntp) {
                #expect(address.port != 0)
                let result = await blocking { NTPQuery(samples: 3, intervalNanoseconds: 10_000_000).run(server: address) }
                #expect(result.sent == 3, "\(address)")
                #expect(result.samples.count == 3, "\(address): \(String(describing: result.lastError))")
                #expect(result.lastError == nil, "\(address): \(String(describing: result.lastError))")
                for sample in result.samples {
                    // One clock on both sides: the measured offset is within the error bound.
                    #expect(abs(sample.offsetNanoseconds) <= sample.errorNanoseconds(localPrecision: -20), "\(address): offset \(sample.offsetNanoseconds) ns, delay \(sample.delayNanoseconds) ns")
                    #expect(sample.delayNanoseconds >= 0 && sample.delayNanoseconds < 1_000_000_000, "\(address): delay \(sample.delayNanoseconds) ns")
                    #expect(sample.packet.stratum == 10)
                    #expect(sample.packet.leap == .noWarning)
                    #expect(sample.packet.version == 4)
                    #expect(sample.packet.mode == .server)
                    #expect(sample.packet.referenceID == 0x7F7F_0101)
                    #expect(sample.packet.precision == server.precision)
                    #expect(sample.packet.precision < 0)
                    #expect(sample.t3 >= sample.t2)
                    #expect(sample.rootDistanceNanoseconds < 1_500_000_000)
                    // The reference time is the start-up (or last refresh) time: not zero, not in the future.
                    let reference = sample.packet.referenceTimestamp.instant(near: sample.t1)
                    #expect(!sample.packet.referenceTimestamp.isZero)
                    #expect(reference <= sample.t3.advanced(byNanoseconds: 1_000_000))
                    #expect(sample.t3.nanoseconds(since: reference) < 60_000_000_000)
                }
            }
            let stats = server.datagramStatistics(.ntp)
            #expect(stats.replied >= 6)
            #expect(stats.dropped == 0)
        }
    }

    @Test("Raw requests in versions 1-4 are answered in the same version with mode 4 and sane timestamps")
    func rawVersions() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            for address in server.addresses(.ntp) {
                var requests: [(String, [UInt8])] = (1...4).map { v in ("v\(v) mode 3", ntpRequest(version: UInt8(v), mode: 3, poll: 6)) }
                // NTPv1 had no mode: its requests carry mode 0, answered unless they come from port 123.
                requests.append(("v1 mode 0", ntpRequest(first: 0x08, poll: 6)))
                for (name, request) in requests {
                    // T1 and T4 bracket the exchange: the server's T2 and T3 must fall between
                    // them, however long the machine makes the exchange take.
                    let (t1, reply, t4) = await blocking { (SystemClock.now(), udpExchange(request, to: address), SystemClock.now()) }
                    let version = (request[0] >> 3) & 7
                    guard let reply else {
                        Issue.record("\(address) \(name): no reply")
                        continue
                    }
                    #expect(reply.count == 48, "\(name)")
                    #expect(reply.count <= request.count)
                    #expect(reply[0] & 7 == 4, "\(name): mode \(reply[0] & 7)")
                    #expect((reply[0] >> 3) & 7 == version, "\(name): version \((reply[0] >> 3) & 7)")
                    #expect(reply[0] >> 6 == 0, "\(name): leap \(reply[0] >> 6)")
                    #expect(reply[1] == 10, "\(name): stratum")
                    #expect(reply[2] == 6, "\(name): poll is echoed")
                    #expect(be32(reply, 12) == 0x7F7F_0101)
                    #expect(Array(reply[24..<32]) == Array(request[40..<48]), "\(name): origin \(hex(Array(reply[24..<32]))) != request transmit \(hex(Array(request[40..<48])))")
                    let receive = be64(reply, 32)
                    let transmit = be64(reply, 40)
                    #expect(receive != 0, "\(name)")
                    #expect(transmit != 0, "\(name)")
                    #expect(transmit >= receive, "\(name): transmit \(transmit) < receive \(receive)")
                    let t2 = NTPTimestamp(rawValue: receive).instant(near: t1)
                    let t3 = NTPTimestamp(rawValue: transmit).instant(near: t1)
                    // The bits below the server's precision are random: allow one precision step.
                    let slack = ((Int64(1) << Int64(max(0, 32 + Int(server.precision)))) * 1_000_000_000 >> 32) + 1
                    #expect(t2.nanoseconds(since: t1) >= -slack, "\(name): receive \(t2) before the request left at \(t1)")
                    #expect(t4.nanoseconds(since: t3) >= -slack, "\(name): transmit \(t3) after the reply arrived at \(t4)")
                }
            }
        }
    }

    /// Bad datagrams and the drop reason each must be counted under.
    static var badDatagrams: [(name: String, bytes: [UInt8], reason: String)] {
        var list: [(name: String, bytes: [UInt8], reason: String)] = []
        let good = ntpRequest(version: 4, mode: 3)
        for n in [0, 1, 47] { list.append(("\(n) bytes", Array(good.prefix(n)), "too_short")) }
        for n in [49, 50, 51] { list.append(("\(n) bytes", good + [UInt8](repeating: 0, count: n - 48), "malformed")) }
        for v: UInt8 in [0, 5, 6, 7] { list.append(("version \(v)", ntpRequest(version: v, mode: 3), "bad_version")) }
        list.append(("v4 mode 0", ntpRequest(version: 4, mode: 0), "not_client_mode"))
        for m: UInt8 in [1, 2, 4, 5, 6, 7] { list.append(("v4 mode \(m)", ntpRequest(version: 4, mode: m), "not_client_mode")) }
        list.append(("v2 mode 0", ntpRequest(version: 2, mode: 0), "not_client_mode"))
        let monlist: [UInt8] = [0x17, 0x00, 0x03, 0x2A]
        list.append(("monlist probe padded to 48", monlist + [UInt8](repeating: 0, count: 44), "not_client_mode"))
        list.append(("monlist probe, 8 bytes", monlist + [0, 0, 0, 0], "too_short"))
        list.append(("NTPv2 mode 7, 4 bytes", monlist, "too_short"))
        for declared in [0, 12, 18, 32, 0xFFFF] {
            list.append(("extension field declaring \(declared) bytes", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 28, declaredLength: declared)), "malformed"))
        }
        list.append(("v4 with 16 bytes of zeros after the header", ntpRequest(version: 4, mode: 3, trailer: [UInt8](repeating: 0, count: 16)), "malformed"))
        list.append(("v3 with a 16-byte extension field", ntpRequest(version: 3, mode: 3, trailer: extensionField(length: 16)), "malformed"))
        list.append(("2000-byte datagram", ntpRequest(version: 4, mode: 3, trailer: [UInt8](repeating: 0, count: 1952)), "malformed"))
        list.append(("3000-byte datagram", ntpRequest(version: 4, mode: 3, trailer: [UInt8](repeating: 0, count: 2952)), "oversized"))
        list.append(("65000-byte datagram", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 64952, declaredLength: 16)), "oversized"))
        return list
    }

    @Test("Bad datagrams get no reply, are counted by reason, and the server keeps answering")
    func badInput() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            let address = server.addresses(.ntp)[0]
            let bad = Self.badDatagrams
            // One socket per datagram, so a reply can be traced to its request.
            let probes = bad.map { _ in UDPProbe(target: address) }
            for (probe, datagram) in zip(probes, bad) {
                #expect(probe.send(datagram.bytes), "\(datagram.name) could not be sent")
            }
            // A good request sent after them is answered...
            let good = ntpRequest(version: 4, mode: 3)
            let reply = await blocking { udpExchange(good, to: address) }
            #expect(reply?.count == 48)
            #expect(reply.map { Array($0[24..<32]) } == Array(good[40..<48]))
            // ... and none of the bad ones is, within 300 ms.
            let answered = await blocking {
                let deadline = SystemClock.monotonicNanoseconds() + 300_000_000
                var answered: [String] = []
                for (probe, datagram) in zip(probes, bad) {
                    let left = Int32(max(0, (deadline - SystemClock.monotonicNanoseconds()) / 1_000_000))
                    if let r = probe.receive(timeoutMilliseconds: left) { answered.append("\(datagram.name) → \(r.count) bytes: \(hex(Array(r.prefix(8))))") }
                }
                return answered
            }
            #expect(answered.isEmpty, "answered: \(answered)")

            // Every reason NTP can drop for is listed, counted or not.
            var expected: [DropReason: UInt64] = Dictionary(uniqueKeysWithValues: TockService.ntp.dropReasons.map { ($0, 0) })
            for d in bad { expected[DropReason(label: d.reason)!, default: 0] += 1 }
            let counted = await eventually {
                server.datagramStatistics(.ntp).drops == expected
            }
            let stats = server.datagramStatistics(.ntp)
            #expect(counted)
            #expect(stats.drops == expected)
            #expect(stats.dropped == UInt64(bad.count))
            #expect(stats.received >= UInt64(bad.count) + 1)
            #expect(stats.receiveErrors == 0)
            #expect(stats.sendErrors == 0)
        }
    }

    @Test("Requests with MACs and extension fields: reply is never longer than the request; a MAC gets a crypto-NAK")
    func trailers() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            let cases: [(String, [UInt8], Int)] = [
                ("48 bytes", ntpRequest(version: 4, mode: 3), 48),
                ("MD5 MAC (68 bytes)", ntpRequest(version: 4, mode: 3, trailer: mac(length: 20)), 52),
                ("SHA-1 MAC (72 bytes)", ntpRequest(version: 4, mode: 3, trailer: mac(length: 24)), 52),
                ("v3 with MD5 MAC", ntpRequest(version: 3, mode: 3, trailer: mac(length: 20)), 52),
                ("16-byte extension field", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 16)), 48),
                ("28-byte extension field", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 28)), 48),
                ("two extension fields", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 16) + extensionField(length: 32)), 48),
                ("extension field and MAC", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 16) + mac(length: 20)), 52),
                ("1000-byte extension field", ntpRequest(version: 4, mode: 3, trailer: extensionField(length: 1000)), 48),
            ]
            for address in server.addresses(.ntp) {
                for (name, request, expectedLength) in cases {
                    let reply = await blocking { udpExchange(request, to: address) }
                    guard let reply else {
                        Issue.record("\(address) \(name): no reply")
                        continue
                    }
                    #expect(reply.count == expectedLength, "\(name)")
                    #expect(reply.count <= request.count, "\(name): \(reply.count) > \(request.count)")
                    #expect(reply[0] & 7 == 4)
                    #expect(Array(reply[24..<32]) == Array(request[40..<48]), "\(name)")
                    if expectedLength == 52 {
                        #expect(Array(reply[48..<52]) == [0, 0, 0, 0], "\(name): crypto-NAK")
                    }
                }
            }
            #expect(server.datagramStatistics(.ntp).dropped == 0)
        }
    }

    @Test("4 concurrent clients × 500 exchanges are all answered correctly")
    func concurrency() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            let addresses = server.addresses(.ntp)
            let before = server.datagramStatistics(.ntp).replied
            let results = await withTaskGroup(of: NTPQueryResult.self) { group in
                for i in 0..<4 {
                    let address = addresses[i % addresses.count]
                    group.addTask { await blocking { NTPQuery(samples: 500, intervalNanoseconds: 0).run(server: address) } }
                }
                var all: [NTPQueryResult] = []
                for await r in group { all.append(r) }
                return all
            }
            for r in results {
                #expect(r.sent == 500)
                #expect(r.samples.count == 500, "\(r.server): \(r.samples.count) valid, last error \(String(describing: r.lastError))")
                #expect(r.samples.allSatisfy { $0.packet.stratum == 10 && $0.packet.leap == .noWarning })
                #expect(r.samples.allSatisfy { abs($0.offsetNanoseconds) < 100_000_000 }, "max |offset| \(r.samples.map { abs($0.offsetNanoseconds) }.max() ?? 0) ns")
            }
            let counted = await eventually { server.datagramStatistics(.ntp).replied - before >= 2000 }
            #expect(counted, "replied \(server.datagramStatistics(.ntp).replied - before)")
            #expect(server.datagramStatistics(.ntp).dropped == 0)
        }
    }
}
