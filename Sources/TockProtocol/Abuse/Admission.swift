/// A service's access, rate-limit and kiss-o'-death choices: what a reload (SIGHUP) may change
/// while the server runs.
public struct ServicePolicy: Sendable, Hashable {
    /// Allowed and denied prefixes. Default: everyone.
    public var access: AccessList
    /// The per-client rate limit; nil (the default, as in chrony and NTPsec) for none.
    public var rateLimit: RateLimitPolicy?
    /// The kiss a denied NTP client is sent, DENY or RSTR (RFC 5905 §7.4); nil (the default)
    /// for silence, which costs an attacker's victim nothing.
    public var denyKissCode: KissCode?

    /// A policy; the default serves everyone without limit.
    public init(access: AccessList = AccessList(), rateLimit: RateLimitPolicy? = nil, denyKissCode: KissCode? = nil) {
        self.access = access
        self.rateLimit = rateLimit
        self.denyKissCode = denyKissCode
    }
}

/// The per-client rate-limit table a decision consults.
///
/// The core owns the arithmetic (`RateLimitBucket.decide`); the table only stores buckets. The
/// server's table is shared by every worker of a service and updated lock-free; tests and fuzz
/// targets use a plain one.
public protocol RateLimitTable {
    /// The decision for one request from `client` at monotonic time `now`, recording it.
    func decide(_ client: ClientAddress, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision
}

/// A table for services that limit nothing; never consulted.
public enum NoRateLimit: RateLimitTable {
    /// Allows every request; present only to satisfy `RateLimitTable`, since an admission
    /// without a table never calls it.
    public func decide(_ client: ClientAddress, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision { .allow }
}

/// The admission half of every decision: the access list, then the rate limit.
///
/// Built once per receive batch (or connection) from the live policy; `admit` is per request,
/// lock-free and allocation-free.
public struct ClientAdmission<Table: RateLimitTable> {
    /// The policy in force.
    public var policy: ServicePolicy
    /// The rate-limit table, when the policy limits rates.
    public var table: Table?
    /// Monotonic nanoseconds for the rate limit (read once per batch): a wall-clock step
    /// neither refills nor freezes a bucket.
    public var monotonicNanoseconds: Int64

    /// An admission for `policy`, consulting `table` when the policy limits rates.
    @inlinable
    public init(policy: ServicePolicy, table: Table?, monotonicNanoseconds: Int64) {
        self.policy = policy
        self.table = policy.rateLimit == nil ? nil : table
        self.monotonicNanoseconds = monotonicNanoseconds
    }

    /// What admission decided.
    public enum Verdict: Sendable, Hashable {
        /// Serve the request.
        case serve
        /// Answer with this kiss-o'-death instead (NTP only; other protocols drop).
        case kiss(KissCode, because: DropReason)
        /// Send nothing.
        case drop(DropReason)
    }

    /// Decides whether `client` is served: a denied client gets the deny kiss or nothing; a
    /// client over its limit gets one RATE kiss per emptied bucket (when configured) or
    /// nothing. The deny check comes first, so a denied client never spends a bucket.
    @inlinable
    public func admit(_ client: ClientAddress, random: UInt64) -> Verdict {
        if !policy.access.isOpen, !policy.access.permits(client) {
            if let code = policy.denyKissCode { return .kiss(code, because: .denied) }
            return .drop(.denied)
        }
        if let table {
            switch table.decide(client, nowNanoseconds: monotonicNanoseconds, random: random) {
            case .allow: break
            case .kiss: return .kiss(.rate, because: .rateLimited)
            case .drop: return .drop(.rateLimited)
            }
        }
        return .serve
    }
}

extension ClientAdmission where Table == NoRateLimit {
    /// An admission with an access list only.
    @inlinable
    public init(policy: ServicePolicy) {
        self.init(policy: policy, table: nil, monotonicNanoseconds: 0)
    }
}

extension ClientAdmission: Sendable where Table: Sendable {}
