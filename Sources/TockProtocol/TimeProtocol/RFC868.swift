/// The Time Protocol (RFC 868): the time as a 32-bit count of seconds since 1900-01-01 UTC.
///
/// The count wraps on 2036-02-07 06:28:16 UTC, like NTP's era 0. RFC 868 does not define the
/// next era, so, as for NTP, a value is read as the instant within ±68 years of a reference
/// (the reader's own clock), which keeps the protocol working across the rollover.
public enum RFC868 {
    /// The reply's length: four bytes, big-endian.
    public static let replyLength = 4

    /// The wire value for `instant` (seconds truncated).
    @inlinable
    public static func value(for instant: UTCInstant) -> UInt32 {
        UInt32(truncatingIfNeeded: instant.secondsSinceUnixEpoch &+ Epochs.secondsFrom1900To1970)
    }

    /// Writes the four-byte reply into `buffer`.
    @inlinable
    public static func encode(_ instant: UTCInstant, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        buffer.storeBytes(of: value(for: instant).bigEndian, toByteOffset: 0, as: UInt32.self)
        return replyLength
    }

    /// The instant a wire value denotes, in the era nearest `reference`.
    public static func instant(_ value: UInt32, near reference: UTCInstant) -> UTCInstant {
        NTPTimestamp(seconds: value, fraction: 0).instant(near: reference)
    }

    /// Decodes a reply: exactly four bytes.
    public static func decode(_ bytes: [UInt8], near reference: UTCInstant) -> UTCInstant? {
        guard bytes.count == replyLength else { return nil }
        let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return instant(value, near: reference)
    }
}
