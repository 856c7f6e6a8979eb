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
    let mask: Int
    /// The number of buckets.
    public let capacity: Int

    /// A table using at most `memoryBytes` (rounded down to a power of two of 8-byte buckets,
    /// at least 1024).
    public init(policy: RateLimitPolicy, memoryBytes: Int) {
        self.policy = policy
        var count = 1024
        while count * 2 * 8 <= memoryBytes { count *= 2 }
        capacity = count
        mask = count - 1
        slots = UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>.allocate(capacity: count)
        slots.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: count)
    }

    deinit {
        slots.deallocate()
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
    @inline(__always)
    public func decide(_ source: DatagramSource, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision {
        let h = hash(source)
        let slot = UnsafeAtomic<UInt64>(at: slots + (h & mask))
        let fingerprint = UInt32(truncatingIfNeeded: UInt64(bitPattern: Int64(h)) >> 40)
        var current = slot.load(ordering: .relaxed)
        while true {
            let (next, decision) = RateLimitBucket.decide(RateLimitBucket(rawValue: current), fingerprint: fingerprint, nowNanoseconds: now, policy: policy, random: random)
            let (exchanged, original) = slot.compareExchange(expected: current, desired: next.rawValue, ordering: .relaxed)
            if exchanged { return decision }
            current = original
        }
    }

    /// Buckets in use (a scan; for statistics, not the packet path).
    public var occupied: Int {
        var n = 0
        for i in 0..<capacity where UnsafeAtomic<UInt64>(at: slots + i).load(ordering: .relaxed) != 0 { n += 1 }
        return n
    }
}

extension DatagramSource {
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
