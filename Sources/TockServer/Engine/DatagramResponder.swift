import Glibc
import TockProtocol
import TockSockets

/// What a datagram service decided for one request, in the engine's terms.
enum DatagramVerdict: Sendable, Hashable {
    /// Send the first `length` bytes of the reply slot.
    case send(length: Int)
    /// Send the first `length` bytes: a refusal the protocol answers (NTP's kiss-o'-death),
    /// counted with the kisses by `reason`, not with the drops: the client got an answer.
    case kiss(length: Int, reason: DropReason)
    /// Send nothing, and count `reason`.
    case ignore(DropReason)
    /// Queue the slot now and write the reply in `endBatch`, once every request of the batch
    /// is known (Roughtime signs one Merkle root per batch, RFC 10049 §5.3).
    case deferred
}

/// How a responder ended a batch's deferred replies.
struct DeferredBatchOutcome: Sendable, Hashable {
    /// Signatures made for the batch (counted in `signatures`; 0 when none were needed).
    var signatures: Int
    /// Why a deferred reply left unwritten (length 0) is dropped.
    var unwritten: DropReason
}

/// The socket a worker reads and answers on, as its responder may need to know it.
struct DatagramSocket: Sendable {
    /// The descriptor, shared with other workers only when systemd passed one socket.
    let fd: Int32
    let isIPv6: Bool
    /// Whether replies leave from the request's destination address (the socket is bound to a
    /// wildcard address).
    let answerFromDestination: Bool
    /// Whether the socket reports kernel transmit timestamps (`TransmitTimestampQueue.enable`
    /// was called on it, and no other worker sends on it: the datagram numbers are per socket).
    let transmitTimestamps: Bool
    /// The network cards' clocks, when the socket asks for hardware timestamps.
    let hardwareClocks: HardwareClocks?
}

/// A protocol's per-packet logic as the datagram engine drives it: a thin adapter from the
/// engine to the protocol core's one decision call. One value per worker thread, owned by
/// that thread, so it needs no locks.
///
/// Per received batch the engine calls `beginBatch`, `respond` for each datagram in order,
/// `endBatch` once when any reply was deferred, then `send`. A responder that defers must keep
/// no state per slot: `endBatch` may close the gaps its dropped replies leave in the queue.
protocol DatagramResponder: Sendable {
    /// The slot size `respond` needs: the largest reply, plus any scratch it keeps past the
    /// reply until it is sent. The engine reserves this much per slot.
    var replyCapacity: Int { get }

    /// Refreshes per-batch state (clock state, policy, local zone, monotonic time); `now` is
    /// the time the batch was read.
    mutating func beginBatch(now: UTCInstant, totals: borrowing DatagramCounters.Totals)

    /// Decides on one datagram and writes any reply into `reply`, the queue's slot number
    /// `slot` (the reply is queued there unless the verdict is `.ignore`). `control` holds what
    /// the kernel said of the datagram: its receive timestamp, destination, interface.
    mutating func respond(
        to request: UnsafeRawBufferPointer, from client: ClientAddress, control: ReceivedControl,
        slot: Int, reply: UnsafeMutableRawBufferPointer, totals: borrowing DatagramCounters.Totals
    ) -> DatagramVerdict

    /// Writes the replies this batch's `respond` calls deferred, after the last `respond` and
    /// before the send: `replies[k]` is the slot of the k-th deferred reply, the same buffer
    /// `respond` was given for it; the responder writes the reply there and its length into
    /// `lengths[k]` (0 to drop it for the outcome's `unwritten` reason).
    mutating func endBatch(replies: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome

    /// Sends the queued replies. The default sends them as written (`DatagramBatch.sendAll`);
    /// a protocol that stamps the time into a reply as it leaves (NTP's T3) sends them itself.
    mutating func send(_ batch: inout DatagramBatch, on socket: DatagramSocket, totals: borrowing DatagramCounters.Totals)
}

extension DatagramResponder {
    /// Protocols that never defer have nothing to write at the end of a batch.
    mutating func endBatch(replies: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome {
        preconditionFailure("a responder that defers replies writes them in endBatch")
    }

    /// Replies complete as written leave in chunks of `DatagramBatch.sendChunk`.
    mutating func send(_ batch: inout DatagramBatch, on socket: DatagramSocket, totals: borrowing DatagramCounters.Totals) {
        batch.sendAll(on: socket.fd, totals: totals)
    }
}

extension DatagramBatch {
    /// Replies per sendmmsg call. NTP stamps each chunk with a fresh T3 just before it, so no
    /// reply leaves long after its transmit time was read.
    static var sendChunk: Int { 4 }

    /// Sends every queued reply as written, `sendChunk` per sendmmsg; a reply whose send fails
    /// (ENOBUFS, EPERM from a firewall, a vanished address) is counted and skipped.
    @inline(__always)
    func sendAll(on fd: Int32, totals: borrowing DatagramCounters.Totals) {
        var sent = 0
        while sent < queued {
            let rc = send(on: fd, from: sent, count: Swift.min(Self.sendChunk, queued - sent))
            if rc > 0 {
                sent += rc
                totals.add(UInt64(rc), to: .replied)
            } else {
                if rc < 0, errno == EINTR { continue }
                totals.add(1, to: .sendErrors)
                sent += 1
            }
        }
    }
}
