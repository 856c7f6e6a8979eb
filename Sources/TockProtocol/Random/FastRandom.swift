/// A small, fast, non-cryptographic generator (xoshiro256**), seeded once from the system's
/// secure generator.
///
/// Used on the per-packet path to fill the timestamp bits below the clock's precision, where
/// `SystemRandomNumberGenerator`'s system call per draw would cost more than the rest of the
/// reply. Unpredictability here only needs to defeat guessing of sub-precision bits; anything
/// that protects a secret (NTS keys, the client's transmit timestamp) uses the system generator.
public struct FastRandom: RandomNumberGenerator, Sendable {
    @usableFromInline var s0: UInt64
    @usableFromInline var s1: UInt64
    @usableFromInline var s2: UInt64
    @usableFromInline var s3: UInt64

    /// Seeds from the system's secure generator.
    public init() {
        var system = SystemRandomNumberGenerator()
        self.init(seed: system.next())
    }

    /// Seeds deterministically (tests).
    public init(seed: UInt64) {
        var sm = seed
        func splitmix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(&sm)
        s1 = splitmix(&sm)
        s2 = splitmix(&sm)
        s3 = splitmix(&sm)
    }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inlinable @inline(__always)
    func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
