/// How a server limits the responses each client address may get: a token bucket per address
/// (or per prefix), with a random leak and optional kiss-o'-death replies, as chrony's
/// `ratelimit` and NTPsec's `restrict ... limited kod` do.
///
/// Off by default, as in chrony and NTPsec: many clients behind one NAT address share a
/// bucket, so a limit is the operator's choice for the traffic they see.
public struct RateLimitPolicy: Sendable, Hashable {
    /// log2 seconds between responses a client earns (chrony's `interval`): 3 = one per 8 s.
    public var intervalLog2: Int
    /// Responses a client may take in a burst (chrony's `burst`), 1...255.
    public var burst: Int
    /// log2 of the leak: on average at least 1 in 2^leak limited requests is answered anyway, so
    /// a spoofer cannot cut a victim off by exhausting its bucket (chrony's `leak`), 0...4.
    public var leakLog2: Int
    /// Whether a limited NTP request gets a RATE kiss-o'-death (itself limited to one per
    /// interval per client) instead of silence.
    public var kissOfDeath: Bool
    /// Prefix lengths that group addresses into one client: /32 and /64 by default, so a host
    /// rotating through its IPv6 /64 stays one client.
    public var ipv4PrefixLength: Int
    /// The IPv6 prefix length that makes one client, 0...128 (see `ipv4PrefixLength`).
    public var ipv6PrefixLength: Int

    /// Creates a policy; the defaults are chrony's `ratelimit` defaults (one response per 8 s,
    /// bursts of 8, a leak of 1 in 4) without kisses.
    public init(intervalLog2: Int = 3, burst: Int = 8, leakLog2: Int = 2, kissOfDeath: Bool = false, ipv4PrefixLength: Int = 32, ipv6PrefixLength: Int = 64) {
        self.intervalLog2 = intervalLog2
        self.burst = burst
        self.leakLog2 = leakLog2
        self.kissOfDeath = kissOfDeath
        self.ipv4PrefixLength = ipv4PrefixLength
        self.ipv6PrefixLength = ipv6PrefixLength
    }

    /// The ranges each field accepts; configuration outside them is rejected.
    public static let intervalRange = -19...12
    /// Accepted `burst` values: the bucket's token count has 8 bits.
    public static let burstRange = 1...255
    /// Accepted `leakLog2` values, as chrony's `leak`: 0 (no leak) to 1 in 16.
    public static let leakRange = 0...4

    /// Why a policy is not valid.
    public var problems: [String] {
        var out: [String] = []
        if !Self.intervalRange.contains(intervalLog2) { out.append("interval \(intervalLog2) outside \(Self.intervalRange)") }
        if !Self.burstRange.contains(burst) { out.append("burst \(burst) outside \(Self.burstRange)") }
        if !Self.leakRange.contains(leakLog2) { out.append("leak \(leakLog2) outside \(Self.leakRange)") }
        if !(0...32).contains(ipv4PrefixLength) { out.append("IPv4 prefix /\(ipv4PrefixLength) outside /0.../32") }
        if !(0...128).contains(ipv6PrefixLength) { out.append("IPv6 prefix /\(ipv6PrefixLength) outside /0.../128") }
        return out
    }

    /// Nanoseconds per earned token.
    @inlinable
    public var intervalNanoseconds: Int64 {
        intervalLog2 >= 0 ? 1_000_000_000 << Int64(intervalLog2) : max(1, 1_000_000_000 >> Int64(-intervalLog2))
    }
}

/// The verdict for one request.
public enum RateLimitDecision: Sendable, Hashable {
    /// Answer normally.
    case allow
    /// Answer with a RATE kiss-o'-death.
    case kiss
    /// Send nothing.
    case drop
}

/// One client's bucket, packed into 64 bits so a table shared by all workers can update it with
/// one compare-and-swap: 24 bits of address fingerprint, 8 bits of tokens, one bit "kissed since
/// the bucket emptied", and 31 bits of the time of the last token accounting in units of 2^20 ns
/// (about 1 ms; the field spans 25 days and wraps harmlessly).
///
/// The arithmetic is a pure function of (bucket, now, policy, a random draw); the transport's
/// table only loads and swaps words. `now` is a monotonic clock, so steps of the wall clock
/// neither reset nor freeze a client's limit.
public struct RateLimitBucket: Sendable, Hashable {
    public var rawValue: UInt64

    /// A bucket from the 64-bit word a table stores; 0 is an empty slot.
    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    @usableFromInline static let timeShift: Int64 = 20
    @usableFromInline static let timeMask: UInt32 = 0x7FFF_FFFF

    @inlinable var fingerprint: UInt32 { UInt32(truncatingIfNeeded: rawValue >> 40) }
    /// Tokens left.
    @inlinable public var tokens: Int { Int((rawValue >> 32) & 0xFF) }
    @inlinable var kissed: Bool { rawValue & 0x8000_0000 != 0 }
    @inlinable var updated: UInt32 { UInt32(truncatingIfNeeded: rawValue) & Self.timeMask }

    @inlinable
    static func pack(fingerprint: UInt32, tokens: Int, kissed: Bool, updated: UInt32) -> RateLimitBucket {
        RateLimitBucket(rawValue: UInt64(fingerprint & 0xFF_FFFF) << 40 | UInt64(tokens & 0xFF) << 32 | (kissed ? 0x8000_0000 : 0) | UInt64(updated & timeMask))
    }

    /// Decides on a request from the client `fingerprint` (24 bits used) at monotonic time
    /// `now` and returns the new bucket. A bucket holding another fingerprint, or none, is
    /// replaced by a full one: the table never grows, and an evicted client only gains.
    @inlinable
    public static func decide(
        _ bucket: RateLimitBucket,
        fingerprint: UInt32,
        nowNanoseconds now: Int64,
        policy: RateLimitPolicy,
        random: UInt64
    ) -> (RateLimitBucket, RateLimitDecision) {
        let tick = UInt32(truncatingIfNeeded: now >> timeShift) & timeMask
        let mine = fingerprint & 0xFF_FFFF
        var tokens = policy.burst
        var kissed = false
        var updated = tick
        if bucket.rawValue != 0, bucket.fingerprint == mine {
            let elapsed = Int64((tick &- bucket.updated) & timeMask)
            if elapsed < 0x4000_0000 {
                tokens = bucket.tokens
                kissed = bucket.kissed
                updated = bucket.updated
                let interval = policy.intervalNanoseconds
                let earned: Int64
                if interval >= 1 << timeShift {
                    // Whole intervals only; the fraction stays banked in `updated`.
                    let intervalTicks = interval >> timeShift
                    earned = elapsed / intervalTicks
                    updated = (updated &+ UInt32(truncatingIfNeeded: earned * intervalTicks)) & timeMask
                } else {
                    earned = (elapsed << timeShift) / interval
                    updated = tick
                }
                if earned > 0 {
                    tokens = Int(min(Int64(policy.burst), Int64(tokens) + earned))
                    kissed = false
                }
                if tokens >= policy.burst { updated = tick }
            }
        }
        if tokens > 0 {
            return (pack(fingerprint: mine, tokens: tokens - 1, kissed: kissed, updated: updated), .allow)
        }
        // Limited. The leak answers 1 in 2^leak anyway.
        if policy.leakLog2 > 0, random & ((1 << UInt64(policy.leakLog2)) - 1) == 0 {
            return (pack(fingerprint: mine, tokens: 0, kissed: kissed, updated: updated), .allow)
        }
        // At most one kiss per emptied bucket: a kiss is itself a reply a spoofer could aim.
        if policy.kissOfDeath, !kissed {
            return (pack(fingerprint: mine, tokens: 0, kissed: true, updated: updated), .kiss)
        }
        return (pack(fingerprint: mine, tokens: 0, kissed: kissed, updated: updated), .drop)
    }
}
