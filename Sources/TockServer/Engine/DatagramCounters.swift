import Atomics
import TockProtocol

/// A worker's counters: written by that worker alone, once per batch, and read by anyone.
///
/// The worker counts in a plain local array (`Totals`) while it handles a batch and publishes
/// it with relaxed stores afterwards: no read-modify-write and no lock on the packet path.
final class DatagramCounters: Sendable {
    /// Counters other than drops.
    enum Slot: Int, CaseIterable, Sendable {
        case received = 0
        case replied
        /// recvmmsg failures other than timeouts and interrupts.
        case receiveErrors
        /// sendmmsg failures (ECONNREFUSED from an ICMP error, ENOBUFS, ...).
        case sendErrors
        /// Kiss-o'-death replies sent (RATE, DENY, RSTR, NTSN).
        case kissesSent
        /// NTS-protected replies sent (RFC 8915 §5.7).
        case authenticated
        /// Interleaved NTP replies sent (RFC 9769): the previous reply's kernel transmit time.
        case interleaved
        /// Signatures made at the end of a batch (Roughtime: one SREP signature per version
        /// present in a receive batch, RFC 10049 §5.3).
        case signatures
        /// Receive batches with deferred replies, by how many: 1, 2-3, 4-7, ... 64 and more
        /// (`DatagramCounters.batchBuckets`), so an operator sees how much each signature buys.
        case deferredBatchOf1, deferredBatchOf2, deferredBatchOf4, deferredBatchOf8, deferredBatchOf16, deferredBatchOf32, deferredBatchOf64
        /// Basic NTP replies sampled for the transmit delay (`NTPTransmitDelay`), and the sum of
        /// their delays in nanoseconds: with the count, the mean delay the correction follows.
        case transmitDelaySamples
        case transmitDelayNanoseconds
        /// Timestamps the network cards took (`--hw-timestamping`), used as T2, and as an
        /// interleaved reply's T3.
        case hardwareReceiveTimestamps
        case hardwareTransmitTimestamps
    }

    /// The labels of the deferred-batch buckets, smallest first: each holds batches of at least
    /// its size and less than the next one's.
    static let batchBuckets = ["1", "2-3", "4-7", "8-15", "16-31", "32-63", "64+"]

    /// Slots: the fixed ones, then one per `DropReason` for drops, then one per `DropReason`
    /// for kisses sent because of it.
    static let slotCount = Slot.allCases.count + 2 * DropReason.allCases.count
    private let values: [UnsafeAtomic<UInt64>]

    init() {
        values = (0..<Self.slotCount).map { _ in UnsafeAtomic<UInt64>.create(0) }
    }

    deinit {
        for v in values { v.destroy() }
    }

    /// The running totals a worker keeps in its own memory between publications.
    struct Totals: ~Copyable {
        private let slots = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: DatagramCounters.slotCount)

        init() { slots.initialize(repeating: 0) }
        deinit { slots.deallocate() }

        /// Adds `n` to a fixed slot.
        @inline(__always)
        func add(_ n: UInt64, to slot: Slot) { slots[slot.rawValue] &+= n }

        /// Counts a batch that ended with `deferred` replies written by the responder.
        @inline(__always)
        func deferredBatch(_ deferred: Int) {
            guard deferred > 0 else { return }
            let bucket = min(Int.bitWidth - 1 - deferred.leadingZeroBitCount, DatagramCounters.batchBuckets.count - 1)
            slots[Slot.deferredBatchOf1.rawValue + bucket] &+= 1
        }

        /// Counts one drop.
        @inline(__always)
        func drop(_ reason: DropReason) { slots[Slot.allCases.count + reason.rawValue] &+= 1 }

        /// Counts one kiss-o'-death sent because of `reason`.
        @inline(__always)
        func kiss(_ reason: DropReason) {
            slots[Slot.kissesSent.rawValue] &+= 1
            slots[Slot.allCases.count + DropReason.allCases.count + reason.rawValue] &+= 1
        }

        fileprivate func value(_ index: Int) -> UInt64 { slots[index] }
    }

    /// Publishes a worker's running totals.
    @inline(__always)
    func publish(_ totals: borrowing Totals) {
        for i in 0..<values.count {
            values[i].store(totals.value(i), ordering: .relaxed)
        }
    }

    /// The current value of a fixed slot.
    func value(_ slot: Slot) -> UInt64 {
        values[slot.rawValue].load(ordering: .relaxed)
    }

    /// The drops for `reason` so far.
    func drops(_ reason: DropReason) -> UInt64 {
        values[Slot.allCases.count + reason.rawValue].load(ordering: .relaxed)
    }

    /// The kisses-o'-death sent because of `reason` so far.
    func kisses(_ reason: DropReason) -> UInt64 {
        values[Slot.allCases.count + DropReason.allCases.count + reason.rawValue].load(ordering: .relaxed)
    }
}

/// Totals over a listener's workers, as a plain value.
package struct DatagramStatistics: Sendable, Hashable {
    package var received: UInt64 = 0
    package var replied: UInt64 = 0
    package var receiveErrors: UInt64 = 0
    package var sendErrors: UInt64 = 0
    package var kissesSent: UInt64 = 0
    package var authenticated: UInt64 = 0
    /// Interleaved NTP replies (RFC 9769).
    package var interleaved: UInt64 = 0
    /// Basic NTP replies whose kernel transmit timestamp was sampled for the T3 correction
    /// (`NTPTransmitDelay`), and the sum of their delays, nanoseconds.
    package var transmitDelaySamples: UInt64 = 0
    package var transmitDelayNanoseconds: UInt64 = 0
    /// Hardware timestamps used as T2, and as interleaved replies' T3.
    package var hardwareReceiveTimestamps: UInt64 = 0
    package var hardwareTransmitTimestamps: UInt64 = 0
    /// Drops by reason (the reasons the service can drop for, zero or not).
    package var drops: [DropReason: UInt64] = [:]
    /// Kisses-o'-death by the reason they were sent (denied, rate limited, NTS cookie refused).
    package var kisses: [DropReason: UInt64] = [:]
    /// Signatures made per batch (Roughtime).
    package var signatures: UInt64 = 0
    /// Batches with deferred replies by size bucket, in `DatagramCounters.batchBuckets` order.
    package var deferredBatches = [UInt64](repeating: 0, count: DatagramCounters.batchBuckets.count)
    /// The bucket labels of `deferredBatches`.
    package static var batchBuckets: [String] { DatagramCounters.batchBuckets }

    package init() {}

    /// All drops, whatever the reason.
    package var dropped: UInt64 { drops.values.reduce(0, +) }

    /// Adds another worker's (or listener's) totals.
    package mutating func add(_ other: DatagramStatistics) {
        received += other.received
        replied += other.replied
        receiveErrors += other.receiveErrors
        sendErrors += other.sendErrors
        kissesSent += other.kissesSent
        authenticated += other.authenticated
        interleaved += other.interleaved
        transmitDelaySamples += other.transmitDelaySamples
        transmitDelayNanoseconds += other.transmitDelayNanoseconds
        hardwareReceiveTimestamps += other.hardwareReceiveTimestamps
        hardwareTransmitTimestamps += other.hardwareTransmitTimestamps
        for (k, v) in other.drops { drops[k, default: 0] += v }
        for (k, v) in other.kisses { kisses[k, default: 0] += v }
        signatures += other.signatures
        for i in deferredBatches.indices { deferredBatches[i] += other.deferredBatches[i] }
    }

    init(_ counters: DatagramCounters, service: TockService) {
        received = counters.value(.received)
        replied = counters.value(.replied)
        receiveErrors = counters.value(.receiveErrors)
        sendErrors = counters.value(.sendErrors)
        kissesSent = counters.value(.kissesSent)
        authenticated = counters.value(.authenticated)
        interleaved = counters.value(.interleaved)
        transmitDelaySamples = counters.value(.transmitDelaySamples)
        transmitDelayNanoseconds = counters.value(.transmitDelayNanoseconds)
        hardwareReceiveTimestamps = counters.value(.hardwareReceiveTimestamps)
        hardwareTransmitTimestamps = counters.value(.hardwareTransmitTimestamps)
        signatures = counters.value(.signatures)
        for i in deferredBatches.indices {
            deferredBatches[i] = counters.value(DatagramCounters.Slot(rawValue: DatagramCounters.Slot.deferredBatchOf1.rawValue + i)!)
        }
        for reason in service.dropReasons {
            drops[reason] = counters.drops(reason)
        }
        if service == .ntp {
            for reason in [DropReason.denied, .rateLimited, .ntsBadCookie] { kisses[reason] = counters.kisses(reason) }
        }
    }
}
