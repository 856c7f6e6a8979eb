/// What a server remembers per client address for the interleaved client/server mode
/// (RFC 9769, chrony's `xleave`): the receive timestamp (T2) it put in its last reply to that
/// address and, once the transport learns it, the transmit timestamp the kernel took when that
/// reply left.
///
/// In interleaved mode a client asks for the previous exchange's transmit timestamp by putting
/// the previous reply's receive timestamp in its request's origin field; the server answers
/// with the kernel's transmit timestamp of that reply, which is more accurate than any time the
/// server could read before sending. Implementations are fixed-size tables shared by a
/// listener's workers (the transport's `InterleavedClientLog`); `NTPServer.handle` only reads
/// and records through this interface, so the decision stays pure and testable.
public protocol NTPInterleavedLog {
    /// What is known of the last reply to `client`, if its receive timestamp was
    /// `previousReceive` (a request whose origin is that timestamp asks for interleaved mode):
    /// whether the kernel has reported when it left, and when.
    mutating func previousReply(of client: ClientAddress, previousReceive: UInt64) -> NTPPreviousReply

    /// Records that the reply now being sent to `client` carries `receive` as its receive
    /// timestamp; its transmit timestamp is unknown until the transport reports it. Returns
    /// where it was recorded: the entry the transport hands back with that timestamp.
    mutating func replied(to client: ClientAddress, receive: UInt64) -> Int
}

/// Where a reply was recorded in the client log (RFC 9769): what the transport must keep until
/// the kernel reports the reply's transmit timestamp, to put it in the right entry. Carried by
/// the core's action, so the transport never reads the reply's bytes back.
public struct NTPLogEntry: Sendable, Hashable {
    /// The log's entry (`NTPInterleavedLog.replied`'s return value).
    public var entry: Int
    /// The reply's receive timestamp as sent (NTP format), the entry's key.
    public var receive: UInt64

    /// The entry `entry`, keyed by `receive`.
    public init(entry: Int, receive: UInt64) {
        self.entry = entry
        self.receive = receive
    }
}

/// What a client log knows of the reply a request's origin timestamp refers to (RFC 9769).
public enum NTPPreviousReply: Sendable, Hashable {
    /// The origin is not the receive timestamp of the last reply to this address: the client
    /// is in basic mode, or its entry was replaced.
    case unknown
    /// It is, but the kernel's transmit timestamp of that reply is not known (not requested,
    /// not reported yet, or lost): the client wants interleaved mode but gets a basic reply.
    case transmitPending
    /// It is, and that reply left at this transmit timestamp (NTP format).
    case transmitted(UInt64)
}

/// The log of a server that does not answer in interleaved mode: every reply is basic.
public enum NoInterleavedLog: NTPInterleavedLog {
    /// Never known.
    public func previousReply(of client: ClientAddress, previousReceive: UInt64) -> NTPPreviousReply { .unknown }
    /// Remembers nothing.
    public mutating func replied(to client: ClientAddress, receive: UInt64) -> Int { 0 }
}
