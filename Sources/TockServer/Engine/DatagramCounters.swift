import Atomics

/// A worker's counters: written by that worker alone, once per batch, and read by anyone.
///
/// The worker counts in plain local variables while it handles a batch and publishes the
/// totals with relaxed stores afterwards: no read-modify-write and no lock on the packet path.
public final class DatagramCounters: Sendable {
    /// Counter slots.
    public enum Slot: Int, CaseIterable, Sendable {
        case received = 0
        case replied
        /// Larger than the receive buffer: dropped without being parsed.
        case oversized
        /// recvmmsg failures other than timeouts and interrupts.
        case receiveErrors
        /// sendmmsg failures (ECONNREFUSED from an ICMP error, ENOBUFS, ...).
        case sendErrors
        /// Kiss-o'-death replies sent (RATE, DENY).
        case kissesSent
    }

    /// Number of fixed slots before the drop reasons.
    static let fixedSlots = Slot.allCases.count
    let values: [UnsafeAtomic<UInt64>]
    /// The responder's drop reason names.
    public let dropReasons: [String]

    init(dropReasons: [String]) {
        self.dropReasons = dropReasons
        self.values = (0..<(DatagramCounters.fixedSlots + dropReasons.count)).map { _ in UnsafeAtomic<UInt64>.create(0) }
    }

    deinit {
        for v in values { v.destroy() }
    }

    /// Publishes a worker's running totals.
    @inline(__always)
    func publish(_ totals: UnsafeMutableBufferPointer<UInt64>) {
        for i in 0..<values.count {
            values[i].store(totals[i], ordering: .relaxed)
        }
    }

    /// The current value of a fixed slot.
    public func value(_ slot: Slot) -> UInt64 {
        values[slot.rawValue].load(ordering: .relaxed)
    }

    /// The current value of a drop reason's counter.
    public func drops(reason: Int) -> UInt64 {
        values[DatagramCounters.fixedSlots + reason].load(ordering: .relaxed)
    }
}

/// Totals over a listener's workers, as a plain value.
public struct DatagramStatistics: Sendable, Hashable {
    public var received: UInt64 = 0
    public var replied: UInt64 = 0
    public var oversized: UInt64 = 0
    public var receiveErrors: UInt64 = 0
    public var sendErrors: UInt64 = 0
    public var kissesSent: UInt64 = 0
    /// Drops by reason name.
    public var drops: [String: UInt64] = [:]

    public init() {}

    /// All drops, whatever the reason.
    public var dropped: UInt64 { drops.values.reduce(0, +) + oversized }

    /// Adds another worker's (or listener's) totals.
    public mutating func add(_ other: DatagramStatistics) {
        received += other.received
        replied += other.replied
        oversized += other.oversized
        receiveErrors += other.receiveErrors
        sendErrors += other.sendErrors
        kissesSent += other.kissesSent
        for (k, v) in other.drops { drops[k, default: 0] += v }
    }

    init(_ counters: DatagramCounters) {
        received = counters.value(.received)
        replied = counters.value(.replied)
        oversized = counters.value(.oversized)
        receiveErrors = counters.value(.receiveErrors)
        sendErrors = counters.value(.sendErrors)
        kissesSent = counters.value(.kissesSent)
        for (i, name) in counters.dropReasons.enumerated() {
            drops[name] = counters.drops(reason: i)
        }
    }
}
