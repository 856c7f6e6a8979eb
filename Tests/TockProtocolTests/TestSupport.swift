import TockProtocol

/// Shared instants and byte helpers for the TockProtocol tests.
enum Instants {
    /// 2036-02-07 06:28:16 UTC, the start of NTP era 1 (and RFC 868's rollover).
    static let eraOneStart: Int64 = 2_085_978_496
    /// 2026-11-24 18:36:20 UTC, a Tuesday.
    static let tuesday2026: Int64 = 1_795_545_380
    /// 2026-01-01 00:00:00 UTC.
    static let newYear2026: Int64 = 1_767_225_600
    /// 1990-05-01 12:00:00 UTC.
    static let may1990: Int64 = 641_563_200
    /// 2016-12-31 23:59:59 UTC, the second before the last inserted leap second.
    static let lastSecondOf2016: Int64 = 1_483_228_799
}

/// The instant `seconds` (and `nanoseconds`) after the Unix epoch.
func utc(_ seconds: Int64, _ nanoseconds: Int64 = 0) -> UTCInstant {
    UTCInstant(secondsSinceUnixEpoch: seconds, nanoseconds: nanoseconds)
}

/// A 48-byte NTP header whose first byte is `first`, poll byte `poll` and transmit timestamp
/// `transmit` (all else zero), followed by `trailer`.
func ntpRequest(_ first: UInt8, poll: UInt8 = 0, transmit: UInt64 = 0x0123_4567_89AB_CDEF, trailer: [UInt8] = []) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: NTPPacket.headerLength)
    bytes[0] = first
    bytes[2] = poll
    for i in 0..<8 { bytes[40 + i] = UInt8(truncatingIfNeeded: transmit >> UInt64(56 - 8 * i)) }
    return bytes + trailer
}

/// The first byte of an NTP header.
func firstByte(leap: UInt8 = 0, version: UInt8, mode: UInt8) -> UInt8 {
    leap << 6 | version << 3 | mode
}

/// An RFC 7822 extension field of `length` bytes whose length field says `declaredLength`.
func extensionField(length: Int, declaredLength: Int? = nil, type: UInt16 = 0x0104) -> [UInt8] {
    let declared = UInt16(truncatingIfNeeded: declaredLength ?? length)
    var field = [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(declared >> 8), UInt8(declared & 0xFF)]
    field += [UInt8](repeating: 0x5A, count: max(0, length - 4))
    return Array(field.prefix(length))
}

/// A legacy MAC: a key ID and an MD5 (20 bytes) or SHA-1 (24 bytes) digest.
func mac(length: Int) -> [UInt8] {
    [0, 0, 0, 7] + [UInt8](repeating: 0xC3, count: length - 4)
}

/// The big-endian integer at `offset`.
func be32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

func be64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
    bytes[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) }
}

/// The big-endian bytes of `value`.
func bigEndianBytes(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64(56 - 8 * $0)) }
}

extension NTPServer {
    /// `handle` for a client at 192.0.2.100 with the default (open) policy.
    func respond(to request: UnsafeRawBufferPointer, sourcePort: UInt16, receiveTime: UTCInstant, clock: ServerClockState, reply: UnsafeMutableRawBufferPointer, random: inout FastRandom) -> NTPServerAction {
        handle(request, from: ClientAddress(ipv4: 0xC000_0264, port: sourcePort), receiveTime: receiveTime, clock: clock, admission: ClientAdmission(policy: ServicePolicy()), reply: reply, random: &random)
    }
}
