import TockProtocol

/// Who a service answers and how often: an access list, an optional rate limit, and whether a
/// denied NTP client gets a DENY kiss-o'-death or silence.
public struct ServicePolicy: Sendable, Hashable {
    /// Allowed and denied prefixes. Default: everyone.
    public var access: AccessList
    /// The per-client rate limit; nil (the default, as in chrony and NTPsec) for none.
    public var rateLimit: RateLimitPolicy?
    /// Whether a denied NTP client is sent a DENY kiss-o'-death (default: silence, which costs
    /// an attacker's victim nothing).
    public var denyWithKissOfDeath: Bool

    public init(access: AccessList = AccessList(), rateLimit: RateLimitPolicy? = nil, denyWithKissOfDeath: Bool = false) {
        self.access = access
        self.rateLimit = rateLimit
        self.denyWithKissOfDeath = denyWithKissOfDeath
    }

    /// Whether `source` passes the access list.
    @inline(__always)
    func permits(_ source: DatagramSource) -> Bool {
        access.isOpen || source.withAddressBytes { access.permits($0) }
    }
}
