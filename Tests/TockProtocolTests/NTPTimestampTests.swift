import Testing
import TockProtocol

@Suite("NTPTimestamp and UTCInstant")
struct NTPTimestampTests {
    static let eraOneStart = Instants.eraOneStart

    @Test func unixEpochIsNTPSeconds2208988800() {
        #expect(Epochs.secondsFrom1900To1970 == 2_208_988_800)
        let epoch = NTPTimestamp(utc(0))
        #expect(epoch.rawValue == 0x83AA_7E80_0000_0000)
        #expect(epoch.seconds == 0x83AA_7E80)
        #expect(epoch.fraction == 0)
        #expect(epoch.instant(near: utc(Instants.newYear2026)) == utc(0))
        #expect(epoch.description == "83aa7e80.00000000")
    }

    @Test(arguments: [
        (Int64(-1), UInt32(0xFFFF_FFFF)),  // 2036-02-07 06:28:15
        (0, 0x0000_0000),  // 06:28:16, era 1 begins
        (1, 0x0000_0001),  // 06:28:17
    ])
    func eraOneBoundaryEncodes(offset: Int64, seconds: UInt32) {
        let t = NTPTimestamp(utc(Self.eraOneStart + offset))
        #expect(t.seconds == seconds)
        #expect(t.fraction == 0)
    }

    @Test(arguments: [
        Int64(2_085_955_200),  // 2036-02-07 00:00:00
        2_082_672_000,  // 2035-12-31
        2_087_942_400,  // 2036-03-01
        Instants.newYear2026,
        Instants.may1990,
    ])
    func eraOneBoundaryDecodesNearAReference(reference: Int64) {
        for offset in Int64(-1)...1 {
            for nanoseconds: Int64 in [0, 250_000_000, 999_999_999] {
                let instant = utc(Self.eraOneStart + offset, nanoseconds)
                #expect(NTPTimestamp(instant).instant(near: utc(reference)) == instant)
            }
        }
    }

    @Test func wireValuesAroundTheRolloverDecodeToTheRightSide() {
        let reference = utc(2_085_955_200)  // 2036-02-07 00:00:00, still era 0
        #expect(NTPTimestamp(seconds: 0xFFFF_FFFF, fraction: 0).instant(near: reference) == utc(Self.eraOneStart - 1))
        #expect(NTPTimestamp(seconds: 0, fraction: 0x8000_0000).instant(near: reference) == utc(Self.eraOneStart, 500_000_000))
        #expect(NTPTimestamp(seconds: 1, fraction: 0).instant(near: reference) == utc(Self.eraOneStart + 1))
    }

    @Test func timestampFrom1990ReadIn2026Is1990() {
        let t = NTPTimestamp(utc(Instants.may1990))
        #expect(t.instant(near: utc(Instants.newYear2026)) == utc(Instants.may1990))
        // The same wire value read near 2100 is in era 1, 2^32 s later.
        #expect(t.instant(near: utc(4_107_542_400)) == utc(Instants.may1990 + (1 << 32)))
    }

    @Test func preUnixEpochInstantsRoundTrip() {
        let instant = utc(-301_247_450, 123_456_789)  // 1960-06-15 08:09:10.123456789
        let t = NTPTimestamp(instant)
        #expect(t.seconds == 1_907_741_350)
        #expect(t.instant(near: utc(0)) == instant)
    }

    @Test(arguments: [Int64(2_147_483_647), 2_147_483_648])  // 2038-01-19 03:14:07 and 03:14:08
    func year2038RoundTrips(unixSeconds: Int64) {
        let instant = utc(unixSeconds, 987_654_321)
        let t = NTPTimestamp(instant)
        #expect(t.seconds == UInt32(truncatingIfNeeded: unixSeconds + 2_208_988_800))
        #expect(t.instant(near: utc(2_145_916_800)) == instant)  // 2038-01-01
        #expect(t.instant(near: utc(Instants.newYear2026)) == instant)
    }

    @Test func halfSecondIsFraction0x80000000() {
        let t = NTPTimestamp(utc(Instants.tuesday2026, 500_000_000))
        #expect(t.fraction == 0x8000_0000)
        #expect(t.instant(near: utc(Instants.tuesday2026)).nanosecondOfSecond == 500_000_000)
        #expect(NTPTimestamp(utc(0, 250_000_000)).fraction == 0x4000_0000)
        #expect(NTPTimestamp(utc(0, 1)).fraction == 4)  // 2^32 / 10^9 = 4.29, rounded down
    }

    @Test func fractionRoundTripsWithinOneNanosecond() {
        var random = FastRandom(seed: 0x5EED)
        let edges: [Int64] = [0, 1, 2, 232, 233, 499_999_999, 500_000_001, 999_999_998, 999_999_999]
        let samples = edges + (0..<5_000).map { _ in Int64.random(in: 0..<1_000_000_000, using: &random) }
        for nanoseconds in samples {
            let instant = utc(Instants.tuesday2026, nanoseconds)
            let back = NTPTimestamp(instant).instant(near: instant)
            #expect(abs(back.nanoseconds(since: instant)) <= 1, "ns \(nanoseconds) came back as \(back)")
        }
    }

    @Test func maximumFractionRoundsToTheNextSecond() {
        let t = NTPTimestamp(seconds: NTPTimestamp(utc(Instants.tuesday2026)).seconds, fraction: 0xFFFF_FFFF)
        #expect(t.instant(near: utc(Instants.tuesday2026)) == utc(Instants.tuesday2026 + 1))
    }

    @Test func fieldsAndDescription() {
        let t = NTPTimestamp(seconds: 0xDEAD_BEEF, fraction: 0x0000_00AB)
        #expect(t.rawValue == 0xDEAD_BEEF_0000_00AB)
        #expect(t.seconds == 0xDEAD_BEEF)
        #expect(t.fraction == 0xAB)
        #expect(t.description == "deadbeef.000000ab")
        #expect(NTPTimestamp.zero.isZero)
        #expect(!NTPTimestamp(rawValue: 1).isZero)
    }

    // MARK: UTCInstant

    @Test func negativeInstantsFloorToTheEarlierSecond() {
        let justBefore = UTCInstant(nanosecondsSinceUnixEpoch: -1)
        #expect(justBefore.secondsSinceUnixEpoch == -1)
        #expect(justBefore.nanosecondOfSecond == 999_999_999)
        let half = UTCInstant(nanosecondsSinceUnixEpoch: -500_000_000)
        #expect(half.secondsSinceUnixEpoch == -1)
        #expect(half.nanosecondOfSecond == 500_000_000)
        #expect(half.description == "1969-12-31T23:59:59.500000000Z")
    }

    @Test func instantArithmetic() {
        let a = utc(100, 900_000_000)
        let b = a.advanced(byNanoseconds: 200_000_000)
        #expect(b == utc(101, 100_000_000))
        #expect(b.nanoseconds(since: a) == 200_000_000)
        #expect(a.nanoseconds(since: b) == -200_000_000)
        #expect(a < b)
        #expect(!(b < a))
        #expect(utc(Self.eraOneStart).description == "2036-02-07T06:28:16.000000000Z")
    }
}

@Suite("NTPShort")
struct NTPShortTests {
    @Test(arguments: [
        (Int64(1_000_000_000), UInt32(0x0001_0000)),
        (500_000_000, 0x0000_8000),
        (1_500_000_000, 0x0001_8000),
        (31_250_000, 0x0000_0800),
        (65_534_000_000_000, 0xFFFE_0000),
    ])
    func fromNanoseconds(nanoseconds: Int64, raw: UInt32) {
        let short = NTPShort(nanoseconds: nanoseconds)
        #expect(short.rawValue == raw)
        #expect(short.nanoseconds == nanoseconds)
    }

    @Test(arguments: [Int64(0), -1, -1_000_000_000, Int64.min])
    func negativeClampsToZero(nanoseconds: Int64) {
        #expect(NTPShort(nanoseconds: nanoseconds).rawValue == 0)
    }

    @Test(arguments: [Int64(65_536_000_000_000), 100_000_000_000_000, Int64.max])
    func hugeClampsToMaximum(nanoseconds: Int64) {
        #expect(NTPShort(nanoseconds: nanoseconds).rawValue == UInt32.max)
    }

    @Test func toNanosecondsAndSeconds() {
        #expect(NTPShort(rawValue: 1).nanoseconds == 15_258)  // 2^-16 s = 15258.79 ns
        #expect(NTPShort(rawValue: UInt32.max).nanoseconds == 65_535_999_984_741)
        #expect(NTPShort(rawValue: 0x0001_8000).seconds == 1.5)
        #expect(NTPShort(rawValue: 0x0000_4000).seconds == 0.25)
    }

    /// Rounding is upwards, so a root delay or dispersion is never understated, by less than
    /// one unit (2^-16 s ≈ 15.26 µs).
    @Test func roundTripRoundsUpByLessThanOneUnit() {
        var random = FastRandom(seed: 16)
        var failures = 0
        for _ in 0..<2_000 {
            let nanoseconds = Int64.random(in: 1..<65_535_000_000_000, using: &random)
            let back = NTPShort(nanoseconds: nanoseconds).nanoseconds
            // `nanoseconds` (the reading back) truncates, so allow 1 ns below.
            if !(back >= nanoseconds - 1 && back - nanoseconds < 15_259) { failures += 1 }
        }
        #expect(failures == 0)
        #expect(NTPShort(nanoseconds: 10_000).rawValue == 1)
    }
}
