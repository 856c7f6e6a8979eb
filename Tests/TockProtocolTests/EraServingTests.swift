import Testing
import TockProtocol

/// Serving and querying around the NTP era rollover (2036-02-07 06:28:16 UTC) and the 32-bit
/// Unix rollover (2038-01-19 03:14:08 UTC), with the clock injected into the responder and the
/// client checks: the whole exchange, not just the encoding.
@Suite struct EraServingTests {
    static let instants: [Int64] = [2_085_978_495, 2_085_978_496, 2_085_978_497, 2_147_483_647, 2_147_483_648]

    @Test(arguments: instants)
    func exchangeAcrossRollovers(seconds: Int64) throws {
        let responder = NTPServer(precision: -25)
        var random = FastRandom(seed: UInt64(seconds))
        let t1 = UTCInstant(secondsSinceUnixEpoch: seconds, nanoseconds: 999_990_000)
        let t2 = t1.advanced(byNanoseconds: 5_000)
        let t3 = t2.advanced(byNanoseconds: 2_000)
        let t4 = t3.advanced(byNanoseconds: 5_000)
        let exchange = NTPClientExchange(version: 4, random: &random)
        var reply = [UInt8](repeating: 0, count: NTPServer.maximumReplyLength)
        let action = exchange.requestBytes.withUnsafeBytes { req in
            reply.withUnsafeMutableBytes { out in
                let a = responder.respond(to: req, sourcePort: 50_000, receiveTime: t2, clock: .local(stratum: 1, now: t1, precisionNanoseconds: 30), reply: out, random: &random)
                responder.stampTransmitTime(t3, reply: out, random: &random)
                return a
            }
        }
        #expect(action == .respond(length: 48, kind: .time))
        let sample = try exchange.evaluate(reply: Array(reply[..<48]), t1: t1, t4: t4).get()
        // Sub-precision bits are random (30 ns here), so allow that much.
        #expect(abs(sample.offsetNanoseconds) < 100, "offset \(sample.offsetNanoseconds) ns at \(seconds)")
        #expect(abs(sample.t2.nanoseconds(since: t2)) < 100)
        #expect(sample.delayNanoseconds < 11_000)
    }

    @Test(arguments: instants)
    func timeProtocolAcrossRollovers(seconds: Int64) {
        let instant = UTCInstant(secondsSinceUnixEpoch: seconds)
        var out = [UInt8](repeating: 0, count: 4)
        _ = out.withUnsafeMutableBytes { RFC868.encode(instant, into: $0) }
        // Read by a client whose clock is 3 s off, on either side.
        #expect(RFC868.decode(out, near: instant.advanced(byNanoseconds: 3_000_000_000)) == instant)
        #expect(RFC868.decode(out, near: instant.advanced(byNanoseconds: -3_000_000_000)) == instant)
    }
}
