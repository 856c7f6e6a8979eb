import Atomics
import TockProtocol

/// The rate-limit table: a fixed array of packed buckets shared by every worker of a service,
/// updated with compare-and-swap (no locks), keyed by the client's address prefix hashed with a
/// per-start random seed.
///
/// Its size is fixed at start from the memory cap and never grows, whatever the number of
/// addresses seen: a new address takes the slot its hash picks, evicting whoever was there
/// (which can only give that client more replies, never fewer). The seed (Swift's `Hasher`,
/// randomised per process) keeps an attacker from aiming collisions at a victim's slot.
///
/// `@unchecked Sendable`: its mutable state is the two slot arrays, allocated once in `init`,
/// freed in `deinit`, and otherwise touched only through atomic loads, stores and
/// compare-and-swap (`UnsafeAtomic` over their storage).
package final class ClientLimiter: RateLimitTable, @unchecked Sendable {
    package let policy: RateLimitPolicy
    let slots: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    /// Per slot, for statistics (`chronyc clients`-style listings): the client's prefix as
    /// two words (IPv4 as ::ffff:a.b.c.d), and its requests and limited requests as one word
    /// (32 bits each), counted since the client took the slot.
    let records: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let mask: Int
    /// The number of buckets.
    package let capacity: Int

    /// Bytes per client: the 8-byte bucket and the 24-byte record.
    package static let bytesPerClient = 32

    /// A table using at most `memoryBytes` (rounded down to a power of two of clients, at
    /// least 1024).
    package init(policy: RateLimitPolicy, memoryBytes: Int) {
        self.policy = policy
        let count = ClientTable.slots(memoryBytes: memoryBytes, bytesPerSlot: Self.bytesPerClient)
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

    /// Decides on one request; lock-free.
    ///
    /// The statistics record is kept with relaxed stores and one atomic add: a slot taken over
    /// by a new client has its address written and its counts reset by the worker that won
    /// the bucket's compare-and-swap. A request another worker counts for the same client in
    /// the instant between that swap and the reset is lost from the count, and a listing
    /// racing with it may show one mixed record: the counts are statistics, exact to within
    /// the client's first few requests, and cost the packet path no lock.
    @inline(__always)
    package func decide(_ client: ClientAddress, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision {
        // The key is the client's prefix under the policy (IPv4 /32, IPv6 /64 by default).
        let key = client.prefix(ipv4Length: policy.ipv4PrefixLength, ipv6Length: policy.ipv6PrefixLength)
        let h = key.tableHash
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
                    UnsafeAtomic<UInt64>(at: record).store(key.high, ordering: .relaxed)
                    UnsafeAtomic<UInt64>(at: record + 1).store(key.low, ordering: .relaxed)
                    counts.store(0, ordering: .relaxed)
                }
                counts.wrappingIncrement(by: decision == .allow ? 1 : 1 | 1 << 32, ordering: .relaxed)
                return decision
            }
            current = original
        }
    }

    /// One client in the table, for statistics.
    package struct Client: Sendable, Hashable {
        /// The client's prefix (its address at /32 and /128, else ADDRESS/LENGTH).
        package var prefix: String
        /// Requests since the client took its slot.
        package var requests: UInt64
        /// Of those, the ones refused (dropped or kissed); a request the leak lets through
        /// counts as answered, since the client got its time.
        package var limited: UInt64
        /// Tokens left in its bucket.
        package var tokens: Int
    }

    /// The `count` clients with the most requests (a scan of the table: for statistics, not
    /// the packet path).
    package func busiest(_ count: Int) -> [Client] {
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

    /// Text for a stored prefix: the address, with the length when not a whole address.
    static func describePrefix(high: UInt64, low: UInt64, policy: RateLimitPolicy) -> String {
        let address = ClientAddress(high: high, low: low, port: 0)
        let (length, whole) = address.isIPv4 ? (policy.ipv4PrefixLength, 32) : (policy.ipv6PrefixLength, 128)
        return length == whole ? address.addressText : "\(address.addressText)/\(length)"
    }

    /// Buckets in use (a scan; for statistics, not the packet path).
    package var occupied: Int {
        var n = 0
        for i in 0..<capacity where UnsafeAtomic<UInt64>(at: slots + i).load(ordering: .relaxed) != 0 { n += 1 }
        return n
    }
}
