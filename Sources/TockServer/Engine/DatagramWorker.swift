import Atomics
import CTockShims
import Glibc
import TockProtocol
import TockSockets

/// One thread's receive–decide–send loop on one UDP socket.
///
/// State the thread owns, allocated once when it starts and reused for every batch: a
/// `DatagramBatch` (buffers, addresses, control space, iovecs and message headers), the
/// per-reply stamping flags, the counters' running totals, and its own copy of the responder.
/// Nothing on the loop allocates, locks, logs or formats.
///
/// Timestamps (what T2 and T3 mean):
/// - T2 (receive) is the kernel's software receive timestamp (`SO_TIMESTAMPNS`): taken when
///   the network stack received the packet, before it waited in the socket buffer, so a
///   backlog does not make T2 late. If the kernel supplies none, the time recvmmsg returned.
/// - T3 (transmit) is read immediately before each sendmmsg call, which sends at most
///   `sendChunk` replies, so no reply leaves long after its transmit time was taken, and moved
///   to when the reply most likely leaves: by the chunk's NTS seals and the measured send
///   delay of its place in the chunk (`TransmitDelaySampler`).
/// - With `transmitTimestamps` (NTP's interleaved mode, RFC 9769), the replies whose kind
///   `wantsTransmitTimestamp` (those to clients in interleaved mode) ask the kernel, with a
///   control message of their own, to report when they left (SO_TIMESTAMPING, software); other
///   replies carry no request and cost no timestamp. The worker numbers those timestamped sends as the kernel
///   does (SOF_TIMESTAMPING_OPT_ID counts only datagrams that asked), tells the responder which
///   reply got which number, and after a batch that sent any reads the error queue once (one
///   recvmmsg) to hand the responder each number's timestamp. Reports that arrive later (a NIC
///   driver that stamps after sendmmsg returned) are read before the next batch is decided.
/// - With `hardwareClocks` (`--hw-timestamping`), a packet the card timestamped has T2 from
///   the card's clock, converted to system time (`CachedHardwareClocks`), and an interleaved
///   reply asks the card for its transmit timestamp too: the kernel reports it after the
///   software one, with the same number, and it replaces that one in the client log. Packets
///   and replies the card did not timestamp keep the software timestamps.
struct DatagramWorker<Responder: DatagramResponder>: Sendable {
    static var batchSize: Int { 64 }
    /// Datagrams larger than this are counted as oversized and dropped; NTP requests with
    /// extension fields stay well below it.
    static var receiveBufferSize: Int { 2048 }
    /// Replies sent per sendmmsg call, each chunk stamped with a fresh T3 just before it.
    static var sendChunk: Int { TransmitDelaySampler.positions }

    let fd: Int32
    let isIPv6: Bool
    /// Whether to answer from the request's destination address (the socket is bound to a
    /// wildcard address).
    let answerFromDestination: Bool
    let responder: Responder
    let counters: DatagramCounters
    let stopping: ManagedAtomic<Bool>
    /// Whether the socket reports kernel transmit timestamps (`TransmitTimestampQueue.enable`
    /// was called on it, and no other worker sends on it: the datagram numbers are per socket).
    var transmitTimestamps = false
    /// The cards' clocks, when the socket asks for hardware timestamps.
    var hardwareClocks: HardwareClocks?

    /// Runs until `stopping` is set; the socket's receive timeout bounds how long that takes.
    func run() {
        var responder = self.responder
        var batch = DatagramBatch(capacity: Self.batchSize, receiveBufferSize: Self.receiveBufferSize, sendBufferSize: responder.replyCapacity)
        let totals = DatagramCounters.Totals()
        // What each queued reply still needs before it leaves (T3, and for NTS the seal).
        let kinds = UnsafeMutableBufferPointer<DatagramReplyKind>.allocate(capacity: Self.batchSize)
        kinds.initialize(repeating: .complete)
        defer { kinds.deallocate() }
        // The deferred replies of a batch, in the order `respond` deferred them: their slots'
        // buffers and the lengths `endBatch` writes.
        let deferredSlots = UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>.allocate(capacity: Self.batchSize)
        deferredSlots.initialize(repeating: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        let deferredLengths = UnsafeMutableBufferPointer<Int>.allocate(capacity: Self.batchSize)
        deferredLengths.initialize(repeating: 0)
        defer {
            deferredSlots.deallocate()
            deferredLengths.deallocate()
        }
        // The interface each queued reply answers a request from: the card whose clock its
        // hardware transmit timestamp will be on.
        let replyInterfaces = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: Self.batchSize)
        replyInterfaces.initialize(repeating: 0)
        defer { replyInterfaces.deallocate() }
        var transmits = TransmitState(queue: TransmitTimestampQueue(capacity: transmitTimestamps ? Self.batchSize : 1))
        var sampler = TransmitDelaySampler()
        var hardware = CachedHardwareClocks(hardwareClocks)

        while !stopping.load(ordering: .relaxed) {
            let received = batch.receive(from: fd, flags: tock_MSG_WAITFORONE)
            if received <= 0 {
                let e = errno
                if received < 0, e != EAGAIN, e != EWOULDBLOCK, e != EINTR {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED); survive them.
                    totals.add(1, to: .receiveErrors)
                    counters.publish(totals)
                }
                continue
            }
            let batchTime = SystemClock.now()
            if hardware.isActive { hardware.refresh() }
            if transmitTimestamps, responder.awaitsTransmitTimestamps {
                if readTransmitTimestamps(&transmits, sampler: &sampler, hardware: hardware, now: batchTime, responder: &responder, totals: totals) == 0 { responder.settleTransmits() }
            }
            responder.beginBatch(now: batchTime)
            batch.clearQueue()
            sampler.slot = -1
            var deferred = 0
            for i in 0..<received {
                if batch.isTruncated(at: i) {
                    totals.drop(.oversized)
                    continue
                }
                let control = batch.control(at: i)
                let slot = batch.queued
                var receiveTime = control.receiveTime ?? batchTime
                if hardware.isActive {
                    replyInterfaces[slot] = CachedHardwareClocks.interface(of: control)
                    if let card = hardware.receiveTime(control, software: receiveTime, now: batchTime) {
                        receiveTime = card
                        totals.add(1, to: .hardwareReceiveTimestamps)
                    }
                }
                let verdict = responder.respond(
                    to: batch.bytes(at: i),
                    from: batch.source(at: i),
                    receiveTime: receiveTime,
                    reply: batch.sendBuffer(slot)
                )
                switch verdict {
                case .ignore(let reason):
                    totals.drop(reason)
                case .kiss(let length, let reason):
                    totals.kiss(reason)
                    kinds[slot] = .kissOfDeath
                    batch.queueReply(length: length, to: i, from: control.destination, answerFromDestination: answerFromDestination, isIPv6: isIPv6)
                case .send(let length, let kind):
                    if kind == .authenticated { totals.add(1, to: .authenticated) }
                    if kind == .interleaved { totals.add(1, to: .interleaved) }
                    kinds[slot] = kind
                    var stamp = transmitTimestamps && kind.wantsTransmitTimestamp
                    if transmitTimestamps, kind == .timestamped || kind == .authenticated, sampler.due() {
                        sampler.slot = slot
                        stamp = true
                    }
                    batch.queueReply(
                        length: length, to: i, from: control.destination, answerFromDestination: answerFromDestination, isIPv6: isIPv6,
                        requestTransmitTimestamp: stamp, hardware: hardware.isActive && kind.wantsTransmitTimestamp
                    )
                case .deferred:
                    kinds[slot] = .deferred
                    deferredSlots[deferred] = batch.sendBuffer(slot)
                    deferred += 1
                    batch.queueReply(length: 0, to: i, from: control.destination, answerFromDestination: answerFromDestination, isIPv6: isIPv6)
                }
            }
            if deferred > 0 {
                endBatch(&batch, deferred: deferred, kinds: kinds, slots: deferredSlots, lengths: deferredLengths, responder: &responder, totals: totals)
            }
            totals.add(UInt64(received), to: .received)
            let timestamped = send(&batch, kinds: kinds, responder: &responder, transmits: &transmits, sampler: &sampler, hardware: hardware, replyInterfaces: replyInterfaces, totals: totals)
            if timestamped > 0 {
                _ = readTransmitTimestamps(&transmits, sampler: &sampler, hardware: hardware, now: batchTime, responder: &responder, totals: totals)
            }
            counters.publish(totals)
        }
        counters.publish(totals)
    }

    /// Lets the responder write its `deferred` replies, then sets their lengths; if it drops
    /// them instead, takes them out of the queue (keeping the others in order) and counts them.
    private func endBatch(
        _ batch: inout DatagramBatch, deferred: Int, kinds: UnsafeMutableBufferPointer<DatagramReplyKind>,
        slots: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>,
        responder: inout Responder, totals: borrowing DatagramCounters.Totals
    ) {
        for k in 0..<deferred { lengths[k] = 0 }
        let outcome = responder.endBatch(slots: UnsafeBufferPointer(rebasing: slots[0..<deferred]), lengths: UnsafeMutableBufferPointer(rebasing: lengths[0..<deferred]))
        var dropped: DropReason?
        switch outcome {
        case .written(let signatures):
            totals.add(UInt64(signatures), to: .signatures)
            totals.deferredBatch(deferred)
        case .dropped(let reason):
            dropped = reason
        }
        var k = 0
        var kept = 0
        for j in 0..<batch.queued {
            if kinds[j] == .deferred {
                let length = dropped == nil ? lengths[k] : 0
                k += 1
                guard length > 0 else {
                    totals.drop(dropped ?? .roughtimeInternal)
                    continue
                }
                batch.setQueuedLength(j, length)
                kinds[j] = .complete
            }
            if kept != j {
                batch.moveQueued(from: j, to: kept)
                kinds[kept] = kinds[j]
            }
            kept += 1
        }
        batch.truncateQueue(to: kept)
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

    /// The worker's side of kernel transmit timestamps: the error-queue reader and its mirror of
    /// the socket's counter of timestamped datagrams (`SOF_TIMESTAMPING_OPT_ID`).
    struct TransmitState: ~Copyable {
        var queue: TransmitTimestampQueue
        /// The number the kernel gives the next datagram this socket sends with a timestamp
        /// request (datagrams sent without one take no number).
        var nextID: UInt32 = 0
        /// The interface each recent timestamped datagram answered a request from, by number
        /// (a ring as long as the responder's): the kernel's timestamp-only reports do not say
        /// which card took a hardware timestamp.
        let interfaces: UnsafeMutableBufferPointer<UInt32>

        init(queue: consuming TransmitTimestampQueue) {
            self.queue = queue
            interfaces = .allocate(capacity: PendingTransmits.capacity)
            interfaces.initialize(repeating: 0)
        }

        deinit {
            interfaces.deallocate()
        }

        @inline(__always)
        func setInterface(_ interface: UInt32, of id: UInt32) {
            interfaces[Int(id) & (PendingTransmits.capacity - 1)] = interface
        }

        /// The interface datagram `id` answered from, in `interfaces` (read while the queue is
        /// being drained).
        @inline(__always)
        static func interface(of id: UInt32, in interfaces: UnsafeMutableBufferPointer<UInt32>) -> UInt32 {
            interfaces[Int(id) & (PendingTransmits.capacity - 1)]
        }
    }

    /// One read of the error queue: hands each transmit timestamp to the responder (a card's,
    /// converted, after the software one it replaces), and the sampled reply's software one to
    /// the delay estimate. Returns the number of reports read.
    @inline(__always)
    private func readTransmitTimestamps(
        _ transmits: inout TransmitState, sampler: inout TransmitDelaySampler, hardware: borrowing CachedHardwareClocks, now: UTCInstant,
        responder: inout Responder, totals: borrowing DatagramCounters.Totals
    ) -> Int {
        let interfaces = transmits.interfaces
        return transmits.queue.drainReports(fd) { report in
            if let time = report.software {
                if let delay = sampler.take(id: report.id, time: time) {
                    totals.add(1, to: .transmitDelaySamples)
                    totals.add(UInt64(delay), to: .transmitDelayNanoseconds)
                }
                responder.transmitTimestamp(id: report.id, time: time, final: !hardware.isActive)
            } else if let time = hardware.systemTime(hardware: report.hardware, interface: TransmitState.interface(of: report.id, in: interfaces), receive: false, now: now),
                      responder.transmitTimestamp(id: report.id, time: time, final: true) {
                totals.add(1, to: .hardwareTransmitTimestamps)
            }
        }
    }

    /// Sends the queued replies in chunks of `sendChunk`, stamping each chunk's timestamped
    /// replies with a fresh T3 just before its sendmmsg: a reply waits for at most one chunk's
    /// sends after its transmit time is taken, not the whole batch's.
    ///
    /// With transmit timestamps, each datagram sent with a timestamp request is reported to the
    /// responder with the number the kernel gave it; returns how many were sent (so 0 on a
    /// socket without transmit timestamps). A failed send of such a datagram may or may not
    /// have used a number (the kernel numbers a datagram once it is built, and some sends fail
    /// after that), so after one the worker reads what the queue holds, restarts the kernel's
    /// count at 0 and has the responder forget the replies still waiting: those clients get
    /// one more basic reply. A failed send without the request cannot have used a number.
    @inline(__always)
    private func send(
        _ batch: inout DatagramBatch, kinds: UnsafeMutableBufferPointer<DatagramReplyKind>, responder: inout Responder, transmits: inout TransmitState,
        sampler: inout TransmitDelaySampler, hardware: borrowing CachedHardwareClocks, replyInterfaces: UnsafeMutableBufferPointer<UInt32>,
        totals: borrowing DatagramCounters.Totals
    ) -> Int {
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
                stamped = min(replies, sent + Self.sendChunk)
                transmitTime = SystemClock.now()
                // T3 where each reply most likely leaves: the reading, plus the time the
                // chunk's NTS seals will take, plus the delay from the last reading to the
                // kernel's transmit timestamp for its place in the chunk (`NTPTransmitDelay`;
                // the fourth datagram of a sendmmsg leaves after three).
                var sealing: Int64 = 0
                for j in sent..<stamped where kinds[j] == .authenticated {
                    sealing += sampler.sealTime(length: batch.queuedDatagram(j).count)
                }
                sendReading = transmitTime
                for j in sent..<stamped where kinds[j].isFinishedBeforeSending {
                    let length = batch.queuedDatagram(j).count
                    let departure = UTCInstant(nanosecondsSinceUnixEpoch: transmitTime.nanosecondsSinceUnixEpoch + sealing + sampler.correction(position: j - sent))
                    responder.finish(kinds[j], transmitTime: departure, slot: batch.sendBuffer(j), length: length)
                    if kinds[j] == .authenticated {
                        let sealed = SystemClock.now()
                        sampler.sealed(length: length, nanoseconds: sealed.nanoseconds(since: sendReading))
                        sendReading = sealed
                    }
                }
            }
            let rc = batch.send(on: fd, from: sent, count: stamped - sent)
            if rc > 0 {
                if transmitTimestamps {
                    for j in sent..<(sent + rc) where kinds[j].wantsTransmitTimestamp || j == sampler.slot {
                        if j == sampler.slot {
                            sampler.sent(id: transmits.nextID, readAt: sendReading, position: j - chunkStart)
                        } else {
                            responder.transmitted(kinds[j], slot: batch.sendBuffer(j), id: transmits.nextID, transmitTime: transmitTime)
                        }
                        if hardware.isActive { transmits.setInterface(replyInterfaces[j], of: transmits.nextID) }
                        transmits.nextID &+= 1
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
                let failed = kinds[sent]
                let failedSample = sent == sampler.slot
                sent += 1
                if transmitTimestamps, failed.wantsTransmitTimestamp || failedSample {
                    _ = readTransmitTimestamps(&transmits, sampler: &sampler, hardware: hardware, now: transmitTime, responder: &responder, totals: totals)
                    responder.forgetTransmits()
                    sampler.forget()
                    transmits.nextID = 0
                    _ = TransmitTimestampQueue.enable(on: fd, hardware: hardware.isActive)
                }
            }
        }
        return timestamped
    }
}
