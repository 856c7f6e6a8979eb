import Atomics
import CTockShims
import Glibc
import TockProtocol
import TockSockets

/// One thread's receive–decide–send loop on one UDP socket, for any protocol.
///
/// State the thread owns, allocated once when it starts and reused for every batch: a
/// `DatagramBatch` (buffers, addresses, control space, iovecs and message headers), the
/// deferred replies' bookkeeping, the counters' running totals, and its own copy of the
/// responder. Nothing on the loop allocates, locks, logs or formats.
///
/// The engine knows batches, slots, verdicts and sends. What a protocol adds (NTP's transmit
/// timestamps and its T3 stamped as the reply leaves, Roughtime's signature per batch) is the
/// responder's: `beginBatch`, `endBatch` and `send`.
struct DatagramWorker<Responder: DatagramResponder>: Sendable {
    static var batchSize: Int { 64 }
    /// Datagrams larger than this are counted as oversized and dropped; NTP requests with
    /// extension fields stay well below it.
    static var receiveBufferSize: Int { 2048 }

    let socket: DatagramSocket
    let responder: Responder
    let counters: DatagramCounters
    let stopping: ManagedAtomic<Bool>

    /// Runs until `stopping` is set; the socket's receive timeout bounds how long that takes.
    func run() {
        var responder = self.responder
        var batch = DatagramBatch(capacity: Self.batchSize, receiveBufferSize: Self.receiveBufferSize, sendBufferSize: responder.replyCapacity)
        let totals = DatagramCounters.Totals()
        let deferred = DeferredReplies(capacity: Self.batchSize)
        while !stopping.load(ordering: .relaxed) {
            let received = batch.receive(from: socket.fd, flags: tock_MSG_WAITFORONE)
            guard received > 0 else {
                let e = errno
                if received < 0, e != EAGAIN, e != EWOULDBLOCK, e != EINTR {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED); survive them.
                    totals.add(1, to: .receiveErrors)
                    counters.publish(totals)
                }
                continue
            }
            responder.beginBatch(now: SystemClock.now(), totals: totals)
            batch.clearQueue()
            deferred.removeAll()
            for i in 0..<received {
                decide(i, in: &batch, responder: &responder, deferred: deferred, totals: totals)
            }
            if deferred.count > 0 {
                endBatch(&batch, deferred: deferred, responder: &responder, totals: totals)
            }
            totals.add(UInt64(received), to: .received)
            responder.send(&batch, on: socket, totals: totals)
            counters.publish(totals)
        }
        counters.publish(totals)
    }

    /// Decides on datagram `i` and queues its reply, if any, pointed at its source.
    @inline(__always)
    private func decide(
        _ i: Int, in batch: inout DatagramBatch, responder: inout Responder, deferred: DeferredReplies, totals: borrowing DatagramCounters.Totals
    ) {
        guard !batch.isTruncated(at: i) else {
            totals.drop(.oversized)
            return
        }
        let control = batch.control(at: i)
        let slot = batch.queued
        let length: Int
        switch responder.respond(to: batch.bytes(at: i), from: batch.source(at: i), control: control, slot: slot, reply: batch.sendBuffer(slot), totals: totals) {
        case .ignore(let reason):
            totals.drop(reason)
            return
        case .kiss(let n, let reason):
            totals.kiss(reason)
            length = n
        case .send(let n):
            length = n
        case .deferred:
            deferred.add(slot: slot, buffer: batch.sendBuffer(slot))
            length = 0
        }
        batch.queueReply(length: length, to: i, from: control.destination, answerFromDestination: socket.answerFromDestination, isIPv6: socket.isIPv6)
    }

    /// Lets the responder write the deferred replies, then sets their lengths; those it leaves
    /// unwritten are taken out of the queue (keeping the others in order) and counted.
    private func endBatch(_ batch: inout DatagramBatch, deferred: DeferredReplies, responder: inout Responder, totals: borrowing DatagramCounters.Totals) {
        let outcome = responder.endBatch(replies: deferred.buffers, lengths: deferred.lengths)
        // A batch is counted by its size when it was answered (signed), not when it was dropped.
        if outcome.signatures > 0 {
            totals.add(UInt64(outcome.signatures), to: .signatures)
            totals.deferredBatch(deferred.count)
        }
        var k = 0
        var kept = 0
        for j in 0..<batch.queued {
            if k < deferred.count, deferred.slots[k] == j {
                let length = deferred.lengths[k]
                k += 1
                guard length > 0 else {
                    totals.drop(outcome.unwritten)
                    continue
                }
                batch.setQueuedLength(j, length)
            }
            if kept != j { batch.moveQueued(from: j, to: kept) }
            kept += 1
        }
        batch.truncateQueue(to: kept)
    }
}

/// A batch's deferred replies, in the order `respond` deferred them: their queue slots, their
/// buffers and the lengths `endBatch` writes. Allocated once per worker.
final class DeferredReplies {
    let slots: UnsafeMutableBufferPointer<Int>
    private let slotBuffers: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>
    private let written: UnsafeMutableBufferPointer<Int>
    private(set) var count = 0

    init(capacity: Int) {
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: -1)
        slotBuffers = .allocate(capacity: capacity)
        slotBuffers.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        written = .allocate(capacity: capacity)
        written.initialize(repeating: 0)
    }

    deinit {
        slots.deallocate()
        slotBuffers.deallocate()
        written.deallocate()
    }

    @inline(__always)
    func removeAll() { count = 0 }

    /// Notes that the reply in queue slot `slot` is deferred.
    @inline(__always)
    func add(slot: Int, buffer: UnsafeMutableRawBufferPointer) {
        slots[count] = slot
        slotBuffers[count] = buffer
        written[count] = 0
        count += 1
    }

    /// The deferred replies' buffers.
    var buffers: UnsafeBufferPointer<UnsafeMutableRawBufferPointer> { UnsafeBufferPointer(rebasing: slotBuffers[0..<count]) }
    /// Their lengths, as `endBatch` writes them.
    var lengths: UnsafeMutableBufferPointer<Int> { UnsafeMutableBufferPointer(rebasing: written[0..<count]) }
}
