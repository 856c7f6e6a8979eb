import TockProtocol

/// What a datagram service decided for one request, in the engine's terms.
enum DatagramVerdict: Sendable, Hashable {
    /// Send the first `length` bytes of the reply buffer.
    case send(length: Int, kind: DatagramReplyKind)
    /// Send the first `length` bytes: a kiss-o'-death, sent because of `reason` (counted with
    /// the kisses by reason, not the drops: the client got an answer).
    case kiss(length: Int, reason: DropReason)
    /// Send nothing, and count `reason`.
    case ignore(DropReason)
    /// Queue the slot now and write the reply in `endBatch`, once every request of the batch
    /// is known (Roughtime signs one Merkle root per batch, RFC 10049 §5.3).
    case deferred
}

/// How the engine treats a reply before and after sending it.
enum DatagramReplyKind: Sendable, Hashable {
    /// Stamp the transmit time (T3) into it just before the send (NTP time replies).
    case timestamped
    /// Stamp T3, then seal it (NTS, RFC 8915 §5.7: the AEAD covers T3).
    case authenticated
    /// Send as written (Daytime, Time).
    case complete
    /// A kiss-o'-death: sent as written; counted in `kissesSent` as well as in `replied`.
    case kissOfDeath
    /// Queued by a `.deferred` verdict, not yet written: `endBatch` writes it (then it is sent
    /// as written) or drops it.
    case deferred
    /// An interleaved NTP reply (RFC 9769): sent as written (its transmit timestamp is the
    /// kernel's of the previous reply), and its own kernel transmit timestamp is wanted
    /// (`transmitted`).
    case interleaved
    /// Like `.timestamped`, and its kernel transmit timestamp is wanted (`transmitted`): a basic
    /// NTP reply to a client asking for interleaved mode, whose next request can then be
    /// answered interleaved.
    case timestampedForInterleaving

    /// Whether `finish` completes it just before its send (T3, and for NTS the seal).
    @inline(__always)
    var isFinishedBeforeSending: Bool {
        self == .timestamped || self == .authenticated || self == .timestampedForInterleaving
    }

    /// Whether the engine asks the kernel for this datagram's transmit timestamp (on a socket
    /// with `transmitTimestamps`) and reports it through `transmitted` and
    /// `transmitTimestamp`. Other replies are sent without the request and cost nothing.
    @inline(__always)
    var wantsTransmitTimestamp: Bool {
        self == .interleaved || self == .timestampedForInterleaving
    }
}

/// A protocol's per-packet logic as the datagram engine drives it: a thin adapter from the
/// engine to the protocol core's one decision call. One value per worker thread, owned by
/// that thread, so it needs no locks.
///
/// The engine calls `beginBatch` once per received batch, `respond` per datagram, `endBatch`
/// once after the last `respond` when any reply was deferred, and `finish` for every reply
/// whose kind `isFinishedBeforeSending` just before its chunk is sent.
protocol DatagramResponder: Sendable {
    /// The service, whose drop reasons the engine counts.
    var service: TockService { get }
    /// The slot size `respond` needs: the largest reply, plus any scratch it keeps past the
    /// reply until `finish`. The engine reserves this much per slot.
    var replyCapacity: Int { get }

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

    /// Completes a reply whose kind `isFinishedBeforeSending` just before it is sent: writes
    /// the transmit time and, for NTS, seals. `slot` is the whole slot, `length` the reply's.
    mutating func finish(_ kind: DatagramReplyKind, transmitTime: UTCInstant, slot: UnsafeMutableRawBufferPointer, length: Int)

    /// Writes the replies this batch's `respond` calls deferred (`.deferred`), after the last
    /// `respond` and before any send. `slots[k]` is the slot of the k-th deferred reply, the
    /// same buffer `respond` was given for it (slots stay valid until the batch is sent); the
    /// responder writes the reply there and its length into `lengths[k]`. Returns whether the
    /// replies were written (and the signatures that took) or the reason every deferred reply
    /// of the batch is dropped unsent.
    mutating func endBatch(slots: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome

    /// A reply of `kind` in `slot` left as the socket's timestamped datagram number `id` (its
    /// `SOF_TIMESTAMPING_OPT_ID` counter, which counts only the datagrams that asked for a
    /// timestamp), sent after `transmitTime`; called only on sockets with kernel transmit
    /// timestamps, for every datagram sent whose kind `wantsTransmitTimestamp`, in order.
    mutating func transmitted(_ kind: DatagramReplyKind, slot: UnsafeMutableRawBufferPointer, id: UInt32, transmitTime: UTCInstant)

    /// A transmit timestamp of datagram `id`, read from the error queue: the kernel's software
    /// one, or the card's converted to system time. `final` is false for a software timestamp
    /// when the card's is still to come (hardware timestamping): it is used until then.
    /// Returns whether a waiting reply took it.
    @discardableResult
    mutating func transmitTimestamp(id: UInt32, time: UTCInstant, final: Bool) -> Bool

    /// The datagram numbers were lost (a send failed, and the kernel may or may not have
    /// counted it): forget every reply still waiting for its timestamp.
    mutating func forgetTransmits()

    /// Whether replies are waiting for transmit timestamps the error queue has not yet given,
    /// so the engine should read it before deciding on the next batch.
    var awaitsTransmitTimestamps: Bool { get }

    /// A read of the error queue found none of the awaited timestamps: stop awaiting them (they
    /// are still taken if a later read finds them).
    mutating func settleTransmits()
}

/// How a responder ended a batch's deferred replies.
enum DeferredBatchOutcome: Equatable {
    /// Written, with this many signatures made for them.
    case written(signatures: Int)
    /// None written: every deferred reply is dropped for this reason.
    case dropped(DropReason)
}

extension DatagramResponder {
    /// Protocols that never defer have nothing to write at the end of a batch.
    mutating func endBatch(slots: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome { .written(signatures: 0) }

    /// Protocols without interleaved replies want no transmit timestamps.
    mutating func transmitted(_ kind: DatagramReplyKind, slot: UnsafeMutableRawBufferPointer, id: UInt32, transmitTime: UTCInstant) {}
    /// Protocols without interleaved replies want no transmit timestamps.
    mutating func transmitTimestamp(id: UInt32, time: UTCInstant, final: Bool) -> Bool { false }
    /// Protocols without interleaved replies wait for no transmit timestamps.
    mutating func forgetTransmits() {}
    /// Protocols without interleaved replies wait for no transmit timestamps.
    var awaitsTransmitTimestamps: Bool { false }
    /// Protocols without interleaved replies wait for no transmit timestamps.
    mutating func settleTransmits() {}

    /// Protocols without timestamped replies finish nothing.
    mutating func finish(_ kind: DatagramReplyKind, transmitTime: UTCInstant, slot: UnsafeMutableRawBufferPointer, length: Int) {}
}
