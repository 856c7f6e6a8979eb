import Testing
import TockProtocol

@Suite("NTPClientExchange")
struct NTPClientExchangeTests {
    static let exchange = NTPClientExchange(requestTransmit: NTPTimestamp(rawValue: 0x1122_3344_5566_7788))
    static let base = Instants.tuesday2026
    // T1 = base + 0.000, T2 = base + 0.600, T3 = base + 0.700, T4 = base + 0.300.
    static let t1 = utc(base)
    static let t2 = utc(base, 600_000_000)
    static let t3 = utc(base, 700_000_000)
    static let t4 = utc(base, 300_000_000)

    /// A well-formed reply to `exchange` with the given receive and transmit times, changed by `edit`.
    static func reply(t2: UTCInstant = t2, t3: UTCInstant = t3, _ edit: (inout NTPPacket) -> Void = { _ in }) -> [UInt8] {
        var packet = NTPPacket(
            leap: .noWarning, version: 4, mode: .server, stratum: 2, poll: 6, precision: -20,
            rootDelay: NTPShort(rawValue: 0x0000_0800),  // 31.25 ms
            rootDispersion: NTPShort(rawValue: 0x0000_0400),  // 15.625 ms
            referenceID: 0xC000_0201,
            referenceTimestamp: NTPTimestamp(utc(base - 100)),
            originTimestamp: exchange.requestTransmit,
            receiveTimestamp: NTPTimestamp(t2),
            transmitTimestamp: NTPTimestamp(t3)
        )
        edit(&packet)
        return packet.bytes
    }

    static func evaluate(_ reply: [UInt8], t1: UTCInstant = t1, t4: UTCInstant = t4) -> Result<NTPSample, NTPReplyProblem> {
        exchange.evaluate(reply: reply, t1: t1, t4: t4)
    }

    @Test func correctReplyGivesOffsetAndDelay() throws {
        let sample = try Self.evaluate(Self.reply()).get()
        #expect(sample.t1 == Self.t1)
        #expect(sample.t2 == Self.t2)
        #expect(sample.t3 == Self.t3)
        #expect(sample.t4 == Self.t4)
        #expect(sample.offsetNanoseconds == 500_000_000)  // ((0.6) + (0.4)) / 2
        #expect(sample.delayNanoseconds == 200_000_000)  // 0.3 − 0.1
        #expect(sample.rootDistanceNanoseconds == 131_250_000)  // (31.25 + 200) / 2 + 15.625 ms
        #expect(sample.serverTimeAtReceipt == utc(Self.base, 800_000_000))
        #expect(sample.errorNanoseconds(localPrecision: -20) == 100_000_000 + 954 + 954)
        #expect(sample.packet.stratum == 2)
    }

    @Test func negativeDelayIsClampedToZero() throws {
        // T3 − T2 longer than T4 − T1: impossible, but clocks step.
        let sample = try Self.evaluate(Self.reply(t3: utc(Self.base, 900_000_000))).get()
        #expect(sample.delayNanoseconds == 0)
    }

    @Test func bytesAfterTheHeaderAreIgnored() throws {
        let sample = try Self.evaluate(Self.reply() + mac(length: 20)).get()
        #expect(sample.offsetNanoseconds == 500_000_000)
    }

    @Test func originMismatchIsBogus() {
        let wrongOrigin = Self.reply { $0.originTimestamp = NTPTimestamp(rawValue: 0x1122_3344_5566_7789) }
        #expect(Self.evaluate(wrongOrigin) == .failure(.bogusOrigin))
        let zeroOrigin = Self.reply { $0.originTimestamp = .zero }
        #expect(Self.evaluate(zeroOrigin) == .failure(.bogusOrigin))
    }

    @Test func forgedKissWithTheWrongOriginIsBogusNotAKiss() {
        let forged = Self.reply {
            $0.originTimestamp = .zero
            $0.leap = .unsynchronized
            $0.stratum = 0
            $0.referenceID = KissCode.deny.rawValue
        }
        #expect(Self.evaluate(forged) == .failure(.bogusOrigin))
    }

    @Test(arguments: [("RATE", KissCode.rate), ("DENY", .deny), ("RSTR", .restrict), ("NTSN", .ntsNak)])
    func kissOfDeath(text: String, code: KissCode) {
        let kiss = Self.reply {
            $0.leap = .unsynchronized
            $0.stratum = 0
            $0.referenceID = ReferenceID.ascii(text)
            $0.receiveTimestamp = .zero
            $0.transmitTimestamp = .zero
        }
        #expect(Self.evaluate(kiss) == .failure(.kissOfDeath(code)))
        let kissWithoutAlarm = Self.reply {
            $0.stratum = 0
            $0.referenceID = ReferenceID.ascii(text)
        }
        #expect(Self.evaluate(kissWithoutAlarm) == .failure(.kissOfDeath(code)))
    }

    /// NTPsec and ntpd answer with stratum 0 and `INIT` before their first synchronisation:
    /// informational codes mean "unsynchronised", not a kiss-o'-death.
    @Test(arguments: [UInt32(0), 0x0102_0304, ReferenceID.ascii("INIT"), ReferenceID.ascii("STEP")])
    func stratumZeroWithoutAKissCodeIsUnsynchronised(referenceID: UInt32) {
        let reply = Self.reply {
            $0.stratum = 0
            $0.referenceID = referenceID
        }
        #expect(Self.evaluate(reply) == .failure(.unsynchronized))
    }

    @Test func alarmLeapIndicatorIsUnsynchronised() {
        #expect(Self.evaluate(Self.reply { $0.leap = .unsynchronized }) == .failure(.unsynchronized))
    }

    @Test(arguments: [UInt8(16), 17, 255])
    func stratumSixteenAndAboveIsUnsynchronised(stratum: UInt8) {
        #expect(Self.evaluate(Self.reply { $0.stratum = stratum }) == .failure(.unsynchronized))
    }

    @Test func stratumFifteenIsAccepted() {
        #expect((try? Self.evaluate(Self.reply { $0.stratum = 15 }).get()) != nil)
    }

    @Test(arguments: [NTPMode.client, .reserved, .symmetricActive, .broadcast, .control])
    func wrongMode(mode: NTPMode) {
        #expect(Self.evaluate(Self.reply { $0.mode = mode }) == .failure(.wrongMode(mode.rawValue)))
    }

    @Test(arguments: [UInt8(0), 5, 7])
    func badVersion(version: UInt8) {
        #expect(Self.evaluate(Self.reply { $0.version = version }) == .failure(.badVersion(version)))
    }

    @Test func zeroTimestampsAreRejected() {
        #expect(Self.evaluate(Self.reply { $0.transmitTimestamp = .zero }) == .failure(.zeroTimestamp))
        #expect(Self.evaluate(Self.reply { $0.receiveTimestamp = .zero }) == .failure(.zeroTimestamp))
    }

    @Test func rootDistanceAboveOneAndAHalfSecondsIsRejected() {
        let reply = Self.reply { $0.rootDispersion = NTPShort(rawValue: 0x0002_0000) }  // 2 s
        // (31.25 ms + 200 ms) / 2 + 2 s
        #expect(Self.evaluate(reply) == .failure(.rootDistanceExceeded(nanoseconds: 2_115_625_000)))
    }

    @Test func rootDistanceLimitIsInclusive() {
        // Zero delay: T4 − T1 = T3 − T2 = 0.1 s.
        let t4 = utc(Self.base, 100_000_000)
        func withDispersion(_ raw: UInt32) -> [UInt8] {
            Self.reply {
                $0.rootDelay = NTPShort(rawValue: 0)
                $0.rootDispersion = NTPShort(rawValue: raw)
            }
        }
        #expect((try? Self.evaluate(withDispersion(0x0001_8000), t4: t4).get()) != nil)
        #expect(Self.evaluate(withDispersion(0x0001_8001), t4: t4) == .failure(.rootDistanceExceeded(nanoseconds: 1_500_015_258)))
    }

    @Test(arguments: [0, 1, 47])
    func shortReplyIsMalformed(length: Int) {
        let short = Array(Self.reply().prefix(length))
        #expect(Self.evaluate(short) == .failure(.malformed(.tooShort(length))))
    }

    @Test func requestBytes() {
        let bytes = Self.exchange.requestBytes
        #expect(bytes.count == 48)
        #expect(bytes[0] == 0x23)
        #expect(bytes[1..<40].allSatisfy { $0 == 0 })
        #expect(Array(bytes[40..<48]) == bigEndianBytes(0x1122_3344_5566_7788))
        let v3 = NTPClientExchange(version: 3, requestTransmit: NTPTimestamp(rawValue: 1))
        #expect(v3.requestBytes[0] == 0x1B)
        #expect(v3.requestBytes[47] == 1)
    }

    /// Returns zero once, then counts up.
    struct ZeroFirstGenerator: RandomNumberGenerator {
        var value: UInt64 = 0
        mutating func next() -> UInt64 {
            defer { value += 5 }
            return value
        }
    }

    @Test func randomTransmitIsNeverZero() {
        var generator = ZeroFirstGenerator()
        let exchange = NTPClientExchange(random: &generator)
        #expect(exchange.requestTransmit.rawValue == 5)
        #expect(exchange.version == 4)
        var a = FastRandom(seed: 9)
        var b = FastRandom(seed: 9)
        #expect(NTPClientExchange(random: &a).requestTransmit == NTPClientExchange(random: &b).requestTransmit)
        #expect(NTPClientExchange(random: &a).requestTransmit != NTPClientExchange(random: &a).requestTransmit)
    }

    @Test func replyToOwnRequestThroughTheResponder() throws {
        let exchange = NTPClientExchange(requestTransmit: NTPTimestamp(rawValue: 0xCAFE_F00D_0000_0001))
        let clock = ServerClockState.local(stratum: 3, now: Self.t2, precisionNanoseconds: 954)
        let served = serve(exchange.requestBytes, clock: clock, receiveTime: Self.t2, transmitTime: Self.t3)
        let sample = try exchange.evaluate(reply: Array(served.reply.prefix(48)), t1: Self.t1, t4: Self.t4).get()
        #expect(abs(sample.offsetNanoseconds - 500_000_000) <= 954)
        #expect(abs(sample.delayNanoseconds - 200_000_000) <= 2 * 954)
    }

    @Test func sampleStraddlingTheEraRolloverHasASmallOffset() throws {
        let era1 = Instants.eraOneStart
        let t1 = utc(era1 - 1, 900_000_000)  // 06:28:15.9, era 0
        let t2 = utc(era1, 50_000_000)  // 06:28:16.05, era 1
        let t3 = utc(era1, 60_000_000)
        let t4 = utc(era1, 100_000_000)
        let reply = Self.reply(t2: t2, t3: t3)
        #expect(be32(reply, 32) == 0)  // the server's seconds field has wrapped
        let sample = try Self.evaluate(reply, t1: t1, t4: t4).get()
        #expect(sample.t2 == t2)
        #expect(sample.offsetNanoseconds == 55_000_000)  // ((0.15) + (−0.04)) / 2
        #expect(sample.delayNanoseconds == 190_000_000)
    }

    @Test func serverStillInEraZeroWhileWeAreInEraOne() throws {
        let era1 = Instants.eraOneStart
        let t1 = utc(era1, 100_000_000)
        let t2 = utc(era1 - 1, 800_000_000)
        let t3 = utc(era1 - 1, 810_000_000)
        let t4 = utc(era1, 300_000_000)
        let reply = Self.reply(t2: t2, t3: t3)
        #expect(be32(reply, 32) == 0xFFFF_FFFF)
        let sample = try Self.evaluate(reply, t1: t1, t4: t4).get()
        #expect(sample.offsetNanoseconds == -395_000_000)  // ((−0.3) + (−0.49)) / 2
        #expect(sample.delayNanoseconds == 190_000_000)
    }

    @Test func problemsDescribeThemselves() {
        #expect(NTPReplyProblem.kissOfDeath(.rate).description.contains("RATE"))
        #expect(NTPReplyProblem.wrongMode(3).description.contains("3"))
        #expect(NTPReplyProblem.rootDistanceExceeded(nanoseconds: 2_000_000_000).description.contains("2.0 s"))
    }
}
