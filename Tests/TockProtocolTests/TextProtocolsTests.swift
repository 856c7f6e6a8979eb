import Testing
import TockProtocol

@Suite("Time Protocol (RFC 868)")
struct RFC868Tests {
    static let eraOneStart = Instants.eraOneStart

    @Test func unixEpoch() {
        #expect(RFC868.value(for: utc(0)) == 2_208_988_800)
        #expect(RFC868.value(for: utc(-1)) == 2_208_988_799)
        #expect(RFC868.value(for: utc(0, 999_999_999)) == 2_208_988_800)  // seconds truncated
    }

    @Test(arguments: [(Int64(-1), UInt32(0xFFFF_FFFF)), (0, 0), (1, 1)])
    func eraRollover(offset: Int64, value: UInt32) {
        #expect(RFC868.value(for: utc(Self.eraOneStart + offset, 500_000_000)) == value)
        let bytes = [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        for reference: Int64 in [2_085_955_200, 2_082_672_000, 2_087_942_400, Instants.newYear2026] {
            #expect(RFC868.decode(bytes, near: utc(reference)) == utc(Self.eraOneStart + offset))
            #expect(RFC868.instant(value, near: utc(reference)) == utc(Self.eraOneStart + offset))
        }
    }

    @Test func earlyValuesReadNear1950AreIn1900() {
        #expect(RFC868.decode([0, 0, 0, 1], near: utc(-631_152_000)) == utc(-2_208_988_799))
    }

    @Test func encodeWritesBigEndian() {
        var buffer = [UInt8](repeating: 0xAA, count: 6)
        let n = buffer.withUnsafeMutableBytes { RFC868.encode(utc(Instants.tuesday2026), into: $0) }
        #expect(n == 4)
        #expect(RFC868.replyLength == 4)
        #expect(buffer == [0xEE, 0xB0, 0x57, 0xA4, 0xAA, 0xAA])
        let epoch = buffer.withUnsafeMutableBytes { RFC868.encode(utc(0), into: $0) }
        #expect(epoch == 4)
        #expect(buffer.prefix(4) == [0x83, 0xAA, 0x7E, 0x80])
    }

    @Test func decodeRoundTrip() {
        #expect(RFC868.decode([0xEE, 0xB0, 0x57, 0xA4], near: utc(Instants.newYear2026)) == utc(Instants.tuesday2026))
        #expect(RFC868.decode([0x83, 0xAA, 0x7E, 0x80], near: utc(Instants.newYear2026)) == utc(0))
    }

    @Test(arguments: [[UInt8](), [0x83], [0x83, 0xAA, 0x7E], [0x83, 0xAA, 0x7E, 0x80, 0x00]])
    func decodeNeedsExactlyFourBytes(bytes: [UInt8]) {
        #expect(RFC868.decode(bytes, near: utc(Instants.newYear2026)) == nil)
    }
}

@Suite("Daytime (RFC 867)")
struct DaytimeTests {
    /// 1982-02-22 17:37:43 PST (01:37:43 UTC the next day), RFC 867's example instant.
    static let rfcExample = utc(383_276_263)
    static let pst = -8 * 3600
    static let tuesday = utc(Instants.tuesday2026)

    /// `Daytime.write` into a buffer of `capacity` bytes.
    static func write(_ instant: UTCInstant, _ format: DaytimeFormat, leapSecond: Bool = false, capacity: Int = Daytime.maximumReplyLength) -> String {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let n = buffer.withUnsafeMutableBytes {
            Daytime.write(instant, format: format, utcOffsetSeconds: 0, zoneAbbreviation: nil, leapSecond: leapSecond, into: $0)
        }
        return String(decoding: buffer.prefix(n), as: UTF8.self)
    }

    @Test func rfc867StyleWithZoneAbbreviation() {
        // RFC 867's example says "Tuesday", but 1982-02-22 was a Monday.
        #expect(Daytime.text(Self.rfcExample, format: .rfc867, utcOffsetSeconds: Self.pst, zoneAbbreviation: "PST")
            == "Monday, February 22, 1982 17:37:43-PST\r\n")
        #expect(Daytime.text(Self.tuesday, format: .rfc867) == "Tuesday, November 24, 2026 18:36:20-UTC\r\n")
    }

    @Test func rfc867StyleWithoutAbbreviationUsesTheOffset() {
        #expect(Daytime.text(Self.rfcExample, format: .rfc867, utcOffsetSeconds: Self.pst, zoneAbbreviation: nil)
            == "Monday, February 22, 1982 17:37:43-0800\r\n")
        #expect(Daytime.text(Self.tuesday, format: .rfc867, utcOffsetSeconds: 3600, zoneAbbreviation: "")
            == "Tuesday, November 24, 2026 19:36:20+0100\r\n")
    }

    @Test func iso8601() {
        #expect(Daytime.text(Self.tuesday, format: .iso8601) == "2026-11-24T18:36:20Z\r\n")
        #expect(Daytime.text(Self.tuesday, format: .iso8601, utcOffsetSeconds: 3600, zoneAbbreviation: "CET") == "2026-11-24T19:36:20+01:00\r\n")
        #expect(Daytime.text(Self.tuesday, format: .iso8601, utcOffsetSeconds: -(5 * 3600 + 30 * 60)) == "2026-11-24T13:06:20-05:30\r\n")
        #expect(Daytime.text(Self.rfcExample, format: .iso8601, utcOffsetSeconds: Self.pst) == "1982-02-22T17:37:43-08:00\r\n")
    }

    @Test func hmsHasNoLineEnding() {
        #expect(Daytime.text(Self.tuesday, format: .hms) == "18:36:20")
        #expect(Daytime.text(utc(0), format: .hms) == "00:00:00")
        #expect(Daytime.text(utc(9 * 3600 + 5 * 60 + 7), format: .hms) == "09:05:07")
    }

    @Test func insertedLeapSecondShowsAs60() {
        let leap = utc(Instants.lastSecondOf2016, 300_000_000)
        #expect(Self.write(leap, .hms, leapSecond: true) == "23:59:60")
        #expect(Self.write(leap, .iso8601, leapSecond: true) == "2016-12-31T23:59:60Z\r\n")
        #expect(Self.write(leap, .rfc867, leapSecond: true) == "Saturday, December 31, 2016 23:59:60+0000\r\n")
        #expect(Self.write(leap, .hms, leapSecond: false) == "23:59:59")
        #expect(Self.write(utc(Instants.lastSecondOf2016 - 1), .hms, leapSecond: true) == "23:59:58")
    }

    @Test func writeStopsAtTheBufferEnd() {
        #expect(Self.write(Self.tuesday, .hms, capacity: 5) == "18:36")
        #expect(Self.write(Self.tuesday, .iso8601, capacity: 0) == "")
    }

    @Test func repliesFitTheMaximumLength() {
        var random = FastRandom(seed: 867)
        for _ in 0..<200 {
            let instant = utc(Int64.random(in: -2_000_000_000...4_000_000_000, using: &random))
            for format in DaytimeFormat.allCases {
                let text = Daytime.text(instant, format: format, utcOffsetSeconds: -12 * 3600, zoneAbbreviation: "ABCDEF")
                #expect(text.utf8.count <= Daytime.maximumReplyLength)
            }
        }
        // The longest names: a Wednesday in September.
        #expect(Daytime.text(utc(1_348_703_999), format: .rfc867, zoneAbbreviation: "ABCDEF")
            == "Wednesday, September 26, 2012 23:59:59-ABCDEF\r\n")
    }
}

@Suite("CivilTime")
struct CivilTimeTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var unix: Int64
        var date: (Int, Int, Int)
        var time: (Int, Int, Int)
        /// 0 = Sunday.
        var weekday: Int
        var testDescription: String { "\(date) \(time)" }
    }

    static let cases: [Case] = [
        Case(unix: 0, date: (1970, 1, 1), time: (0, 0, 0), weekday: 4),
        Case(unix: 951_827_696, date: (2000, 2, 29), time: (12, 34, 56), weekday: 2),
        Case(unix: -2_203_891_200, date: (1900, 3, 1), time: (0, 0, 0), weekday: 4),
        Case(unix: 4_107_542_400, date: (2100, 3, 1), time: (0, 0, 0), weekday: 1),
        Case(unix: Instants.eraOneStart, date: (2036, 2, 7), time: (6, 28, 16), weekday: 4),
        Case(unix: Instants.tuesday2026, date: (2026, 11, 24), time: (18, 36, 20), weekday: 2),
        Case(unix: -1, date: (1969, 12, 31), time: (23, 59, 59), weekday: 3),
        Case(unix: -301_247_450, date: (1960, 6, 15), time: (8, 9, 10), weekday: 3),
        Case(unix: 2_147_483_648, date: (2038, 1, 19), time: (3, 14, 8), weekday: 2),
    ]

    @Test(arguments: cases)
    func roundTrip(c: Case) {
        let civil = CivilTime(utc(c.unix, 999_999_999), utcOffsetSeconds: 0)
        #expect(civil.year == c.date.0)
        #expect(civil.month == c.date.1)
        #expect(civil.day == c.date.2)
        #expect(civil.hour == c.time.0)
        #expect(civil.minute == c.time.1)
        #expect(civil.second == c.time.2)
        #expect(civil.weekday == c.weekday)
        #expect(civil.utcOffsetSeconds == 0)
        let built = CivilTime(year: c.date.0, month: c.date.1, day: c.date.2, hour: c.time.0, minute: c.time.1, second: c.time.2)
        #expect(built == civil)
        #expect(built.instant == utc(c.unix))
    }

    @Test func localTimeAcrossMidnight() {
        // 1982-02-23 01:37:43 UTC is still the 22nd in California.
        let civil = CivilTime(utc(383_276_263), utcOffsetSeconds: -8 * 3600)
        #expect((civil.year, civil.month, civil.day, civil.hour) == (1982, 2, 22, 17))
        #expect(civil.weekday == 1)  // Monday
        #expect(civil.instant == utc(383_276_263))
        let east = CivilTime(utc(-1), utcOffsetSeconds: 3600)  // 1970-01-01 00:59:59 in UTC+1
        #expect((east.year, east.month, east.day, east.hour, east.minute, east.second) == (1970, 1, 1, 0, 59, 59))
        #expect(east.weekday == 4)
    }

    @Test func leapYearRules() {
        func daysInFebruary(_ year: Int) -> Int64 {
            CivilTime.days(fromCivilYear: year, month: 3, day: 1) - CivilTime.days(fromCivilYear: year, month: 2, day: 1)
        }
        #expect(daysInFebruary(2000) == 29)
        #expect(daysInFebruary(1900) == 28)
        #expect(daysInFebruary(2100) == 28)
        #expect(daysInFebruary(2024) == 29)
        #expect(daysInFebruary(2026) == 28)
        #expect(CivilTime.days(fromCivilYear: 1970, month: 1, day: 1) == 0)
        #expect(CivilTime.days(fromCivilYear: 1969, month: 12, day: 31) == -1)
    }

    @Test func daysAndCivilAreInverses() {
        var previous = CivilTime.civil(fromDays: -80_001)
        for days in Int64(-80_000)...80_000 {
            let (y, m, d) = CivilTime.civil(fromDays: days)
            #expect(CivilTime.days(fromCivilYear: y, month: m, day: d) == days)
            // Each day follows the previous one.
            let sameMonth = y == previous.year && m == previous.month && d == previous.day + 1
            let nextMonth = d == 1 && (m == previous.month + 1 && y == previous.year || m == 1 && previous.month == 12 && y == previous.year + 1)
            #expect(sameMonth || nextMonth, "\(days)")
            previous = (y, m, d)
        }
    }

    @Test func leapSecondMapsOntoTheNextSecond() {
        let leap = CivilTime(year: 2016, month: 12, day: 31, hour: 23, minute: 59, second: 60)
        #expect(leap.instant == utc(Instants.lastSecondOf2016 + 1))
        #expect(leap.weekday == 6)  // Saturday
    }

    @Test func iso8601Fractions() {
        let civil = CivilTime(utc(Instants.tuesday2026), utcOffsetSeconds: 0)
        #expect(civil.iso8601() == "2026-11-24T18:36:20Z")
        #expect(civil.iso8601(fractionDigits: 3, nanosecond: 123_456_789) == "2026-11-24T18:36:20.123Z")
        #expect(civil.iso8601(fractionDigits: 9, nanosecond: 5) == "2026-11-24T18:36:20.000000005Z")
        #expect(civil.iso8601(fractionDigits: 12, nanosecond: 123_456_789) == "2026-11-24T18:36:20.123456789Z")
    }
}
