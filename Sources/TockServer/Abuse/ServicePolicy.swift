import TockProtocol

/// Who a service answers and how often: an access list, an optional rate limit, and whether a
/// denied NTP client gets a kiss-o'-death (DENY or RSTR) or silence.
public struct ServicePolicy: Sendable, Hashable {
    /// Allowed and denied prefixes. Default: everyone.
    public var access: AccessList
    /// The per-client rate limit; nil (the default, as in chrony and NTPsec) for none.
    public var rateLimit: RateLimitPolicy?
    /// The kiss a denied NTP client is sent, DENY or RSTR (RFC 5905 §7.4); nil (the default)
    /// for silence, which costs an attacker's victim nothing.
    public var denyKissCode: KissCode?

    public init(access: AccessList = AccessList(), rateLimit: RateLimitPolicy? = nil, denyKissCode: KissCode? = nil) {
        self.access = access
        self.rateLimit = rateLimit
        self.denyKissCode = denyKissCode
    }

    /// Whether `source` passes the access list.
    @inline(__always)
    func permits(_ source: DatagramSource) -> Bool {
        access.isOpen || source.withAddressBytes { access.permits($0) }
    }
}
