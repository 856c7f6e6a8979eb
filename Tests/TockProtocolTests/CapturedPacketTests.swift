import Testing
import TockProtocol

/// Packets captured on loopback from software tock did not write: chronyd 4.3 serving
/// `local stratum 1`, and the requests of Python's ntplib and of rdate's SNTP mode.
@Suite struct CapturedPacketTests {
    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// chronyd's reply to an NTPv4 request whose transmit timestamp was 0x0123456789abcdef.
    static let chronyReplyV4 = bytes("240100e600000000000000007f7f0101eeb05d6b913ad8dd0123456789abcdefeeb05d6ca6ee21d1eeb05d6ca6f20466")
    /// chronyd's reply to an NTPv3 request whose transmit timestamp was 0xfedcba9876543210.
    static let chronyReplyV3 = bytes("1c0100e600000000000000007f7f0101eeb05d6b913ad8ddfedcba9876543210eeb05d6ca6f5b7f7eeb05d6ca6f648f8")
    /// ntplib's request: NTPv2 (0x13), its clock in the transmit timestamp.
    static let ntplibRequest = bytes("13000000000000000000000000000000000000000000000000000000000000000000000000000000eeb05d6ca7dc4000")
    /// rdate -n's request: NTPv4 with a random transmit timestamp.
    static let rdateRequest = bytes("2300000000000000000000000000000000000000000000000000000000000000000000000000000079be3ce27a5731ee")

    @Test func decodesChronyReply() throws {
        let p = try NTPPacket(decoding: Self.chronyReplyV4)
        #expect(p.leap == .noWarning)
        #expect(p.version == 4)
        #expect(p.mode == .server)
        #expect(p.stratum == 1)
        #expect(p.precision == -26)
        #expect(p.rootDelay.rawValue == 0)
        #expect(p.rootDispersion.rawValue == 0)
        #expect(p.referenceID == 0x7F7F_0101)
        #expect(p.originTimestamp.rawValue == 0x0123_4567_89AB_CDEF)
        #expect(p.receiveTimestamp.rawValue == 0xEEB0_5D6C_A6EE_21D1)
        #expect(p.bytes == Self.chronyReplyV4)
        let reference = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
        let t2 = p.receiveTimestamp.instant(near: reference)
        // 0xeeb05d6c seconds since 1900 = 2026-11-24 19:xx UTC.
        #expect(CivilTime(t2, utcOffsetSeconds: 0).year == 2026)
        #expect(CivilTime(t2, utcOffsetSeconds: 0).month == 11)
        #expect(CivilTime(t2, utcOffsetSeconds: 0).day == 24)
    }

    @Test func clientAcceptsChronyReplies() throws {
        for (reply, transmit, version) in [(Self.chronyReplyV4, UInt64(0x0123_4567_89AB_CDEF), UInt8(4)), (Self.chronyReplyV3, 0xFEDC_BA98_7654_3210, 3)] {
            let exchange = NTPClientExchange(version: version, requestTransmit: NTPTimestamp(rawValue: transmit))
            let p = try NTPPacket(decoding: reply)
            let reference = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
            // Our clock agrees with chronyd's: T1 10 µs before T2, T4 10 µs after T3.
            let t1 = p.receiveTimestamp.instant(near: reference).advanced(byNanoseconds: -10_000)
            let t4 = p.transmitTimestamp.instant(near: reference).advanced(byNanoseconds: 10_000)
            let sample = try exchange.evaluate(reply: reply, t1: t1, t4: t4).get()
            #expect(abs(sample.offsetNanoseconds) <= 1)
            #expect(sample.delayNanoseconds >= 19_999 && sample.delayNanoseconds <= 20_001)
            #expect(sample.packet.version == version)
        }
    }

    @Test(arguments: [(ntplibRequest, UInt8(2)), (rdateRequest, UInt8(4))])
    func answersCapturedRequests(request: [UInt8], version: UInt8) throws {
        let responder = NTPServer(precision: -25)
        var random = FastRandom(seed: 7)
        var reply = [UInt8](repeating: 0, count: NTPServer.maximumReplyLength)
        let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
        let state = ServerClockState.local(stratum: 10, now: now, precisionNanoseconds: 30)
        let action = request.withUnsafeBytes { req in
            reply.withUnsafeMutableBytes { out in
                let a = responder.respond(to: req, sourcePort: 40000, receiveTime: now, clock: state, reply: out, random: &random)
                responder.stampTransmitTime(now.advanced(byNanoseconds: 5000), reply: out, random: &random)
                return a
            }
        }
        #expect(action == .respond(length: 48, kind: .time))
        let p = try NTPPacket(decoding: Array(reply[..<48]))
        #expect(p.version == version)
        #expect(p.mode == .server)
        #expect(p.stratum == 10)
        #expect(p.originTimestamp.rawValue == be64(request, 40))
        #expect(Int64(bitPattern: p.transmitTimestamp.rawValue &- p.receiveTimestamp.rawValue) > 0)
    }
}
