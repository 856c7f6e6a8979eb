/// A client's address and port as the decision core sees it: 128 bits, with an IPv4 address
/// held in its IPv4-mapped form ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).
///
/// A plain value (no pointer into a receive buffer, no allocation), so the same decision serves
/// UDP datagrams, TCP connections and tests. An IPv4 client of a dual-stack IPv6 socket arrives
/// v4-mapped and is therefore the same client as over IPv4: IPv4 access-list prefixes and the
/// IPv4 rate-limit prefix apply to it.
public struct ClientAddress: Sendable, Hashable, CustomStringConvertible {
    /// The first 64 bits of the address, big-endian order.
    public var high: UInt64
    /// The last 64 bits.
    public var low: UInt64
    /// The client's port.
    public var port: UInt16

    /// An address from its two 64-bit halves (IPv6, or IPv4-mapped).
    @inlinable
    public init(high: UInt64, low: UInt64, port: UInt16) {
        self.high = high
        self.low = low
        self.port = port
    }

    /// An IPv4 address, as a host-order 32-bit number.
    @inlinable
    public init(ipv4: UInt32, port: UInt16) {
        self.init(high: 0, low: 0xFFFF_0000_0000 | UInt64(ipv4), port: port)
    }

    /// An address from its 4 or 16 bytes.
    public init?(bytes: [UInt8], port: UInt16) {
        switch bytes.count {
        case 4:
            self.init(ipv4: bytes.reduce(0) { $0 << 8 | UInt32($1) }, port: port)
        case 16:
            self.init(high: bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }, low: bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) }, port: port)
        default:
            return nil
        }
    }

    /// Whether this is an IPv4 address (held v4-mapped).
    @inlinable
    public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }

    /// The address masked to a prefix of `ipv4Length` bits (IPv4) or `ipv6Length` bits (IPv6),
    /// port cleared: the key a rate limit groups clients by.
    @inlinable
    public func prefix(ipv4Length: Int, ipv6Length: Int) -> ClientAddress {
        let length = isIPv4 ? 96 + ipv4Length : ipv6Length
        let (highMask, lowMask) = AddressPrefix.masks(length: length)
        return ClientAddress(high: high & highMask, low: low & lowMask, port: 0)
    }

    /// The address bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        let all = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64($0))) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
        return isIPv4 ? Array(all[12..<16]) : all
    }

    /// The address as text: dotted quad or RFC 5952 IPv6 (zeros compressed).
    public var addressText: String {
        let b = bytes
        if b.count == 4 { return b.map(String.init).joined(separator: ".") }
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]) }
        // The longest run of two or more zero groups becomes "::".
        var best = (start: -1, count: 0)
        var i = 0
        while i < 8 {
            var j = i
            while j < 8, groups[j] == 0 { j += 1 }
            if j - i > best.count, j - i >= 2 { best = (i, j - i) }
            i = j + 1
        }
        func hex(_ range: Range<Int>) -> String { groups[range].map { String($0, radix: 16) }.joined(separator: ":") }
        guard best.start >= 0 else { return hex(0..<8) }
        return hex(0..<best.start) + "::" + hex((best.start + best.count)..<8)
    }

    public var description: String { isIPv4 ? "\(addressText):\(port)" : "[\(addressText)]:\(port)" }
}
