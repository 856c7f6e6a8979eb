/// An instant on the UTC time scale, counted in nanoseconds since 1970-01-01 00:00:00 UTC.
///
/// Every protocol in tock converts to and from this one value, so era arithmetic (NTP's and
/// RFC 868's 2036 rollover) lives in exactly one place per wire format. Leap seconds are not
/// counted, as in POSIX time: 23:59:60 is represented by the kernel as a repeat of 23:59:59 or
/// announced through the leap indicator.
public struct UTCInstant: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds since the Unix epoch; negative before 1970.
    public var nanosecondsSinceUnixEpoch: Int64

    /// Creates an instant from nanoseconds since the Unix epoch.
    @inlinable
    public init(nanosecondsSinceUnixEpoch: Int64) {
        self.nanosecondsSinceUnixEpoch = nanosecondsSinceUnixEpoch
    }

    /// Creates an instant from whole seconds and nanoseconds since the Unix epoch, as a
    /// `timespec` from `clock_gettime(CLOCK_REALTIME)` carries them.
    @inlinable
    public init(secondsSinceUnixEpoch seconds: Int64, nanoseconds: Int64 = 0) {
        self.nanosecondsSinceUnixEpoch = seconds &* 1_000_000_000 &+ nanoseconds
    }

    /// Whole seconds since the Unix epoch, rounded towards negative infinity.
    @inlinable
    public var secondsSinceUnixEpoch: Int64 {
        let (q, r) = nanosecondsSinceUnixEpoch.quotientAndRemainder(dividingBy: 1_000_000_000)
        return r < 0 ? q - 1 : q
    }

    /// The nanoseconds within the current second, in 0..<1_000_000_000.
    @inlinable
    public var nanosecondOfSecond: Int64 {
        let r = nanosecondsSinceUnixEpoch % 1_000_000_000
        return r < 0 ? r + 1_000_000_000 : r
    }

    /// The instant `nanoseconds` later.
    @inlinable
    public func advanced(byNanoseconds nanoseconds: Int64) -> UTCInstant {
        UTCInstant(nanosecondsSinceUnixEpoch: nanosecondsSinceUnixEpoch &+ nanoseconds)
    }

    /// Nanoseconds from `other` to `self` (positive when `self` is later).
    @inlinable
    public func nanoseconds(since other: UTCInstant) -> Int64 {
        nanosecondsSinceUnixEpoch &- other.nanosecondsSinceUnixEpoch
    }

    /// Whether `lhs` is earlier, by plain nanosecond count: no era wraps, unlike wire
    /// timestamps.
    @inlinable
    public static func < (lhs: UTCInstant, rhs: UTCInstant) -> Bool {
        lhs.nanosecondsSinceUnixEpoch < rhs.nanosecondsSinceUnixEpoch
    }

    /// ISO 8601 in UTC with nanoseconds, e.g. `2036-02-07T06:28:16.000000000Z`.
    public var description: String {
        let civil = CivilTime(self, utcOffsetSeconds: 0)
        return civil.iso8601(fractionDigits: 9, nanosecond: nanosecondOfSecond)
    }
}

/// Offsets between the time scales the protocols use.
public enum Epochs {
    /// Seconds from 1900-01-01 (NTP era 0 and RFC 868) to 1970-01-01 (Unix), RFC 868 and RFC 5905 §6.
    public static let secondsFrom1900To1970: Int64 = 2_208_988_800
}
