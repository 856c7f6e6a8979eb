/// A service tockd offers: its name in configuration, metrics and logs, and its well-known
/// port.
///
/// Every place that is per service (listeners, policies, counters, status) is keyed by this
/// type, so a new protocol (NTS-KE on 4460, Roughtime on 2002) is one case here and the
/// compiler lists every switch that must learn it.
public enum TockService: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    /// NTP (RFC 5905), UDP.
    case ntp
    /// Daytime (RFC 867), UDP and TCP.
    case daytime
    /// Time (RFC 868), UDP and TCP.
    case time
    /// NTS Key Establishment (RFC 8915 §4), TLS 1.3 over TCP.
    case ntsKE = "nts-ke"
    /// Roughtime (RFC 10049), UDP and TCP.
    case roughtime

    /// The port IANA assigned to the service.
    public var wellKnownPort: UInt16 {
        switch self {
        case .ntp: 123
        case .daytime: 13
        case .time: 37
        case .ntsKE: 4460
        case .roughtime: 2002
        }
    }

    /// The reasons a request to this service can go unanswered, in the order metrics and
    /// `tock status` list them.
    public var dropReasons: [DropReason] {
        switch self {
        case .ntp: [.tooShort, .badVersion, .notClientMode, .malformed, .oversized, .denied, .rateLimited, .ntsMalformed, .ntsBadCookie, .ntsBadAuthenticator]
        case .daytime, .time: [.unsynchronized, .reflectionPort, .oversized, .denied, .rateLimited, .connectionLimit, .perAddressCap]
        case .ntsKE: [.denied, .rateLimited, .connectionLimit, .perAddressCap, .ntsKEHandshake, .ntsKEALPN, .ntsKEBadRequest, .idleConnection, .handshakeTimeout, .streamTimeout, .ntsKEInternal]
        case .roughtime: [.tooShort, .roughtimeFraming, .roughtimeVersion, .roughtimeSRV, .roughtimeNonce, .roughtimeType, .oversized, .unsynchronized, .denied, .rateLimited, .roughtimeDelegationExpired, .roughtimeInternal, .connectionLimit, .perAddressCap, .idleConnection, .streamTimeout]
        }
    }

    /// The name, as in the configuration file (`[ntp]`) and metric labels.
    public var description: String { rawValue }
}

/// Why a request got no answer (or only a kiss-o'-death's worth of one). One type for every
/// service, so drop counters are arrays indexed by reason and metric labels come from here.
public enum DropReason: Int, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    /// NTP: shorter than the 48-byte header (RFC 5905 §7.3).
    case tooShort
    /// NTP: version 0 or 5...7.
    case badVersion
    /// NTP: not a client request: symmetric, server, broadcast, control (6), private (7,
    /// monlist), or NTPv1's mode 0 from port 123 (a server, not a client).
    case notClientMode
    /// NTP: extension fields or MAC that do not parse (RFC 7822).
    case malformed
    /// A datagram larger than the receive buffer: dropped unread.
    case oversized
    /// Daytime/Time: the clock is unsynchronised, and RFC 868 says a server that cannot
    /// determine the time makes no reply.
    case unsynchronized
    /// Daytime/Time over UDP: from a port whose service answers anything (echo, chargen, …),
    /// which would start a reflection loop.
    case reflectionPort
    /// The access list does not admit the client.
    case denied
    /// The client's rate limit is spent.
    case rateLimited
    /// TCP: the listener already holds its maximum of open connections (it is full), every one
    /// of them being answered; or, among the evictions, one gave way to a newcomer.
    case connectionLimit
    /// NTS fields that break RFC 8915 §5 (missing, repeated or misplaced fields, bad lengths).
    case ntsMalformed
    /// An NTS cookie that does not open: answered with an NTS NAK (kiss `NTSN`), counted here.
    case ntsBadCookie
    /// An NTS authenticator that does not verify under the cookie's key: no reply.
    case ntsBadAuthenticator
    /// NTS-KE: the TLS handshake failed (not TLS, TLS 1.2 or older, a bad record).
    case ntsKEHandshake
    /// NTS-KE: TLS completed without the `ntske/1` ALPN protocol (RFC 8915 §4).
    case ntsKEALPN
    /// NTS-KE: the request broke the protocol; answered with an Error record (RFC 8915 §4.1.3).
    case ntsKEBadRequest
    /// TCP (NTS-KE, Roughtime): the connection sent nothing for too long, or no whole request
    /// within its deadline (a client dribbling bytes, slowloris).
    case streamTimeout
    /// NTS-KE: the server could not derive keys; answered with Error 2.
    case ntsKEInternal
    /// Roughtime: not a well-formed packet or message (RFC 10049 §4.2, §5): bad magic, a length
    /// field that does not match, N = 0, offsets or tags out of order, a repeated tag.
    case roughtimeFraming
    /// Roughtime: VER missing or malformed, or naming no version this server answers (§5.1.1).
    case roughtimeVersion
    /// Roughtime: an SRV naming a long-term key this server does not hold (§5.1.4, §5.2).
    case roughtimeSRV
    /// Roughtime: NONC missing, or not 32 bytes (§5.1.2).
    case roughtimeNonce
    /// Roughtime: TYPE missing, not a uint32, or not 0 (§5.1.3).
    case roughtimeType
    /// Roughtime: the batch could not be signed (the online key failed, or its delegation no
    /// longer covers the time); every reply of that batch is dropped.
    case roughtimeInternal
    /// Roughtime: the time lies outside the delegation's MINT…MAXT (RFC 10049 §5.2.6): an
    /// offline delegation expired (or a clock stepped back before MINT). The server stays
    /// silent rather than sign a time clients must reject, until a new delegation is loaded.
    case roughtimeDelegationExpired
    /// TCP: the client's address (an IPv6 /64) already holds its maximum of open connections,
    /// every one of them being answered; or, among the evictions, one of them gave way.
    case perAddressCap
    /// TCP: the connection sent nothing within its first-byte deadline (a real client sends its
    /// request, or its TLS ClientHello, at once).
    case idleConnection
    /// NTS-KE: the TLS handshake did not complete within its deadline.
    case handshakeTimeout

    /// The label in metrics and status (`too_short`, `rate_limited`, …).
    public var label: String {
        switch self {
        case .tooShort: "too_short"
        case .badVersion: "bad_version"
        case .notClientMode: "not_client_mode"
        case .malformed: "malformed"
        case .oversized: "oversized"
        case .unsynchronized: "unsynchronized"
        case .reflectionPort: "reflection_port"
        case .denied: "denied"
        case .rateLimited: "rate_limited"
        case .connectionLimit: "connection_limit"
        case .ntsMalformed: "nts_malformed"
        case .ntsBadCookie: "nts_bad_cookie"
        case .ntsBadAuthenticator: "nts_bad_authenticator"
        case .ntsKEHandshake: "tls_handshake"
        case .ntsKEALPN: "no_alpn"
        case .ntsKEBadRequest: "bad_request"
        case .streamTimeout: "timeout"
        case .ntsKEInternal: "internal_error"
        case .roughtimeFraming: "bad_framing"
        case .roughtimeVersion: "no_common_version"
        case .roughtimeSRV: "unknown_srv"
        case .roughtimeNonce: "bad_nonce"
        case .roughtimeType: "bad_type"
        case .roughtimeInternal: "signing_failed"
        case .roughtimeDelegationExpired: "delegation_expired"
        case .perAddressCap: "per_address_cap"
        case .idleConnection: "idle"
        case .handshakeTimeout: "handshake_timeout"
        }
    }

    public var description: String { label }

    /// The reason with this label, for readers of status documents.
    public init?(label: String) {
        guard let reason = Self.allCases.first(where: { $0.label == label }) else { return nil }
        self = reason
    }
}
