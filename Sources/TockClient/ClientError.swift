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

    package var description: String {
        switch self {
        case .resolution(let host, let reason): "cannot resolve '\(host)': \(reason)"
        case .timeout(let server, let seconds): "no reply from \(server) within \(seconds) s"
        case .rejected(let server, let problem): "\(server): \(problem)"
        case .unreadableReply(let server, let reason): "\(server): \(reason)"
        case .network(let server, let error): "\(server): \(error)"
        }
    }
}
