/// An IPv4 or IPv6 prefix (CIDR), e.g. `192.0.2.0/24` or `2001:db8::/32`.
public struct AddressPrefix: Sendable, Hashable, CustomStringConvertible {
    /// The address bytes (4 or 16), masked to the prefix.
    public var bytes: [UInt8]
    public var length: Int

    /// Why a prefix could not be read.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var input: String
        public var reason: String
        public var description: String { "invalid prefix '\(input)': \(reason)" }
    }

    /// Creates a prefix from address bytes and a length.
    public init(bytes: [UInt8], length: Int) {
        self.length = length
        self.bytes = AddressPrefix.mask(bytes, to: length)
    }

    /// Parses `ADDR/LEN` or `ADDR` (a host prefix), with `parseAddress` turning the address text
    /// into 4 or 16 bytes (the transport supplies inet_pton).
    public init(parsing text: String, parseAddress: (String) -> [UInt8]?) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = parseAddress(String(parts[0])) else {
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

    /// Whether `address` (4 or 16 bytes) lies in this prefix.
    @inlinable
    public func contains(_ address: UnsafeRawBufferPointer) -> Bool {
        guard address.count == bytes.count else { return false }
        var remaining = length
        var i = 0
        while remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = ~UInt8(0) << UInt8(8 - bits)
            if address[i] & mask != bytes[i] { return false }
            remaining -= bits
            i += 1
        }
        return true
    }

    public var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") + "/\(length)" }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(String(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]), radix: 16)) }
        return groups.joined(separator: ":") + "/\(length)"
    }
}

/// Who may use a service: a client is served when it matches no `deny` prefix and, if `allow`
/// is not empty, some `allow` prefix (deny wins, as in chrony's `deny` after `allow`).
public struct AccessList: Sendable, Hashable {
    public var allow: [AddressPrefix]
    public var deny: [AddressPrefix]

    public init(allow: [AddressPrefix] = [], deny: [AddressPrefix] = []) {
        self.allow = allow
        self.deny = deny
    }

    /// Whether the list lets everyone in (no lookups needed).
    public var isOpen: Bool { allow.isEmpty && deny.isEmpty }

    /// Whether `address` (4 or 16 bytes) may be served.
    @inlinable
    public func permits(_ address: UnsafeRawBufferPointer) -> Bool {
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
