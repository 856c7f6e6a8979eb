import Atomics
import Glibc
import TockProtocol

/// The rate-limit table: a fixed array of packed buckets shared by every worker of a service,
/// updated with compare-and-swap (no locks), keyed by the client's address prefix hashed with a
/// per-start random seed.
///
/// Its size is fixed at start from the memory cap and never grows, whatever the number of
/// addresses seen: a new address takes the slot its hash picks, evicting whoever was there
/// (which can only give that client more replies, never fewer). The seed (Swift's `Hasher`,
/// randomised per process) keeps an attacker from aiming collisions at a victim's slot.
public final class ClientLimiter: @unchecked Sendable {
    public let policy: RateLimitPolicy
    let slots: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Per slot, for statistics (`chronyc clients`-style listings): the client's prefix as
    /// two words (IPv4 as ::ffff:a.b.c.d), and its requests and limited requests as one word
    /// (32 bits each), counted since the client took the slot.
    let records: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let mask: Int
    /// The number of buckets.
    public let capacity: Int

    /// Bytes per client: the 8-byte bucket and the 24-byte record.
    public static let bytesPerClient = 32

    /// A table using at most `memoryBytes` (rounded down to a power of two of clients, at
    /// least 1024).
    public init(policy: RateLimitPolicy, memoryBytes: Int) {
        self.policy = policy
        var count = 1024
        while count * 2 * Self.bytesPerClient <= memoryBytes { count *= 2 }
        capacity = count
        mask = count - 1
        slots = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: count)
        slots.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: count)
        records = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: count * 3)
        records.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: count * 3)
    }

    deinit {
        slots.deallocate()
        records.deallocate()
    }

    /// The key bytes of a source address: its prefix under the policy (IPv4 /32, IPv6 /64 by
    /// default), hashed.
    @inline(__always)
    func hash(_ source: DatagramSource) -> Int {
        var hasher = Hasher()
        source.withAddressBytes { bytes in
            let prefix = bytes.count == 4 ? policy.ipv4PrefixLength : policy.ipv6PrefixLength
            let whole = prefix / 8
            hasher.combine(bytes.count)
            hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: bytes.prefix(whole)))
            if prefix % 8 != 0, whole < bytes.count {
                hasher.combine(bytes[whole] & ~UInt8(0) << UInt8(8 - prefix % 8))
            }
        }
        return hasher.finalize()
    }

    /// Decides on one request; lock-free.
    ///
    /// The statistics record is kept with relaxed stores and one atomic add: a slot taken over
    /// by a new client has its address written and its counts reset by the worker that won
    /// the bucket's compare-and-swap. A request another worker counts for the same client in
    /// the instant between that swap and the reset is lost from the count, and a listing
    /// racing with it may show one mixed record: the counts are statistics, exact to within
    /// the client's first few requests, and cost the packet path no lock.
    @inline(__always)
    public func decide(_ source: DatagramSource, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision {
        let h = hash(source)
        let index = h & mask
        let slot = UnsafeAtomic<UInt64>(at: slots + index)
        let fingerprint = UInt32(truncatingIfNeeded: UInt64(bitPattern: Int64(h)) >> 40)
        var current = slot.load(ordering: .relaxed)
        while true {
            let (next, decision) = RateLimitBucket.decide(RateLimitBucket(rawValue: current), fingerprint: fingerprint, nowNanoseconds: now, policy: policy, random: random)
            let (exchanged, original) = slot.compareExchange(expected: current, desired: next.rawValue, ordering: .relaxed)
            if exchanged {
                let record = records + 3 * index
                let counts = UnsafeAtomic<UInt64>(at: record + 2)
                if current == 0 || (current >> 40) != (next.rawValue >> 40) {
                    let (high, low) = source.prefixWords(ipv4Length: policy.ipv4PrefixLength, ipv6Length: policy.ipv6PrefixLength)
                    UnsafeAtomic<UInt64>(at: record).store(high, ordering: .relaxed)
                    UnsafeAtomic<UInt64>(at: record + 1).store(low, ordering: .relaxed)
                    counts.store(0, ordering: .relaxed)
                }
                counts.wrappingIncrement(by: decision == .allow ? 1 : 1 | 1 << 32, ordering: .relaxed)
                return decision
            }
            current = original
        }
    }

    /// One client in the table, for statistics.
    public struct Client: Sendable, Hashable {
        /// The client's prefix (its address at /32 and /128, else ADDRESS/LENGTH).
        public var prefix: String
        /// Requests since the client took its slot.
        public var requests: UInt64
        /// Of those, the ones limited (dropped, kissed or answered only by the leak).
        public var limited: UInt64
        /// Tokens left in its bucket.
        public var tokens: Int
    }

    /// The `count` clients with the most requests (a scan of the table: for statistics, not
    /// the packet path).
    public func busiest(_ count: Int) -> [Client] {
        var found: [(index: Int, requests: UInt64)] = []
        for i in 0..<capacity {
            guard UnsafeAtomic<UInt64>(at: slots + i).load(ordering: .relaxed) != 0 else { continue }
            let counts = UnsafeAtomic<UInt64>(at: records + 3 * i + 2).load(ordering: .relaxed)
            found.append((i, counts & 0xFFFF_FFFF))
        }
        found.sort { $0.requests > $1.requests }
        return found.prefix(count).map { entry in
            let record = records + 3 * entry.index
            let high = UnsafeAtomic<UInt64>(at: record).load(ordering: .relaxed)
            let low = UnsafeAtomic<UInt64>(at: record + 1).load(ordering: .relaxed)
            let counts = UnsafeAtomic<UInt64>(at: record + 2).load(ordering: .relaxed)
            let bucket = RateLimitBucket(rawValue: UnsafeAtomic<UInt64>(at: slots + entry.index).load(ordering: .relaxed))
            return Client(
                prefix: Self.describePrefix(high: high, low: low, policy: policy),
                requests: counts & 0xFFFF_FFFF,
                limited: counts >> 32,
                tokens: bucket.tokens
            )
        }
    }

    /// Text for a stored prefix: IPv4 from its mapped form, with the length when not a whole
    /// address.
    static func describePrefix(high: UInt64, low: UInt64, policy: RateLimitPolicy) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            bytes[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            bytes[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        let isIPv4 = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        if isIPv4 {
            var v4 = in_addr()
            withUnsafeMutableBytes(of: &v4) { $0.copyBytes(from: bytes[12..<16]) }
            inet_ntop(AF_INET, &v4, &text, socklen_t(text.count))
            let address = String(cString: text)
            return policy.ipv4PrefixLength == 32 ? address : "\(address)/\(policy.ipv4PrefixLength)"
        }
        var v6 = in6_addr()
        withUnsafeMutableBytes(of: &v6) { $0.copyBytes(from: bytes) }
        inet_ntop(AF_INET6, &v6, &text, socklen_t(text.count))
        let address = String(cString: text)
        return policy.ipv6PrefixLength == 128 ? address : "\(address)/\(policy.ipv6PrefixLength)"
    }

    /// Buckets in use (a scan; for statistics, not the packet path).
    public var occupied: Int {
        var n = 0
        for i in 0..<capacity where UnsafeAtomic<UInt64>(at: slots + i).load(ordering: .relaxed) != 0 { n += 1 }
        return n
    }
}

extension DatagramSource {
    /// The address masked to its client prefix, as two big-endian words (IPv4 as
    /// ::ffff:a.b.c.d).
    @inline(__always)
    func prefixWords(ipv4Length: Int, ipv6Length: Int) -> (UInt64, UInt64) {
        withAddressBytes { bytes in
            var high: UInt64 = 0
            var low: UInt64 = 0
            if bytes.count == 4 {
                var v4: UInt32 = 0
                for b in bytes { v4 = v4 << 8 | UInt32(b) }
                if ipv4Length < 32 { v4 &= ipv4Length == 0 ? 0 : ~UInt32(0) << UInt32(32 - ipv4Length) }
                return (0, 0xFFFF_0000_0000 | UInt64(v4))
            }
            for i in 0..<8 {
                high = high << 8 | UInt64(bytes[i])
                low = low << 8 | UInt64(bytes[8 + i])
            }
            if ipv6Length < 64 {
                high &= ipv6Length == 0 ? 0 : ~UInt64(0) << UInt64(64 - ipv6Length)
                low = 0
            } else if ipv6Length < 128 {
                low &= ipv6Length == 64 ? 0 : ~UInt64(0) << UInt64(128 - ipv6Length)
            }
            return (high, low)
        }
    }

    /// Calls `body` with the address bytes: 4 for IPv4, 16 for IPv6.
    ///
    /// An IPv4 client of a dual-stack IPv6 socket (one systemd bound with BindIPv6Only=both)
    /// arrives as a v4-mapped address, ::ffff:a.b.c.d (RFC 4291 §2.5.5.2); it is passed as its
    /// 4 IPv4 bytes, so IPv4 access-list prefixes and the IPv4 rate-limit prefix apply to it,
    /// rather than every IPv4 client sharing the IPv6 /64 ::.
    @inline(__always)
    public func withAddressBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        let raw = UnsafeRawPointer(address)
        if address.pointee.ss_family == sa_family_t(AF_INET6) {
            // sin6_addr is at offset 8: ten zero bytes and 0xFFFF make a v4-mapped address.
            if raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == 0,
               raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == UInt32(0x0000_FFFF).bigEndian
            {
                return body(UnsafeRawBufferPointer(start: raw + 20, count: 4))
            }
            return body(UnsafeRawBufferPointer(start: raw + 8, count: 16))
        }
        return body(UnsafeRawBufferPointer(start: raw + 4, count: 4))
    }
}
