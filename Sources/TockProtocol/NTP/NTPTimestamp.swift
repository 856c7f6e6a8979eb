/// The 64-bit NTP timestamp: 32 bits of seconds since the start of an era and 32 bits of fraction
/// (RFC 5905 §6).
///
/// The era number is not on the wire. A timestamp is therefore read relative to a reference
/// instant: the era is chosen that puts it within ±68 years of the reference, so serving and
/// querying keep working across 2036-02-07 06:28:16 UTC when era 1 begins (RFC 5905 §6, "the
/// correct era is ... determined by other means").
public struct NTPTimestamp: Sendable, Hashable, CustomStringConvertible {
    /// The wire value: seconds in the high 32 bits, fraction in the low 32.
    public var rawValue: UInt64

    /// The zero timestamp, which RFC 5905 §6 reserves for "unknown or not set".
    public static let zero = NTPTimestamp(rawValue: 0)

    /// Creates a timestamp from its wire value.
    @inlinable
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Creates a timestamp from its seconds and fraction fields.
    @inlinable
    public init(seconds: UInt32, fraction: UInt32) {
        self.rawValue = UInt64(seconds) << 32 | UInt64(fraction)
    }

    /// The timestamp of `instant`, in whichever era contains it (the era itself is dropped).
    @inlinable
    public init(_ instant: UTCInstant) {
        let seconds = instant.secondsSinceUnixEpoch &+ Epochs.secondsFrom1900To1970
        // fraction = ns * 2^32 / 10^9, rounded down; exact in 64 bits since ns < 2^30.
        let fraction = (UInt64(instant.nanosecondOfSecond) << 32) / 1_000_000_000
        self.rawValue = UInt64(UInt32(truncatingIfNeeded: seconds)) << 32 | fraction
    }

    /// Seconds since the start of the era.
    @inlinable
    public var seconds: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 32) }

    /// Fraction of a second in units of 2^-32 s.
    @inlinable
    public var fraction: UInt32 { UInt32(truncatingIfNeeded: rawValue) }

    /// Whether this is the reserved zero value.
    @inlinable
    public var isZero: Bool { rawValue == 0 }

    /// The instant this timestamp denotes in the era closest to `reference` (RFC 5905 §6).
    @inlinable
    public func instant(near reference: UTCInstant) -> UTCInstant {
        let referenceSeconds = reference.secondsSinceUnixEpoch &+ Epochs.secondsFrom1900To1970
        // The signed 32-bit distance from the reference's era-relative seconds picks the era.
        let delta = Int64(Int32(bitPattern: seconds &- UInt32(truncatingIfNeeded: referenceSeconds)))
        let secondsSince1900 = referenceSeconds &+ delta
        let nanoseconds = Int64((UInt64(fraction) &* 1_000_000_000 &+ (1 << 31)) >> 32)
        return UTCInstant(secondsSinceUnixEpoch: secondsSince1900 &- Epochs.secondsFrom1900To1970, nanoseconds: nanoseconds)
    }

    /// Hexadecimal `seconds.fraction`, as ntpq prints timestamps.
    public var description: String {
        let s = String(seconds, radix: 16)
        let f = String(fraction, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s + "." + String(repeating: "0", count: 8 - f.count) + f
    }
}

/// The 32-bit NTP short format: 16 bits of seconds and 16 bits of fraction (RFC 5905 §6), used
/// for root delay and root dispersion.
public struct NTPShort: Sendable, Hashable {
    /// The wire value.
    public var rawValue: UInt32

    /// Creates a short from its wire value.
    @inlinable
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// The smallest short not below `nanoseconds`, clamped to the format's range (0 to just
    /// under 65536 s). Rounding up keeps a root delay or dispersion from being understated.
    @inlinable
    public init(nanoseconds: Int64) {
        if nanoseconds <= 0 {
            self.rawValue = 0
        } else if nanoseconds >= 65_536 * 1_000_000_000 {
            self.rawValue = UInt32.max
        } else {
            self.rawValue = UInt32(min(UInt64(UInt32.max), ((UInt64(nanoseconds) << 16) + 999_999_999) / 1_000_000_000))
        }
    }

    /// The value in nanoseconds.
    @inlinable
    public var nanoseconds: Int64 {
        Int64((UInt64(rawValue) &* 1_000_000_000) >> 16)
    }

    /// The value in seconds.
    public var seconds: Double { Double(rawValue) / 65_536 }
}
