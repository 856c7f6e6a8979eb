/// A calendar date and wall-clock time, derived from a `UTCInstant` and a zone offset.
///
/// Daytime (RFC 867) and the client's display need year/month/day without Foundation's
/// allocating formatters; the conversion is the proleptic Gregorian "days from civil" algorithm.
public struct CivilTime: Sendable, Hashable {
    /// The proleptic Gregorian year, e.g. 2036; not limited to four digits.
    public var year: Int
    /// 1...12
    public var month: Int
    /// 1...31
    public var day: Int
    /// 0...23
    public var hour: Int
    /// 0...59
    public var minute: Int
    /// 0...60; 60 only for an inserted leap second.
    public var second: Int
    /// 0 = Sunday ... 6 = Saturday.
    public var weekday: Int
    /// The zone's offset from UTC in seconds (east positive).
    public var utcOffsetSeconds: Int

    /// Breaks `instant` down in a zone `utcOffsetSeconds` east of UTC.
    public init(_ instant: UTCInstant, utcOffsetSeconds: Int) {
        let local = instant.secondsSinceUnixEpoch + Int64(utcOffsetSeconds)
        var days = local / 86_400
        var secondOfDay = local % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (y, m, d) = CivilTime.civil(fromDays: days)
        self.year = y
        self.month = m
        self.day = d
        self.hour = Int(secondOfDay / 3600)
        self.minute = Int(secondOfDay / 60 % 60)
        self.second = Int(secondOfDay % 60)
        // 1970-01-01 was a Thursday (4).
        let w = (days + 4) % 7
        self.weekday = Int(w < 0 ? w + 7 : w)
        self.utcOffsetSeconds = utcOffsetSeconds
    }

    /// Creates a civil time from its fields, as a test or a leap-second display needs.
    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, utcOffsetSeconds: Int = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        let days = CivilTime.days(fromCivilYear: year, month: month, day: day)
        let w = (days + 4) % 7
        self.weekday = Int(w < 0 ? w + 7 : w)
        self.utcOffsetSeconds = utcOffsetSeconds
    }

    /// The UTC instant of this civil time (a leap second 60 maps onto the next second's start).
    public var instant: UTCInstant {
        let days = CivilTime.days(fromCivilYear: year, month: month, day: day)
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(utcOffsetSeconds)
        return UTCInstant(secondsSinceUnixEpoch: seconds)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    public static func days(fromCivilYear year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date `days` after 1970-01-01.
    public static func civil(fromDays days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return (Int(y), Int(m), Int(d))
    }

    /// ISO 8601, e.g. `2026-11-24T18:36:20Z` or `2026-11-24T19:36:20+01:00`.
    public func iso8601(fractionDigits: Int = 0, nanosecond: Int64 = 0) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(40)
        CivilTextWriter.appendISO8601(self, fractionDigits: fractionDigits, nanosecond: nanosecond) { bytes.append($0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Writes civil times as ASCII, byte by byte, so the per-request path can format into a buffer
/// it owns without allocating.
public enum CivilTextWriter {
    static let weekdayNames: [StaticString] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    static let monthNames: [StaticString] = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]

    @inline(__always)
    static func appendStatic(_ s: StaticString, _ emit: (UInt8) -> Void) {
        s.withUTF8Buffer { for b in $0 { emit(b) } }
    }

    @inline(__always)
    static func appendDigits(_ value: Int, width: Int, _ emit: (UInt8) -> Void) {
        var divisor = 1
        for _ in 1..<max(width, 1) { divisor *= 10 }
        var v = value
        // Wider values (a year past 9999) keep every digit.
        while v / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            emit(UInt8(truncatingIfNeeded: 48 + (v / divisor) % 10))
            v %= divisor
            divisor /= 10
        }
    }

    static func appendOffset(_ offset: Int, colon: Bool, _ emit: (UInt8) -> Void) {
        emit(offset < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
        let a = abs(offset)
        appendDigits(a / 3600, width: 2, emit)
        if colon { emit(UInt8(ascii: ":")) }
        appendDigits(a / 60 % 60, width: 2, emit)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC) or with `±HH:MM`.
    public static func appendISO8601(_ t: CivilTime, fractionDigits: Int = 0, nanosecond: Int64 = 0, _ emit: (UInt8) -> Void) {
        appendDigits(t.year, width: 4, emit)
        emit(UInt8(ascii: "-"))
        appendDigits(t.month, width: 2, emit)
        emit(UInt8(ascii: "-"))
        appendDigits(t.day, width: 2, emit)
        emit(UInt8(ascii: "T"))
        appendHMS(t, emit)
        if fractionDigits > 0 {
            emit(UInt8(ascii: "."))
            var scaled = Int(nanosecond)
            for _ in 0..<(9 - min(fractionDigits, 9)) { scaled /= 10 }
            appendDigits(scaled, width: min(fractionDigits, 9), emit)
        }
        if t.utcOffsetSeconds == 0 {
            emit(UInt8(ascii: "Z"))
        } else {
            appendOffset(t.utcOffsetSeconds, colon: true, emit)
        }
    }

    /// `HH:MM:SS`, the seed's format.
    public static func appendHMS(_ t: CivilTime, _ emit: (UInt8) -> Void) {
        appendDigits(t.hour, width: 2, emit)
        emit(UInt8(ascii: ":"))
        appendDigits(t.minute, width: 2, emit)
        emit(UInt8(ascii: ":"))
        appendDigits(t.second, width: 2, emit)
    }

    /// RFC 867's example style: `Tuesday, February 22, 1982 17:37:43-PST`.
    ///
    /// The zone is the abbreviation when one is known, else the numeric offset (`-0800`).
    public static func appendRFC867(_ t: CivilTime, zoneAbbreviation: UnsafeRawBufferPointer?, _ emit: (UInt8) -> Void) {
        appendStatic(weekdayNames[t.weekday], emit)
        emit(UInt8(ascii: ","))
        emit(UInt8(ascii: " "))
        appendStatic(monthNames[t.month - 1], emit)
        emit(UInt8(ascii: " "))
        appendDigits(t.day, width: 1, emit)
        emit(UInt8(ascii: ","))
        emit(UInt8(ascii: " "))
        appendDigits(t.year, width: 4, emit)
        emit(UInt8(ascii: " "))
        appendHMS(t, emit)
        if let zone = zoneAbbreviation, !zone.isEmpty {
            emit(UInt8(ascii: "-"))
            for b in zone { emit(b) }
        } else {
            appendOffset(t.utcOffsetSeconds, colon: false, emit)
        }
    }
}
