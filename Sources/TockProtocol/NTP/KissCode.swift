/// A kiss-o'-death code: four ASCII characters in the reference ID of a stratum-0 packet
/// (RFC 5905 §7.4).
public struct KissCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt32

    /// A code from the reference ID of a received packet, its characters big-endian.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Creates a code from its four ASCII characters.
    public init(_ text: StaticString) {
        precondition(text.utf8CodeUnitCount == 4, "a kiss code has four characters")
        var v: UInt32 = 0
        text.withUTF8Buffer { for b in $0 { v = v << 8 | UInt32(b) } }
        self.rawValue = v
    }

    /// The client must reduce its polling rate (RFC 5905 §7.4).
    public static let rate = KissCode("RATE")
    /// Access denied by the server's policy; the client must stop (RFC 5905 §7.4).
    public static let deny = KissCode("DENY")
    /// Access restricted; the client must stop (RFC 5905 §7.4).
    public static let restrict = KissCode("RSTR")
    /// Not yet synchronised for the first time (RFC 5905 §7.4): what an unsynchronised server
    /// states, not a demand to the client.
    public static let initializing = KissCode("INIT")
    /// The NTS cookie could not be used (RFC 8915 §5.7).
    public static let ntsNak = KissCode("NTSN")

    /// Whether the RFC tells the client to stop querying this server (DENY, RSTR) as opposed
    /// to slowing down (RATE) or renegotiating (NTSN).
    public var demandsStop: Bool { self == .deny || self == .restrict }

    /// The four characters, with non-printable bytes shown as `.`.
    public var description: String {
        ReferenceID.asciiText(rawValue)
    }
}

/// Interpretation of the reference ID (RFC 5905 §7.3).
public enum ReferenceID {
    /// A reference ID from four ASCII characters, e.g. `LOCL`, `GPS`, `PPS` (padded with zeros).
    public static func ascii(_ text: String) -> UInt32 {
        var v: UInt32 = 0
        var count = 0
        for b in text.utf8.prefix(4) {
            v = v << 8 | UInt32(b)
            count += 1
        }
        return v << (8 * UInt32(4 - count))
    }

    /// The reference ID of an undisciplined local clock: `LOCL` at stratum 1, where the field
    /// names a clock source, and 127.127.1.1 above, where clients read it as an IPv4 address
    /// (the address ntpd's local-clock driver had; chrony uses it too).
    public static func localClock(stratum: UInt8) -> UInt32 {
        stratum <= 1 ? ascii("LOCL") : 0x7F7F_0101
    }

    /// The four bytes as text, stopping at the first zero; unprintable bytes shown as `.`.
    public static func asciiText(_ value: UInt32) -> String {
        var scalars = ""
        for shift in stride(from: 24, through: 0, by: -8) {
            let b = UInt8(truncatingIfNeeded: value >> UInt32(shift))
            if b == 0 { break }
            scalars.append((0x20...0x7E).contains(b) ? Character(Unicode.Scalar(b)) : ".")
        }
        return scalars
    }

    /// The reference ID as a person reads it: text at strata 0 and 1, a dotted IPv4 address
    /// (or the first four bytes of an IPv6 address's MD5, which can only be shown as such)
    /// above.
    public static func display(_ value: UInt32, stratum: UInt8) -> String {
        if stratum <= 1 {
            return asciiText(value)
        }
        return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }
}
