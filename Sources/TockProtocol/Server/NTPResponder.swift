/// Why the server did not answer an NTP datagram. Counted per reason by the transport.
public enum NTPDropReason: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// Shorter than the 48-byte header.
    case tooShort = 0
    /// Version 0 or 5...7.
    case badVersion
    /// Not a client request: symmetric, server, broadcast, control (6), private (7, monlist),
    /// or NTPv1's mode 0 from port 123 (a server, not a client).
    case notClientMode
    /// Extension fields or MAC that do not parse (RFC 7822).
    case malformed
    /// The client's address is not allowed by the access list.
    case denied
    /// The client exceeded its rate limit.
    case rateLimited

    public var description: String {
        switch self {
        case .tooShort: "too_short"
        case .badVersion: "bad_version"
        case .notClientMode: "not_client_mode"
        case .malformed: "malformed"
        case .denied: "denied"
        case .rateLimited: "rate_limited"
        }
    }
}

/// The server's decision for one NTP datagram.
public enum NTPServerAction: Sendable, Hashable {
    /// Send the first `length` bytes of the reply buffer once the transmit timestamp is stamped.
    case respond(length: Int)
    /// Send nothing.
    case drop(NTPDropReason)
}

/// Answers NTP client requests (RFC 5905 §8 and §9.2, server side): the decision and the reply
/// bytes, with no I/O and no clock reads.
///
/// Per packet it reads the request and writes the reply in buffers the caller owns; it does
/// not allocate. The transport calls `respond` with the receive time (T2) and, as late as it
/// can before sending, `stampTransmitTime` with T3.
public struct NTPResponder: Sendable {
    /// log2 seconds of the clock's resolution, put in every reply and used to randomise the
    /// timestamp bits below it.
    public let precision: Int8
    /// The fraction bits below the precision, which carry no information and are randomised
    /// so a client cannot predict timestamps (chrony does the same).
    @usableFromInline let randomMask: UInt64

    /// Creates a responder for a clock of the given precision.
    public init(precision: Int8) {
        self.precision = precision
        let randomBits = max(0, min(32, 32 + Int(precision)))
        self.randomMask = randomBits == 0 ? 0 : (UInt64(1) << UInt64(randomBits)) - 1
    }

    /// The reply length for a request: never longer than the request (the amplification factor
    /// of NTP stays at most 1), 48 bytes, or 52 with a crypto-NAK.
    public static let maximumReplyLength = 52

    /// Decides what to do with `request` from `sourcePort`, received at `receiveTime` (T2), and
    /// writes the reply (all but the transmit timestamp) into `reply`, which must hold
    /// `maximumReplyLength` bytes.
    ///
    /// Only client requests are answered (RFC 5905 §9.2's dispatch table: mode 3 → mode 4). The
    /// version is echoed (1...4). NTPv1 had no mode field; its requests carry mode 0 and are
    /// told from servers' packets by the source port, so they are answered only when it isn't
    /// 123. Extension fields are validated and ignored; a request with a MAC gets a crypto-NAK
    /// (four zero bytes: no symmetric keys are configured) so an authenticating client learns
    /// why, in a reply still no longer than its request.
    @inlinable
    public func respond(
        to request: UnsafeRawBufferPointer,
        sourcePort: UInt16,
        receiveTime: UTCInstant,
        clock: ServerClockState,
        reply: UnsafeMutableRawBufferPointer,
        random: inout FastRandom
    ) -> NTPServerAction {
        guard request.count >= NTPPacket.headerLength else { return .drop(.tooShort) }
        let first = request[0]
        let version = (first >> 3) & 0x7
        let mode = first & 0x7
        guard version >= 1, version <= 4 else { return .drop(.badVersion) }
        switch mode {
        case NTPMode.client.rawValue:
            break
        case NTPMode.reserved.rawValue where version == 1 && sourcePort != 123:
            break
        default:
            return .drop(.notClientMode)
        }
        let trailer: NTPTrailer
        do {
            trailer = try NTPTrailer(validating: request, version: version)
        } catch {
            return .drop(.malformed)
        }

        let leap = clock.leap
        reply[0] = leap.rawValue << 6 | version << 3 | NTPMode.server.rawValue
        reply[1] = clock.stratum
        reply[2] = request[2]  // poll, echoed (RFC 5905 §9.2)
        reply[3] = UInt8(bitPattern: precision)
        NTPWire.store32(NTPShort(nanoseconds: clock.rootDelayNanoseconds).rawValue, reply, 4)
        NTPWire.store32(NTPShort(nanoseconds: clock.rootDispersionNanoseconds).rawValue, reply, 8)
        NTPWire.store32(clock.referenceID, reply, 12)
        let reference = clock.isSynchronized ? NTPTimestamp(clock.referenceTime).rawValue : 0
        NTPWire.store64(reference, reply, 16)
        let origin = NTPWire.load64(request, 40)
        NTPWire.store64(origin, reply, 24)
        var receive = NTPTimestamp(receiveTime).rawValue & ~randomMask | random.next() & randomMask
        if receive == origin { receive &+= 1 }
        NTPWire.store64(receive, reply, 32)
        NTPWire.store64(0, reply, 40)
        if trailer.macLength > 0 {
            NTPWire.store32(0, reply, 48)
            return .respond(length: 52)
        }
        return .respond(length: NTPPacket.headerLength)
    }

    /// Turns a reply built by `respond` into a kiss-o'-death (RFC 5905 §7.4): leap 3, stratum 0,
    /// the kiss code as reference ID, the origin still echoed so the client can trust it, and no
    /// usable timestamps (receive and transmit zero, which RFC 4330 clients reject as time).
    @inlinable
    public static func convertToKissOfDeath(_ code: KissCode, reply: UnsafeMutableRawBufferPointer) {
        let version = (reply[0] >> 3) & 0x7
        reply[0] = LeapIndicator.unsynchronized.rawValue << 6 | version << 3 | NTPMode.server.rawValue
        reply[1] = 0
        NTPWire.store32(0, reply, 4)
        NTPWire.store32(0, reply, 8)
        NTPWire.store32(code.rawValue, reply, 12)
        NTPWire.store64(0, reply, 16)
        NTPWire.store64(0, reply, 32)
        NTPWire.store64(0, reply, 40)
    }

    /// Whether a reply is a kiss-o'-death (stratum 0 with a non-zero reference ID), which
    /// carries no transmit timestamp.
    @inlinable
    public static func isKissOfDeath(_ reply: UnsafeRawBufferPointer) -> Bool {
        reply[1] == 0 && NTPWire.load32(reply, 12) != 0
    }

    /// Writes the transmit timestamp (T3) into a reply built by `respond`.
    ///
    /// T3 is made strictly later than T2 and different from the origin, whatever the clock did
    /// between them: equal timestamps would make a client's duplicate and bogus tests
    /// (RFC 5905 §8) misfire, and an earlier T3 would be a negative server processing time.
    @inlinable
    public func stampTransmitTime(_ transmitTime: UTCInstant, reply: UnsafeMutableRawBufferPointer, random: inout FastRandom) {
        if Self.isKissOfDeath(UnsafeRawBufferPointer(reply)) { return }
        let receive = NTPWire.load64(UnsafeRawBufferPointer(reply), 32)
        let origin = NTPWire.load64(UnsafeRawBufferPointer(reply), 24)
        var transmit = NTPTimestamp(transmitTime).rawValue & ~randomMask | random.next() & randomMask
        // Compare modulo 2^64 so the test holds across an era boundary.
        if Int64(bitPattern: transmit &- receive) <= 0 { transmit = receive &+ 1 }
        if transmit == origin { transmit &+= 1 }
        NTPWire.store64(transmit, reply, 40)
    }

    /// The precision (log2 seconds) of a clock whose smallest observable step is
    /// `resolutionNanoseconds`: the smallest p with 2^p ≥ the step (RFC 5905 §7.3).
    public static func precision(resolutionNanoseconds: Int64) -> Int8 {
        let step = Double(max(1, resolutionNanoseconds)) / 1e9
        var p = -32
        while p < 0, Double.pow2(p) < step { p += 1 }
        return Int8(p)
    }
}

extension Double {
    static func pow2(_ exponent: Int) -> Double {
        Double(sign: .plus, exponent: exponent, significand: 1)
    }
}
