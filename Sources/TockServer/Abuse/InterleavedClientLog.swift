import Atomics
import TockProtocol

/// The interleaved mode's client log (RFC 9769; chrony's client log): per client address, the
/// receive timestamp of the last reply and that reply's kernel transmit timestamp once known.
/// A fixed array shared by every worker of an NTP listener, lock-free, like `ClientLimiter`.
///
/// Keyed by address, not port: chrony may use a new source port for every request, and
/// SO_REUSEPORT then hands the request to another worker, which must still find the entry.
/// Its size is fixed at start and never grows: an address takes the slot its hash picks (a
/// per-start random seed, so collisions cannot be aimed), evicting whoever was there; an
/// evicted client merely gets a basic reply next time. A flood of spoofed sources therefore
/// costs no memory, and cannot make a real client interleave wrongly: a request is interleaved
/// only when its origin is exactly the receive timestamp stored in its address's slot.
///
/// Each slot is two words: the receive timestamp (NTP format, odd, so never 0), and the
/// transmit time as `tag << 32 | delta`, where `tag` is the low 32 bits of the receive
/// timestamp it belongs to and `delta` the signed 32-bit difference transmit − receive in NTP
/// units (±0.5 s). The tag makes every word self-checking, so the table needs no lock: a
/// transmit time written for a reply that a newer one has since replaced carries the old tag
/// and is ignored.
///
/// `@unchecked Sendable`: the words are allocated once in `init`, freed in `deinit`, and
/// otherwise touched only through atomic loads and stores.
package final class InterleavedClientLog: @unchecked Sendable {
    let words: UnsafeMutablePointer<UnsafeAtomic<UInt64>.Storage>
    let mask: Int
    /// The number of slots.
    package let capacity: Int

    /// Bytes per client: two words.
    package static let bytesPerClient = 16

    /// A table using at most `memoryBytes` (rounded down to a power of two of slots, at least
    /// 1024).
    package init(memoryBytes: Int) {
        let count = ClientTable.slots(memoryBytes: memoryBytes, bytesPerSlot: Self.bytesPerClient)
        capacity = count
        mask = count - 1
        words = .allocate(capacity: 2 * count)
        words.initialize(repeating: UnsafeAtomic<UInt64>.Storage(0), count: 2 * count)
    }

    deinit {
        words.deallocate()
    }

    /// The slot of `client`'s address (its port ignored).
    @inline(__always)
    package func slot(of client: ClientAddress) -> Int {
        client.tableHash & mask
    }

    /// Whether slot `slot` still holds the reply whose receive timestamp was `receive` and,
    /// if so, that reply's transmit time once known.
    @inline(__always)
    package func previousReply(slot: Int, receive: UInt64) -> NTPPreviousReply {
        guard receive != 0, UnsafeAtomic<UInt64>(at: words + 2 * slot).load(ordering: .relaxed) == receive else { return .unknown }
        let word = UnsafeAtomic<UInt64>(at: words + 2 * slot + 1).load(ordering: .relaxed)
        guard UInt32(truncatingIfNeeded: word >> 32) == UInt32(truncatingIfNeeded: receive) else { return .transmitPending }
        let delta = Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: word)))
        return .transmitted(receive &+ UInt64(bitPattern: delta))
    }

    /// The transmit timestamp of the reply whose receive timestamp was `receive`, if slot
    /// `slot` still holds that reply and its transmit time is known.
    package func transmitTimestamp(slot: Int, receive: UInt64) -> UInt64? {
        if case .transmitted(let transmit) = previousReply(slot: slot, receive: receive) { return transmit }
        return nil
    }

    /// Records a reply with receive timestamp `receive` (odd) in `slot`; its transmit time is
    /// unknown until `setTransmitTimestamp`.
    @inline(__always)
    package func record(receive: UInt64, slot: Int) {
        UnsafeAtomic<UInt64>(at: words + 2 * slot + 1).store(0, ordering: .relaxed)
        UnsafeAtomic<UInt64>(at: words + 2 * slot).store(receive, ordering: .relaxed)
    }

    /// Stores the transmit timestamp of the reply with receive timestamp `receive` in `slot`,
    /// if the slot still holds that reply and the two are within ±0.5 s. Returns whether it did.
    @inline(__always)
    @discardableResult
    package func setTransmitTimestamp(_ transmit: UInt64, slot: Int, receive: UInt64) -> Bool {
        let delta = Int64(bitPattern: transmit &- receive)
        guard delta >= Int64(Int32.min), delta <= Int64(Int32.max),
              UnsafeAtomic<UInt64>(at: words + 2 * slot).load(ordering: .relaxed) == receive
        else { return false }
        let word = UInt64(UInt32(truncatingIfNeeded: receive)) << 32 | UInt64(UInt32(bitPattern: Int32(delta)))
        UnsafeAtomic<UInt64>(at: words + 2 * slot + 1).store(word, ordering: .relaxed)
        return true
    }

    /// Slots holding a reply (a scan; for statistics and tests, not the packet path).
    package var occupied: Int {
        var n = 0
        for i in 0..<capacity where UnsafeAtomic<UInt64>(at: words + 2 * i).load(ordering: .relaxed) != 0 { n += 1 }
        return n
    }
}

/// One worker's view of the shared `InterleavedClientLog`, as the core's `NTPInterleavedLog`:
/// it also remembers the slot of the address it looked up or recorded last, so a request that
/// is looked up and then recorded hashes its address once, and the responder can match the
/// reply's kernel transmit timestamp to that slot once it is sent.
struct InterleavedLogView: NTPInterleavedLog {
    let log: InterleavedClientLog
    /// The address (without its port) last looked up or recorded, and its slot.
    private var lastHigh: UInt64 = 0
    private var lastLow: UInt64 = 0
    private(set) var lastSlot = -1

    init(_ log: InterleavedClientLog) {
        self.log = log
    }

    /// `client`'s slot, hashed only when the address differs from the last one.
    @inline(__always)
    private mutating func slot(of client: ClientAddress) -> Int {
        if lastSlot < 0 || client.high != lastHigh || client.low != lastLow {
            lastHigh = client.high
            lastLow = client.low
            lastSlot = log.slot(of: client)
        }
        return lastSlot
    }

    @inline(__always)
    mutating func previousReply(of client: ClientAddress, previousReceive: UInt64) -> NTPPreviousReply {
        log.previousReply(slot: slot(of: client), receive: previousReceive)
    }

    @inline(__always)
    mutating func replied(to client: ClientAddress, receive: UInt64) -> Int {
        let slot = slot(of: client)
        log.record(receive: receive, slot: slot)
        return slot
    }
}

/// One worker's replies waiting for their kernel transmit timestamps: a ring indexed by the
/// socket's datagram number (`SOF_TIMESTAMPING_OPT_ID`), each entry the log slot and receive
/// timestamp of the reply, and the time read just before it was sent (a lower bound for the
/// kernel's timestamp, which a report must respect to be believed).
///
/// Owned by one worker thread; allocated once. `@unchecked Sendable` for that reason: the
/// responder holding it is built on the listener's thread and then used only by its worker.
final class PendingTransmits: @unchecked Sendable {
    static let capacity = 1024
    private let ids: UnsafeMutablePointer<UInt32>
    private let slots: UnsafeMutablePointer<Int>
    private let receives: UnsafeMutablePointer<UInt64>
    private let sentAfter: UnsafeMutablePointer<Int64>
    /// Replies registered whose timestamps have not come back (an estimate: lost reports are
    /// forgotten by `settle`).
    private(set) var outstanding = 0

    init() {
        ids = .allocate(capacity: Self.capacity)
        ids.initialize(repeating: 0, count: Self.capacity)
        slots = .allocate(capacity: Self.capacity)
        slots.initialize(repeating: 0, count: Self.capacity)
        receives = .allocate(capacity: Self.capacity)
        receives.initialize(repeating: 0, count: Self.capacity)
        sentAfter = .allocate(capacity: Self.capacity)
        sentAfter.initialize(repeating: 0, count: Self.capacity)
    }

    deinit {
        ids.deallocate()
        slots.deallocate()
        receives.deallocate()
        sentAfter.deallocate()
    }

    /// Datagram `id` is the reply recorded in `slot` with `receive`, sent after `sentAfter`
    /// (nanoseconds since the Unix epoch).
    @inline(__always)
    func add(id: UInt32, slot: Int, receive: UInt64, sentAfter time: Int64) {
        let i = Int(id) & (Self.capacity - 1)
        ids[i] = id
        slots[i] = slot
        receives[i] = receive
        sentAfter[i] = time
        outstanding = min(outstanding + 1, Self.capacity)
    }

    /// The entry of datagram `id`, if its timestamp `time` (nanoseconds since the Unix epoch)
    /// is plausible: not before the time read before the send, and within a second of it.
    /// Taken out of the ring unless `keep` (a software timestamp where the card's own is still
    /// to come, and replaces it).
    @inline(__always)
    func take(id: UInt32, time: Int64, keep: Bool = false) -> (slot: Int, receive: UInt64)? {
        let i = Int(id) & (Self.capacity - 1)
        guard ids[i] == id, receives[i] != 0 else { return nil }
        let receive = receives[i]
        if !keep {
            receives[i] = 0
            outstanding = max(0, outstanding - 1)
        }
        let late = time - sentAfter[i]
        guard late >= 0, late < 1_000_000_000 else { return nil }
        return (slots[i], receive)
    }

    /// Forgets every entry: the datagram numbers can no longer be trusted.
    func forgetAll() {
        for i in 0..<Self.capacity { receives[i] = 0 }
        outstanding = 0
    }

    /// Stops waiting for reports a read found missing.
    func settle() {
        outstanding = 0
    }
}
