/// The leap indicator: the warning of an impending leap second, or an alarm (RFC 5905 §7.3).
public enum LeapIndicator: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// No warning.
    case noWarning = 0
    /// The last minute of the day has 61 seconds.
    case insertSecond = 1
    /// The last minute of the day has 59 seconds.
    case deleteSecond = 2
    /// The clock is unsynchronised; clients must not follow it.
    case unsynchronized = 3

    public var description: String {
        switch self {
        case .noWarning: "none"
        case .insertSecond: "insert second pending"
        case .deleteSecond: "delete second pending"
        case .unsynchronized: "unsynchronised"
        }
    }
}

/// The association mode (RFC 5905 §7.3, figure 10).
public enum NTPMode: UInt8, Sendable, CaseIterable {
    /// Reserved; NTPv1 clients sent it where later versions send `client`.
    case reserved = 0
    /// A peer offering to synchronise with another and be synchronised by it.
    case symmetricActive = 1
    /// A peer's answer to a symmetric-active peer.
    case symmetricPassive = 2
    /// A client's request: what tockd answers (with NTPv1's mode 0, see `reserved`).
    case client = 3
    /// A server's reply to a client.
    case server = 4
    /// An unsolicited packet to many clients.
    case broadcast = 5
    /// NTP control messages (ntpq).
    case control = 6
    /// Reserved for private use (ntpdc, monlist).
    case privateUse = 7
}

/// The 48-byte NTP header as a value (RFC 5905 §7.3, figure 8).
///
/// This is the friendly form for clients, tests and tools. The server's per-packet path reads
/// and writes the same fields directly in buffers it owns (`NTPServer`).
public struct NTPPacket: Sendable, Hashable {
    /// The header's length on the wire.
    public static let headerLength = 48

    /// LI: the pending leap second, or 3 when the sender's clock must not be followed
    /// (RFC 5905 §7.3).
    public var leap: LeapIndicator
    /// 1...4 on the wire; 0 and 5...7 are invalid.
    public var version: UInt8
    /// The sender's role: a request from a client is mode 3, the server's reply mode 4
    /// (RFC 5905 §7.3, §9.2).
    public var mode: NTPMode
    /// 0 = unspecified or kiss-o'-death, 1 = primary, 2...15 secondary, 16 = unsynchronised.
    public var stratum: UInt8
    /// log2 of the poll interval in seconds.
    public var poll: Int8
    /// log2 of the clock's precision in seconds.
    public var precision: Int8
    /// The round-trip delay from the sender to its primary reference (RFC 5905 §7.3); a client
    /// adds it to its own delay to bound the error of the time it receives.
    public var rootDelay: NTPShort
    /// The sender's error bound relative to its primary reference (RFC 5905 §7.3).
    public var rootDispersion: NTPShort
    /// The reference ID: a kiss code or clock source name at stratum 0 and 1, an IPv4 address
    /// (or an IPv6 address hash) above.
    public var referenceID: UInt32
    /// When the sender's clock was last set or corrected (RFC 5905 §7.3).
    public var referenceTimestamp: NTPTimestamp
    /// T1 in a reply: the request's transmit timestamp echoed back, so the client can match
    /// the reply to its request and reject forgeries (RFC 5905 §7.3, §8).
    public var originTimestamp: NTPTimestamp
    /// T2 in a reply: when the server received the request (RFC 5905 §7.3).
    public var receiveTimestamp: NTPTimestamp
    /// When the packet left the sender: T3 in a reply; in a request, the value the server
    /// echoes as the origin timestamp (RFC 5905 §7.3).
    public var transmitTimestamp: NTPTimestamp

    /// Creates a header; every field defaults to zero except version 4 and mode client.
    public init(
        leap: LeapIndicator = .noWarning,
        version: UInt8 = 4,
        mode: NTPMode = .client,
        stratum: UInt8 = 0,
        poll: Int8 = 0,
        precision: Int8 = 0,
        rootDelay: NTPShort = NTPShort(rawValue: 0),
        rootDispersion: NTPShort = NTPShort(rawValue: 0),
        referenceID: UInt32 = 0,
        referenceTimestamp: NTPTimestamp = .zero,
        originTimestamp: NTPTimestamp = .zero,
        receiveTimestamp: NTPTimestamp = .zero,
        transmitTimestamp: NTPTimestamp = .zero
    ) {
        self.leap = leap
        self.version = version
        self.mode = mode
        self.stratum = stratum
        self.poll = poll
        self.precision = precision
        self.rootDelay = rootDelay
        self.rootDispersion = rootDispersion
        self.referenceID = referenceID
        self.referenceTimestamp = referenceTimestamp
        self.originTimestamp = originTimestamp
        self.receiveTimestamp = receiveTimestamp
        self.transmitTimestamp = transmitTimestamp
    }

    /// The kiss code when this is a kiss-o'-death packet (stratum 0), RFC 5905 §7.4.
    public var kissCode: KissCode? {
        stratum == 0 ? KissCode(rawValue: referenceID) : nil
    }

    /// Decodes the header from the first 48 bytes of `bytes`; anything after it is not read.
    ///
    /// Use `NTPTrailer(validating:version:)` to validate what follows the header.
    public init(decoding bytes: UnsafeRawBufferPointer) throws(NTPParseError) {
        guard bytes.count >= NTPPacket.headerLength else { throw .tooShort(bytes.count) }
        let first = bytes[0]
        self.leap = LeapIndicator(rawValue: first >> 6)!
        self.version = (first >> 3) & 0x7
        self.mode = NTPMode(rawValue: first & 0x7)!
        self.stratum = bytes[1]
        self.poll = Int8(bitPattern: bytes[2])
        self.precision = Int8(bitPattern: bytes[3])
        self.rootDelay = NTPShort(rawValue: NTPWire.load32(bytes, NTPWire.rootDelayOffset))
        self.rootDispersion = NTPShort(rawValue: NTPWire.load32(bytes, NTPWire.rootDispersionOffset))
        self.referenceID = NTPWire.load32(bytes, NTPWire.referenceIDOffset)
        self.referenceTimestamp = NTPTimestamp(rawValue: NTPWire.load64(bytes, NTPWire.referenceTimeOffset))
        self.originTimestamp = NTPTimestamp(rawValue: NTPWire.load64(bytes, NTPWire.originOffset))
        self.receiveTimestamp = NTPTimestamp(rawValue: NTPWire.load64(bytes, NTPWire.receiveOffset))
        self.transmitTimestamp = NTPTimestamp(rawValue: NTPWire.load64(bytes, NTPWire.transmitOffset))
    }

    /// Decodes the header from `bytes`.
    public init(decoding bytes: [UInt8]) throws(NTPParseError) {
        let result: Result<NTPPacket, NTPParseError> = bytes.withUnsafeBytes { raw in
            do throws(NTPParseError) { return .success(try NTPPacket(decoding: raw)) } catch { return .failure(error) }
        }
        self = try result.get()
    }

    /// Writes the header into the first 48 bytes of `buffer`, which must be at least that long.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= NTPPacket.headerLength, "an NTP header needs 48 bytes")
        buffer[0] = leap.rawValue << 6 | (version & 0x7) << 3 | mode.rawValue
        buffer[1] = stratum
        buffer[2] = UInt8(bitPattern: poll)
        buffer[3] = UInt8(bitPattern: precision)
        NTPWire.store32(rootDelay.rawValue, buffer, NTPWire.rootDelayOffset)
        NTPWire.store32(rootDispersion.rawValue, buffer, NTPWire.rootDispersionOffset)
        NTPWire.store32(referenceID, buffer, NTPWire.referenceIDOffset)
        NTPWire.store64(referenceTimestamp.rawValue, buffer, NTPWire.referenceTimeOffset)
        NTPWire.store64(originTimestamp.rawValue, buffer, NTPWire.originOffset)
        NTPWire.store64(receiveTimestamp.rawValue, buffer, NTPWire.receiveOffset)
        NTPWire.store64(transmitTimestamp.rawValue, buffer, NTPWire.transmitOffset)
    }

    /// The 48 header bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: NTPPacket.headerLength)
        out.withUnsafeMutableBytes { encode(into: $0) }
        return out
    }
}

/// The NTP header's field offsets (RFC 5905 §7.3, figure 8) and big-endian loads and stores
/// at them; callers check lengths first.
public enum NTPWire {
    /// Root delay (32-bit short format).
    public static let rootDelayOffset = 4
    /// Root dispersion (32-bit short format).
    public static let rootDispersionOffset = 8
    /// Reference ID (a kiss code at stratum 0).
    public static let referenceIDOffset = 12
    /// Reference timestamp.
    public static let referenceTimeOffset = 16
    /// Origin timestamp (T1, the request's transmit timestamp echoed).
    public static let originOffset = 24
    /// Receive timestamp (T2).
    public static let receiveOffset = 32
    /// Transmit timestamp (T3 in a reply, T1 in a request).
    public static let transmitOffset = 40

    /// Reads a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func load32(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Reads a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func load64(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(bigEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Reads a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func load16(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(bigEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    /// Writes a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func store16(_ v: UInt16, _ b: UnsafeMutableRawBufferPointer, _ offset: Int) {
        b.storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// Writes a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func store32(_ v: UInt32, _ b: UnsafeMutableRawBufferPointer, _ offset: Int) {
        b.storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Writes a big-endian value at `offset`.
    @inlinable @inline(__always)
    public static func store64(_ v: UInt64, _ b: UnsafeMutableRawBufferPointer, _ offset: Int) {
        b.storeBytes(of: v.bigEndian, toByteOffset: offset, as: UInt64.self)
    }
}
