import Glibc
import TockProtocol
import TockSockets

/// NTP's send path on the datagram engine: what NTP needs beyond a send of replies as written.
///
/// Timestamps (what T2 and T3 mean):
/// - T2 (receive) is the kernel's software receive timestamp (SCM_TIMESTAMPING): taken when
///   the network stack received the packet, before it waited in the socket buffer, so a
///   backlog does not make T2 late. If the kernel supplies none, the time recvmmsg returned.
///   With `--hw-timestamping`, a packet the card timestamped has T2 from the card's clock,
///   converted to system time (`CachedHardwareClocks`).
/// - T3 (transmit) is read immediately before each sendmmsg call, which sends at most
///   `DatagramBatch.sendChunk` replies, so no reply leaves long after its transmit time was
///   taken, and moved to when the reply most likely leaves: by the chunk's NTS seals and the
///   measured send delay of its place in the chunk (`TransmitDelaySampler`).
/// - On a socket with transmit timestamps (NTP's interleaved mode, RFC 9769), replies to
///   clients in interleaved mode ask the kernel, with a control message of their own, to
///   report when they left (SO_TIMESTAMPING, software; the card's too in hardware mode); other
///   replies carry no request and cost no timestamp. Those sends are numbered as the kernel
///   numbers them (SOF_TIMESTAMPING_OPT_ID counts only datagrams that asked), each number
///   matched to the log entry the core's action named, and after a batch that sent any the
///   error queue is read once (one recvmmsg) to put each timestamp in the client log. Reports
///   that arrive later (a NIC driver that stamps after sendmmsg returned) are read before the
///   next batch is decided. A card's timestamp replaces the software one with the same number.
///
/// A value of the worker's responder, so its counters and estimates are plain stored
/// properties (no exclusivity checks on the packet path); the per-slot buffers and the
/// error-queue reader are allocated once, in classes it holds. `@unchecked Sendable`: built
/// on the listener's thread, then used only by its worker.
struct NTPSendPath: @unchecked Sendable {
    /// What a queued reply still needs, from the core's `NTPReplyKind`.
    enum Work: Equatable {
        /// Sent as written (a kiss-o'-death).
        case asWritten
        /// T3 stamped just before the send (`NTPServer.stampTransmitTime`).
        case stamp
        /// T3 stamped, then sealed (NTS, RFC 8915 §5.7: the AEAD covers T3).
        case seal
        /// Stamped, and its kernel transmit timestamp put in this log entry (a basic reply to a
        /// client asking for interleaved mode, whose next request can then be answered so).
        case stampAndRecord(NTPLogEntry)
        /// Sent as written (its T3 is the kernel's of the previous reply), and its own kernel
        /// transmit timestamp put in this log entry (an interleaved reply).
        case record(NTPLogEntry)

        init(_ kind: NTPReplyKind) {
            switch kind {
            case .time: self = .stamp
            case .authenticatedTime: self = .seal
            case .timeForInterleavedClient(let entry): self = .stampAndRecord(entry)
            case .interleavedTime(let entry): self = .record(entry)
            case .kissOfDeath: self = .asWritten
            }
        }

        /// Whether T3 is written (and for NTS the reply sealed) just before its send.
        @inline(__always)
        var isFinishedBeforeSending: Bool {
            switch self {
            case .stamp, .seal, .stampAndRecord: true
            case .asWritten, .record: false
            }
        }

        /// The log entry that wants this reply's kernel transmit timestamp.
        @inline(__always)
        var logEntry: NTPLogEntry? {
            switch self {
            case .stampAndRecord(let entry), .record(let entry): entry
            case .asWritten, .stamp, .seal: nil
            }
        }
    }

    let fd: Int32
    /// Whether the socket reports kernel transmit timestamps.
    let transmitTimestamps: Bool
    /// Each queued reply's work and needs, by queue slot.
    private let slots: NTPSendSlots
    /// The socket's error-queue reader.
    private let reports: TransmitReportReader
    /// The number the kernel gives the next datagram this socket sends with a timestamp
    /// request (datagrams sent without one take no number).
    private var nextID: UInt32 = 0
    /// Replies waiting for their kernel transmit timestamps (interleaved mode only).
    private let pending: PendingTransmits?
    private var sampler = TransmitDelaySampler()
    private var hardware: CachedHardwareClocks

    init(socket: DatagramSocket, interleaved: Bool, batchSize: Int) {
        fd = socket.fd
        transmitTimestamps = socket.transmitTimestamps
        slots = NTPSendSlots(capacity: batchSize)
        reports = TransmitReportReader(capacity: socket.transmitTimestamps ? batchSize : 1)
        pending = interleaved ? PendingTransmits() : nil
        hardware = CachedHardwareClocks(socket.hardwareClocks?.isActive == true ? socket.hardwareClocks : nil)
    }

    /// Before a batch is decided: the cards' clock fits, and the transmit timestamps the
    /// previous batch's replies are still waiting for (so this batch's interleaved replies can
    /// carry them).
    @inline(__always)
    mutating func beginBatch(now: UTCInstant, log: InterleavedClientLog?, totals: borrowing DatagramCounters.Totals) {
        if hardware.isActive { hardware.refresh() }
        if transmitTimestamps, let pending, pending.outstanding > 0 {
            if readTransmitTimestamps(log: log, now: now, totals: totals) == 0 { pending.settle() }
        }
        sampler.slot = -1
    }

    /// T2 of a datagram about to be decided into queue slot `slot`: the card's, when it took
    /// one and its clock can be trusted, else the kernel's software time, else the batch's.
    @inline(__always)
    func receiveTime(_ control: ReceivedControl, slot: Int, batchTime: UTCInstant, totals: borrowing DatagramCounters.Totals) -> UTCInstant {
        let software = control.receiveTime ?? batchTime
        guard hardware.isActive else { return software }
        slots.replyInterfaces[slot] = CachedHardwareClocks.interface(of: control)
        guard let card = hardware.receiveTime(control, software: software, now: batchTime) else { return software }
        totals.add(1, to: .hardwareReceiveTimestamps)
        return card
    }

    /// Notes the work of the reply queued in `slot`, and whether it asks for its kernel
    /// transmit timestamp: replies for the client log, and every `interval`-th basic reply for
    /// the send-delay sample.
    @inline(__always)
    mutating func queue(_ work: Work, slot: Int, totals: borrowing DatagramCounters.Totals) {
        slots.work[slot] = work
        var stamp = false
        switch work {
        case .seal:
            totals.add(1, to: .authenticated)
        case .record:
            totals.add(1, to: .interleaved)
        case .asWritten, .stamp, .stampAndRecord:
            break
        }
        if transmitTimestamps {
            stamp = work.logEntry != nil
            if work == .stamp || work == .seal, sampler.due() {
                sampler.slot = slot
                stamp = true
            }
        }
        slots.stampRequested[slot] = stamp
    }

    /// A reply queued in `slot` that is sent as written and asks for nothing.
    @inline(__always)
    func queue(_ work: Work, slot: Int) {
        slots.work[slot] = work
        slots.stampRequested[slot] = false
    }

    /// Sends the queued replies in chunks of `DatagramBatch.sendChunk`, stamping each chunk's
    /// replies with a fresh T3 just before its sendmmsg (`finish`: stamp, or stamp and seal): a
    /// reply waits for at most one chunk's sends after its transmit time is taken, not the
    /// whole batch's. Then reads the transmit timestamps of what it sent, if any.
    ///
    /// A failed send of a datagram that asked for a timestamp may or may not have used a number
    /// (the kernel numbers a datagram once it is built, and some sends fail after that), so
    /// after one it reads what the queue holds, restarts the kernel's count at 0 and forgets the
    /// replies still waiting: those clients get one more basic reply. A failed send without the
    /// request cannot have used a number.
    @inline(__always)
    mutating func send(
        _ batch: inout DatagramBatch, log: InterleavedClientLog?,
        finish: (Work, UTCInstant, UnsafeMutableRawBufferPointer, Int) -> Void,
        totals: borrowing DatagramCounters.Totals
    ) {
        let (work, stampRequested, replyInterfaces, interfaces) = (slots.work, slots.stampRequested, slots.replyInterfaces, slots.interfaces)
        let replies = batch.queued
        var sent = 0
        var stamped = 0
        var timestamped = 0
        var transmitTime = UTCInstant(nanosecondsSinceUnixEpoch: 0)
        // The last clock reading before the chunk's sendmmsg: after its seals, if any.
        var sendReading = transmitTime
        var chunkStart = 0
        while sent < replies {
            if stamped == sent {
                chunkStart = sent
                stamped = min(replies, sent + DatagramBatch.sendChunk)
                for j in sent..<stamped where stampRequested[j] {
                    batch.requestTransmitTimestamp(j, hardware: hardware.isActive && work[j].logEntry != nil)
                }
                transmitTime = SystemClock.now()
                // T3 where each reply most likely leaves: the reading, plus the time the
                // chunk's NTS seals will take, plus the delay from the last reading to the
                // kernel's transmit timestamp for its place in the chunk (`NTPTransmitDelay`;
                // the fourth datagram of a sendmmsg leaves after three).
                var sealing: Int64 = 0
                for j in sent..<stamped where work[j] == .seal {
                    sealing += sampler.sealTime(length: batch.queuedDatagram(j).count)
                }
                sendReading = transmitTime
                for j in sent..<stamped where work[j].isFinishedBeforeSending {
                    let length = batch.queuedDatagram(j).count
                    let departure = UTCInstant(nanosecondsSinceUnixEpoch: transmitTime.nanosecondsSinceUnixEpoch + sealing + sampler.correction(position: j - sent))
                    finish(work[j], departure, batch.sendBuffer(j), length)
                    if work[j] == .seal {
                        let sealed = SystemClock.now()
                        sampler.sealed(length: length, nanoseconds: sealed.nanoseconds(since: sendReading))
                        sendReading = sealed
                    }
                }
            }
            let rc = batch.send(on: fd, from: sent, count: stamped - sent)
            if rc > 0 {
                if transmitTimestamps {
                    for j in sent..<(sent + rc) where stampRequested[j] {
                        if j == sampler.slot {
                            sampler.sent(id: nextID, readAt: sendReading, position: j - chunkStart)
                        } else if let entry = work[j].logEntry {
                            pending?.add(id: nextID, slot: entry.entry, receive: entry.receive, sentAfter: transmitTime.nanosecondsSinceUnixEpoch)
                        }
                        if hardware.isActive { interfaces[Int(nextID) & (PendingTransmits.capacity - 1)] = replyInterfaces[j] }
                        nextID &+= 1
                        timestamped += 1
                    }
                }
                sent += rc
                totals.add(UInt64(rc), to: .replied)
            } else {
                if rc < 0, errno == EINTR { continue }
                // The first remaining reply failed (ENOBUFS, EPERM from a firewall, a
                // vanished address): count it and go on with the rest.
                totals.add(1, to: .sendErrors)
                let failedStamp = stampRequested[sent]
                sent += 1
                if transmitTimestamps, failedStamp {
                    _ = readTransmitTimestamps(log: log, now: transmitTime, totals: totals)
                    pending?.forgetAll()
                    sampler.forget()
                    nextID = 0
                    _ = TransmitTimestampQueue.enable(on: fd, hardware: hardware.isActive)
                }
            }
        }
        if timestamped > 0 {
            _ = readTransmitTimestamps(log: log, now: transmitTime, totals: totals)
        }
    }

    /// One read of the error queue: puts each transmit timestamp in the client log (a card's,
    /// converted, after the software one it replaces), and the sampled reply's software one in
    /// the delay estimate. Returns the number of reports read.
    @inline(__always)
    private mutating func readTransmitTimestamps(log: InterleavedClientLog?, now: UTCInstant, totals: borrowing DatagramCounters.Totals) -> Int {
        let interfaces = slots.interfaces
        let hardware = self.hardware
        let pending = self.pending
        return reports.queue.drainReports(fd) { report in
            if let time = report.software {
                if let delay = sampler.take(id: report.id, time: time) {
                    totals.add(1, to: .transmitDelaySamples)
                    totals.add(UInt64(delay), to: .transmitDelayNanoseconds)
                }
                _ = Self.record(time, of: report.id, final: !hardware.isActive, pending: pending, log: log)
            } else if let time = hardware.systemTime(hardware: report.hardware, interface: interfaces[Int(report.id) & (PendingTransmits.capacity - 1)], receive: false, now: now),
                      Self.record(time, of: report.id, final: true, pending: pending, log: log) {
                totals.add(1, to: .hardwareTransmitTimestamps)
            }
        }
    }

    /// Puts transmit timestamp `time` of datagram `id` in the client log entry that waits for
    /// it; `final` is false for a software timestamp when the card's is still to come (it is
    /// used until then). Returns whether an entry took it.
    @inline(__always)
    private static func record(_ time: UTCInstant, of id: UInt32, final: Bool, pending: PendingTransmits?, log: InterleavedClientLog?) -> Bool {
        guard let pending, let log, let entry = pending.take(id: id, time: time.nanosecondsSinceUnixEpoch, keep: !final) else { return false }
        return log.setTransmitTimestamp(NTPTimestamp(time).rawValue, slot: entry.slot, receive: entry.receive)
    }
}

/// The per-slot state of `NTPSendPath`, allocated once per worker.
final class NTPSendSlots {
    /// Each queued reply's work, by queue slot.
    let work: UnsafeMutableBufferPointer<NTPSendPath.Work>
    /// Whether a queued reply asks for its kernel transmit timestamp, by queue slot.
    let stampRequested: UnsafeMutableBufferPointer<Bool>
    /// The interface each queued reply answers a request from: the card whose clock its
    /// hardware transmit timestamp will be on.
    let replyInterfaces: UnsafeMutableBufferPointer<UInt32>
    /// The interface each recent timestamped datagram answered a request from, by number (a
    /// ring as long as `PendingTransmits`'): the kernel's timestamp-only reports do not say
    /// which card took a hardware timestamp.
    let interfaces: UnsafeMutableBufferPointer<UInt32>

    init(capacity: Int) {
        work = .allocate(capacity: capacity)
        work.initialize(repeating: .asWritten)
        stampRequested = .allocate(capacity: capacity)
        stampRequested.initialize(repeating: false)
        replyInterfaces = .allocate(capacity: capacity)
        replyInterfaces.initialize(repeating: 0)
        interfaces = .allocate(capacity: PendingTransmits.capacity)
        interfaces.initialize(repeating: 0)
    }

    deinit {
        work.deallocate()
        stampRequested.deallocate()
        replyInterfaces.deallocate()
        interfaces.deallocate()
    }
}

/// A socket's error-queue reader (`TransmitTimestampQueue`), allocated once per worker.
final class TransmitReportReader {
    var queue: TransmitTimestampQueue

    init(capacity: Int) {
        queue = TransmitTimestampQueue(capacity: capacity)
    }
}

/// The sample of basic-mode replies whose kernel transmit timestamps keep the send delays
/// (`NTPTransmitDelay`) current, one estimate per place in a sendmmsg chunk: every
/// `interval`-th time reply (plain or NTS) asks the kernel for its timestamp (one
/// error-queue read per sample, so basic traffic pays almost nothing), at most one at a time.
///
/// NTS replies are sealed after their T3 is written (RFC 8915 §5.7: the AEAD covers it),
/// and a chunk leaves only once all its replies are sealed, so every reply of a chunk also
/// leaves after the chunk's seals. Each seal is timed (one clock read after it), and the
/// fastest of the recent seals of replies of its size (`sealTime`) is added to the T3 of
/// every reply in a chunk that holds such a reply. A sample's delay is counted from the
/// clock read after the chunk's seals, so the send-delay estimate stays the same for plain
/// and NTS replies.
struct TransmitDelaySampler {
    /// Basic-mode replies (plain or NTS) per sample.
    static var interval: Int { 64 }
    /// Places in a chunk: replies per sendmmsg.
    static var positions: Int { 4 }
    private var estimates = InlineArray<4, NTPTransmitDelay>(repeating: NTPTransmitDelay())
    /// Seal times by reply size, `sizeClass` bytes a class.
    private var seals = InlineArray<8, NTPTransmitDelay>(repeating: NTPTransmitDelay())
    /// Bytes per seal-time size class (an NTS reply grows by 104 bytes a cookie).
    static var sizeClass: Int { 128 }
    private var pendingPosition = 0
    /// The queue slot of this batch's sampled reply, or -1.
    var slot = -1
    private var countdown = 1
    /// The datagram number and clock reading of the sample awaiting its timestamp.
    private var pendingID: UInt32 = 0
    private var pendingReadAt: Int64 = 0
    private var pending = false

    /// Whether this reply is the next sample (the first reply, then every `interval`-th; one
    /// per batch). A sample whose report has not come by then is given up.
    @inline(__always)
    mutating func due() -> Bool {
        countdown -= 1
        guard countdown <= 0, slot < 0 else { return false }
        countdown = Self.interval
        pending = false
        return true
    }

    /// The correction for the reply at `position` in its chunk, nanoseconds: the largest
    /// estimate of its place or an earlier one (a later place never leaves sooner), 0
    /// before any.
    @inline(__always)
    func correction(position: Int) -> Int64 {
        var value: Int64 = 0
        for i in 0...min(max(0, position), Self.positions - 1) { value = max(value, estimates[i].nanoseconds) }
        return value
    }

    /// The time sealing a reply of `length` bytes most likely takes, nanoseconds: the fastest
    /// of the recent seals of its size, 0 before three are in.
    @inline(__always)
    func sealTime(length: Int) -> Int64 {
        seals[min(7, max(0, length / Self.sizeClass))].nanoseconds
    }

    /// Sealing a reply of `length` bytes took `nanoseconds`.
    @inline(__always)
    mutating func sealed(length: Int, nanoseconds: Int64) {
        seals[min(7, max(0, length / Self.sizeClass))].record(nanoseconds)
    }

    /// The sample left as datagram `id`, at `position` in its chunk, the clock read last
    /// before its sendmmsg at `readAt`.
    @inline(__always)
    mutating func sent(id: UInt32, readAt: UTCInstant, position: Int) {
        pendingPosition = min(max(0, position), Self.positions - 1)
        pendingID = id
        pendingReadAt = readAt.nanosecondsSinceUnixEpoch
        pending = true
    }

    /// If `id` is the sample's, its delay (timestamp − reading, nanoseconds) after adding it
    /// to the estimate; nil for other datagrams' timestamps and unbelievable delays.
    @inline(__always)
    mutating func take(id: UInt32, time: UTCInstant) -> Int64? {
        guard pending, id == pendingID else { return nil }
        pending = false
        let delay = time.nanosecondsSinceUnixEpoch - pendingReadAt
        return estimates[pendingPosition].record(delay) ? delay : nil
    }

    /// Forgets the sample in flight (the datagram numbers can no longer be trusted).
    mutating func forget() {
        pending = false
    }
}
