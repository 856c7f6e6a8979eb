import TockProtocol

/// What a datagram service decided for one request, in the engine's terms.
enum DatagramVerdict: Sendable, Hashable {
    /// Send the first `length` bytes of the reply buffer.
    case send(length: Int, kind: DatagramReplyKind)
    /// Send nothing, and count `reason`.
    case ignore(DropReason)
}

/// How the engine treats a reply before and after sending it.
enum DatagramReplyKind: Sendable, Hashable {
    /// Stamp the transmit time (T3) into it just before the send (NTP time replies).
    case timestamped
    /// Send as written (Daytime, Time).
    case complete
    /// A kiss-o'-death: sent as written; counted in `kissesSent` as well as in `replied`.
    case kissOfDeath
}

/// A protocol's per-packet logic as the datagram engine drives it: a thin adapter from the
/// engine to the protocol core's one decision call. One value per worker thread, owned by
/// that thread, so it needs no locks.
///
/// The engine calls `beginBatch` once per received batch, `respond` per datagram, and
/// `stampTransmitTime` for every `.timestamped` reply just before its chunk is sent.
protocol DatagramResponder: Sendable {
    /// The service, whose drop reasons the engine counts.
    var service: TockService { get }
    /// The largest reply `respond` writes; the engine reserves this much per slot.
    static var replyCapacity: Int { get }

    /// Refreshes per-batch state (clock state, policy, local zone, monotonic time); `now` is
    /// the time the batch was read.
    mutating func beginBatch(now: UTCInstant)

    /// Decides on one datagram received at `receiveTime` and writes any reply into `reply`.
    mutating func respond(
        to request: UnsafeRawBufferPointer,
        from client: ClientAddress,
        receiveTime: UTCInstant,
        reply: UnsafeMutableRawBufferPointer
    ) -> DatagramVerdict

    /// Writes the transmit time into a `.timestamped` reply just before it is sent.
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer)
}

extension DatagramResponder {
    /// Protocols without timestamped replies stamp nothing.
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer) {}
}
