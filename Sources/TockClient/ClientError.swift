import TockProtocol
import TockSockets

/// Why a query did not produce a usable time. Each case has its own exit status in `tock`.
package enum ClientError: Error, Sendable, CustomStringConvertible {
    /// The host name did not resolve.
    case resolution(host: String, reason: String)
    /// No reply within the timeout.
    case timeout(server: String, seconds: Double)
    /// A reply was rejected by the RFC 5905 checks.
    case rejected(server: String, NTPReplyProblem)
    /// A Daytime or Time reply that cannot be read.
    case unreadableReply(server: String, reason: String)
    /// A socket call failed (connection refused, network unreachable, ...).
    case network(server: String, SystemError)
    /// NTS key establishment (RFC 8915 §4) failed: TLS, the certificate, ALPN, or the response.
    case ntsKeyEstablishment(server: String, NTSKEFailure)
    /// An NTS-protected reply was refused: not authenticated, forged, not ours, or an NTS NAK
    /// (RFC 8915 §5.7). Replies whose NTS checks pass but whose time fails RFC 5905's checks
    /// are `.rejected`.
    case ntsRejected(server: String, NTSReplyProblem)
    /// A Roughtime reply failed the client's checks (RFC 10049 §5.4).
    case roughtimeRejected(server: String, RoughtimeVerificationError)

    package var description: String {
        switch self {
        case .resolution(let host, let reason): "cannot resolve '\(host)': \(reason)"
        case .timeout(let server, let seconds): "no reply from \(server) within \(seconds) s"
        case .rejected(let server, let problem): "\(server): \(problem)"
        case .unreadableReply(let server, let reason): "\(server): \(reason)"
        case .network(let server, let error): "\(server): \(error)"
        case .ntsKeyEstablishment(let server, let failure): "NTS-KE with \(server) failed: \(failure)"
        case .ntsRejected(let server, let problem): "\(server): \(problem)"
        case .roughtimeRejected(let server, let problem): "\(server): Roughtime reply rejected: \(Self.explain(problem))"
        }
    }
}

extension ClientError {
    /// What a Roughtime verification failure means for the user.
    static func explain(_ problem: RoughtimeVerificationError) -> String {
        switch problem {
        case .badDelegationSignature: "the certificate is not signed by the public key given (wrong --public-key, or not that server)"
        case .badResponseSignature: "the response is not signed by the online key the certificate names"
        case .outsideDelegation: "the midpoint lies outside the online key's validity (MINT..MAXT)"
        case .merkleProofFailed: "the Merkle proof (INDX, PATH) does not lead from our request to the signed ROOT"
        case .nonceMismatch: "the reply does not echo our nonce"
        case .replyLargerThanRequest: "the reply is longer than the request"
        case .wrongType: "TYPE is not 1"
        case .versionNotOffered(let v): "version \(v) was not offered"
        case .versionNotListed: "VERS does not list the reply's version"
        case .zeroRadius: "RADI is zero"
        case .badPath: "PATH is not whole hashes, or too long"
        case .malformedReply(let e): "malformed reply (\(e))"
        case .badRequest(let e): "bad request (\(e))"
        }
    }
}

/// Why NTS key establishment (RFC 8915 §4) did not give a usable session, with what to do.
package enum NTSKEFailure: Sendable, CustomStringConvertible {
    /// The server's certificate does not chain to a trusted root (or has expired).
    case certificateNotTrusted(String)
    /// The certificate is valid but not for the name (or address) we connected to.
    case nameMismatch(expected: String)
    /// Another TLS failure: the handshake, TLS 1.3 refused, a reset connection.
    case tls(String)
    /// The server did not agree to ALPN `ntske/1` (RFC 8915 §4 requires it).
    case noALPN(negotiated: String?)
    /// The response is complete but unusable: an Error record, no NTPv4, no algorithm we
    /// offered, no cookies, or a broken record.
    case response(NTSKEResponse.Problem)
    /// The response is not a valid NTS-KE message.
    case invalidMessage(String)
    /// The server closed the connection before End of Message.
    case closedEarly
    /// TLS gave no exporter secret to derive the keys from (RFC 8915 §5.1).
    case noExporterSecret

    package var description: String {
        switch self {
        case .certificateNotTrusted(let detail):
            "the server's certificate is not trusted (\(detail)): pass the CA that issued it with --ca FILE, or check that it has not expired"
        case .nameMismatch(let expected):
            "the server's certificate is not valid for '\(expected)' (hostname mismatch): connect with a name (or IP address) in the certificate's subjectAltName"
        case .tls(let detail):
            "TLS failed: \(detail)"
        case .noALPN(let negotiated):
            "the server did not agree to ALPN 'ntske/1'\(negotiated.map { " (it chose '\($0)')" } ?? ""): not an NTS-KE server?"
        case .response(let problem):
            "\(problem)"
        case .invalidMessage(let why):
            "invalid NTS-KE response: \(why)"
        case .closedEarly:
            "the server closed the connection before End of Message"
        case .noExporterSecret:
            "TLS gave no exporter secret to derive the NTS keys from (is the session TLS 1.3?)"
        }
    }
}
