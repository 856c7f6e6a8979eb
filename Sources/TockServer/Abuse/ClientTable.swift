import TockProtocol

/// What the fixed per-client tables (`ClientLimiter`, `InterleavedClientLog`) share: how many
/// slots a memory budget buys, and where an address's slot is.
enum ClientTable {
    /// The number of slots of `bytesPerSlot` bytes that fit in `memoryBytes`: a power of two (a
    /// slot is then the hash masked), at least 1024.
    static func slots(memoryBytes: Int, bytesPerSlot: Int) -> Int {
        var count = 1024
        while count * 2 * bytesPerSlot <= memoryBytes { count *= 2 }
        return count
    }
}

extension ClientAddress {
    /// The address's hash for the fixed tables, its port ignored: Swift's `Hasher` is seeded
    /// afresh at each start, so no one outside can aim addresses at one slot.
    @inline(__always)
    var tableHash: Int {
        var hasher = Hasher()
        hasher.combine(high)
        hasher.combine(low)
        return hasher.finalize()
    }
}
