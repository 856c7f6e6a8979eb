/// An IPv4 or IPv6 prefix (CIDR), e.g. `192.0.2.0/24` or `2001:db8::/32`.
///
/// Matching is two masked 64-bit compares against a `ClientAddress`: an IPv4 prefix is held
/// v4-mapped (RFC 4291 §2.5.5.2), so it is a /96+n in the same space, and a prefix matches only
/// addresses of its own family (`::/0` does not swallow every IPv4 client).
public struct AddressPrefix: Sendable, Hashable, CustomStringConvertible {
    /// The address bytes (4 or 16), masked to the prefix.
    public let bytes: [UInt8]
    /// The prefix length in bits, 0...32 or 0...128.
    public let length: Int
    @usableFromInline let isIPv4: Bool
    @usableFromInline let high: UInt64
    @usableFromInline let low: UInt64
    @usableFromInline let highMask: UInt64
    @usableFromInline let lowMask: UInt64

    /// Why a prefix could not be read.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// The text as given.
        public var input: String
        /// What is wrong with it.
        public var reason: String
        public var description: String { "invalid prefix '\(input)': \(reason)" }
    }

    /// Creates a prefix from address bytes (4 or 16) and a length.
    public init(bytes: [UInt8], length: Int) {
        precondition(bytes.count == 4 || bytes.count == 16, "an address has 4 or 16 bytes")
        self.length = length
        self.bytes = AddressPrefix.mask(bytes, to: length)
        self.isIPv4 = bytes.count == 4
        let address = ClientAddress(bytes: self.bytes, port: 0)!
        (highMask, lowMask) = Self.masks(length: isIPv4 ? 96 + length : length)
        high = address.high & highMask
        low = address.low & lowMask
    }

    /// Parses `ADDR/LEN` or `ADDR` (a host prefix), with `parseAddress` turning the address text
    /// into 4 or 16 bytes (the transport supplies inet_pton).
    public init(parsing text: String, parseAddress: (String) -> [UInt8]?) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = parseAddress(String(parts[0])), address.count == 4 || address.count == 16 else {
            throw ParseError(input: text, reason: "expected ADDRESS or ADDRESS/LENGTH with an IPv4 or IPv6 address")
        }
        let maximum = address.count * 8
        var length = maximum
        if parts.count == 2 {
            guard let l = Int(parts[1]), (0...maximum).contains(l) else {
                throw ParseError(input: text, reason: "length must be 0-\(maximum)")
            }
            length = l
        }
        self.init(bytes: address, length: length)
    }

    static func mask(_ bytes: [UInt8], to length: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bits = max(0, min(8, length - i * 8))
            out[i] &= bits == 0 ? 0 : ~UInt8(0) << UInt8(8 - bits)
        }
        return out
    }

    /// The masks of the two halves of a 128-bit prefix of `length` bits.
    @inlinable
    static func masks(length: Int) -> (UInt64, UInt64) {
        let l = max(0, min(128, length))
        let high: UInt64 = l >= 64 ? ~0 : (l == 0 ? 0 : ~0 << UInt64(64 - l))
        let low: UInt64 = l <= 64 ? 0 : (l == 128 ? ~0 : ~0 << UInt64(128 - l))
        return (high, low)
    }

    /// Whether `address` lies in this prefix.
    @inlinable
    public func contains(_ address: ClientAddress) -> Bool {
        address.isIPv4 == isIPv4 && address.high & highMask == high && address.low & lowMask == low
    }

    public var description: String {
        let address = ClientAddress(bytes: bytes, port: 0)!
        return "\(address.addressText)/\(length)"
    }

    public static func == (a: AddressPrefix, b: AddressPrefix) -> Bool {
        a.bytes == b.bytes && a.length == b.length
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes)
        hasher.combine(length)
    }
}

/// Who may use a service: a client is served when it matches no `deny` prefix and, if `allow`
/// is not empty, some `allow` prefix (deny wins, as in chrony's `deny` after `allow`).
public struct AccessList: Sendable, Hashable {
    /// Prefixes served; empty for everyone.
    public var allow: [AddressPrefix]
    /// Prefixes never served.
    public var deny: [AddressPrefix]

    /// A list; the default admits everyone.
    public init(allow: [AddressPrefix] = [], deny: [AddressPrefix] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// Whether the list lets everyone in (no lookups needed).
    @inlinable
    public var isOpen: Bool { allow.isEmpty && deny.isEmpty }

    /// Whether `address` may be served.
    @inlinable
    public func permits(_ address: ClientAddress) -> Bool {
        for p in deny where p.contains(address) { return false }
        if allow.isEmpty { return true }
        for p in allow where p.contains(address) { return true }
        return false
    }
}

/// Source ports of UDP services that answer whatever they receive. A Daytime or Time reply sent
/// to one of them would start a reflection loop between two servers (echo ↔ chargen is the
/// classic), so requests from them are dropped. RFC 867 and 868 predate the problem.
public enum ReflectionPorts {
    /// echo, discard, systat, daytime, qotd, chargen, time, DNS, TFTP, NTP, NetBIOS, SNMP, LDAP,
    /// SSDP, mDNS, memcached, and port 0.
    public static let ports: Set<UInt16> = [0, 7, 9, 11, 13, 17, 19, 37, 53, 69, 123, 137, 161, 389, 1900, 5353, 11211]

    /// Whether a datagram from `port` must not be answered by Daytime or Time.
    @inlinable
    public static func isReflectionRisk(_ port: UInt16) -> Bool {
        port < 1024 ? lowPorts[Int(port)] : (port == 1900 || port == 5353 || port == 11211)
    }

    @usableFromInline
    static let lowPorts: [Bool] = (0..<1024).map { ports.contains(UInt16($0)) }
}
