import Glibc
import Testing
import TockCrypto
import TockProtocol
@testable import TockServer
import TockSockets

/// Roughtime (RFC 10049) served by a real TockServer on loopback, checked with the core's
/// client verifier.
@Suite("Roughtime service")
struct RoughtimeServiceTests {
    static let seed: [UInt8] = (0..<32).map { UInt8($0 &* 7 &+ 3) }

    static func configuration(clockSource: ClockSource = .local(stratum: 10)) -> TockServerConfiguration {
        var configuration = TockServerConfiguration.loopback(ntp: false, daytime: false, time: false, clockSource: clockSource)
        configuration.roughtimeListeners = [loopbackV4, loopbackV6]
        configuration.roughtimeKeySeed = seed
        return configuration
    }

    static var longTermPublicKey: [UInt8] { try! RoughtimeEd25519Signer(seed: seed).publicKey }

    static func request(versions: [RoughtimeVersion] = [.rfc, .draft12]) -> [UInt8] {
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
        return RoughtimeRequestBuilder.packet(nonce: nonce, versions: versions)
    }

    static func verify(_ request: [UInt8], _ reply: [UInt8]) throws -> RoughtimeVerifiedTime {
        var hasher = RoughtimeSHA512()
        return try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: longTermPublicKey, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
    }

    @Test("One request per version, over IPv4 and IPv6: the reply verifies, MIDP is now, RADI at least 3")
    func single() async throws {
        try await withServer(Self.configuration()) { server in
            for address in server.addresses(.roughtime) {
                for versions in [[RoughtimeVersion.rfc], [.draft12], [.rfc, .draft12]] {
                    let request = Self.request(versions: versions)
                    let reply = try #require(await blocking { udpExchange(request, to: address) }, "no reply from \(address)")
                    let time = try Self.verify(request, reply)
                    #expect(time.version == (versions.contains(.rfc) ? .rfc : .draft12))
                    #expect(time.radius >= 3)
                    let now = UInt64(SystemClock.now().secondsSinceUnixEpoch)
                    #expect(time.midpoint + 2 >= now && time.midpoint <= now + 2)
                    #expect(reply.count <= request.count)
                }
            }
            #expect(server.datagramStatistics(.roughtime).dropped == 0)
        }
    }

    @Test("Many requests sent at once are answered from shared batches: every reply verifies, PATH deeper than 0")
    func batch() async throws {
        try await withServer(Self.configuration()) { server in
            let address = server.addresses(.roughtime)[0]
            let count = 48
            let probes = (0..<count).map { _ in UDPProbe(target: address) }
            let requests = (0..<count).map { i in Self.request(versions: i % 3 == 0 ? [.draft12] : [.rfc, .draft12]) }
            for (probe, request) in zip(probes, requests) { #expect(probe.send(request)) }
            let replies = await blocking { probes.map { $0.receive(timeoutMilliseconds: 2000) } }
            var deepest = 0
            for (request, reply) in zip(requests, replies) {
                let reply = try #require(reply, "a request got no reply")
                _ = try Self.verify(request, reply)
                let depth = try reply.withUnsafeBytes { try RoughtimeReply(packet: $0).path.count / 32 }
                deepest = max(deepest, depth)
            }
            #expect(deepest >= 1, "no two requests shared a batch")
            let stats = server.datagramStatistics(.roughtime)
            #expect(stats.replied >= UInt64(count))
            // The counters the operator sees: every reply came from a counted batch, a batch
            // needs one signature per version it held (two here at most), and a shared batch
            // (PATH deeper than 0) shows up in a bucket above "1".
            let batches = stats.deferredBatches.reduce(0, +)
            let covered = zip([1, 2, 4, 8, 16, 32, 64], stats.deferredBatches).map { UInt64($0) * $1 }.reduce(0, +)
            #expect(batches >= 1 && stats.signatures >= batches && stats.signatures <= 2 * batches, "\(stats.signatures) signatures, \(stats.deferredBatches)")
            #expect(covered <= stats.replied, "bucket lower bounds \(covered) exceed \(stats.replied) replies")
            #expect(stats.deferredBatches.dropFirst().reduce(0, +) >= 1, "no batch above 1 request: \(stats.deferredBatches)")
            let status = try #require(server.status().services.first { $0.name == "roughtime" && $0.transport == "udp" })
            #expect(status.signatures == stats.signatures)
            #expect(status.batchSizes?.keys.sorted() == DatagramStatistics.batchBuckets.sorted())
        }
    }

    @Test("Hostile requests get no reply and are counted by reason")
    func hostile() async throws {
        try await withServer(Self.configuration()) { server in
            let address = server.addresses(.roughtime)[0]
            var badMagic = Self.request()
            badMagic[0] ^= 0xFF
            let unknownSRV = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 1, count: 32), srv: [UInt8](repeating: 9, count: 32))
            let noCommon = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 1, count: 32), versions: [RoughtimeVersion(rawValue: 7)])
            let bad: [([UInt8], DropReason)] = [
                (Array(Self.request().prefix(500)), .tooShort),
                (badMagic, .roughtimeFraming),
                (unknownSRV, .roughtimeSRV),
                (noCommon, .roughtimeVersion),
            ]
            for (datagram, reason) in bad {
                let reply = await blocking { udpExchange(datagram, to: address, timeoutMilliseconds: 200) }
                #expect(reply == nil, "answered a request dropped for \(reason)")
            }
            let counted = await eventually {
                let drops = server.datagramStatistics(.roughtime).drops
                return bad.allSatisfy { drops[$0.1, default: 0] >= 1 }
            }
            #expect(counted, "\(server.datagramStatistics(.roughtime).drops)")
            let request = Self.request()
            let reply = try #require(await blocking { udpExchange(request, to: address) })
            _ = try Self.verify(request, reply)
        }
    }

    @Test("An unsynchronised clock gets no reply")
    func unsynchronised() async throws {
        try await withServer(Self.configuration(clockSource: .unsynchronized)) { server in
            let address = server.addresses(.roughtime)[0]
            let reply = await blocking { udpExchange(Self.request(), to: address, timeoutMilliseconds: 300) }
            #expect(reply == nil)
            #expect(await eventually { server.datagramStatistics(.roughtime).drops[.unsynchronized, default: 0] == 1 })
        }
    }

    @Test("RADI covers the error bound, whole seconds, at least 3")
    func radius() {
        #expect(RoughtimeServer.radius(rootDispersionNanoseconds: 0) == 3)
        #expect(RoughtimeServer.radius(rootDispersionNanoseconds: 2_600_000_000) == 4)
        #expect(RoughtimeServer.radius(rootDispersionNanoseconds: 16_000_000_000) == 17)
    }

    @Test("The online key is renewed when under 3 h of its delegation remain, and workers take the new one")
    func renewal() throws {
        let start = UTCInstant(secondsSinceUnixEpoch: 2_000_000_000)
        let keys = try RoughtimeKeyCell(longTermSeed: Self.seed, now: start)
        let first = keys.read()
        #expect(first.key.certificate.minimumTime == 2_000_000_000 - 6 * 3600)
        #expect(first.key.certificate.maximumTime == 2_000_000_000 + 18 * 3600)
        #expect(!keys.renewIfNeeded(now: UTCInstant(secondsSinceUnixEpoch: 2_000_000_000 + 14 * 3600)))
        #expect(keys.renewIfNeeded(now: UTCInstant(secondsSinceUnixEpoch: 2_000_000_000 + 16 * 3600)))
        let second = keys.read()
        #expect(second.version != first.version)
        #expect(second.key.certificate.onlinePublicKey != first.key.certificate.onlinePublicKey)
    }
}
