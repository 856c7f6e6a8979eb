import Atomics
import CTockShims
import Glibc
import TockCrypto
import TockProtocol
import TockSockets

/// One load-generator thread: its client sockets, their in-flight requests, and its report.
struct ClientLoop {
    static let slotsPerClient = 1024
    static let batch = 64

    let configuration: LoadConfiguration
    let fds: [Int32]
    /// Requests per second for this thread (open loop), or nil (closed loop).
    let rate: Int?
    let sentCounter: ManagedAtomic<UInt64>
    let answeredCounter: ManagedAtomic<UInt64>
    var report = LoadReport()
    var random = FastRandom()
    /// NTS: the clients' sessions and cookie supplies, or nil for plain NTP.
    let nts: NTSLoadClients?

    /// Per client and slot: the transmit timestamp sent (0 = free) and T1, read before the
    /// send; with kernel transmit timestamps also the kernel's T1 (0 until reported).
    var transmits: [UInt64]
    var sendTimes: [Int64]
    var kernelSendTimes: [Int64]
    /// Kernel transmit timestamps: per client, the slot of each timestamped datagram by its
    /// number modulo `slotsPerClient` (the kernel numbers them 0, 1, 2, … per socket,
    /// SOF_TIMESTAMPING_OPT_ID), and how many were sent.
    var timestampSlots: [UInt16]
    var timestampedSends: [UInt32]
    /// Interleaved mode (RFC 9769), per client: the receive timestamp of the last reply as
    /// sent (the next request's origin; 0 = none yet), and that exchange's T1 (kernel), T2 and
    /// T4 in nanoseconds since the Unix epoch (T1 0 = not reported). Per slot, the origin a
    /// request carried, so an interleaved reply is matched to the exchange it completes.
    var previousReceive: [UInt64]
    var previousT1: [Int64]
    var previousT2: [Int64]
    var previousT4: [Int64]
    var requestOrigins: [UInt64]
    /// In-flight requests per client.
    var inFlight: [Int]
    /// For Time and Daytime, which carry no origin: the oldest in-flight slot per client.
    var nextToMatch: [Int]
    var nextSlot: [Int]
    /// Roughtime: the request every one is made from (RFC 10049 §5.1), its nonce's first 8
    /// bytes replaced by the slot-tagged transmit value; and where the nonce lies.
    let roughtimeTemplate: [UInt8]
    let roughtimeNonceOffset: Int
    var roughtimeHasher = RoughtimeSHA512()

    init(configuration: LoadConfiguration, fds: [Int32], ntsSessions: [NTSSession] = [], rate: Int?, sent: ManagedAtomic<UInt64>, answered: ManagedAtomic<UInt64>) {
        self.configuration = configuration
        self.fds = fds
        self.rate = rate
        // Closed loop: each client keeps its window in flight, each request with a cookie coming
        // back, and a few in hand. Open loop sends in bursts of up to a batch per client.
        let cookiesInFlight = rate == nil ? min(configuration.window, Self.slotsPerClient - 1) : Self.batch
        self.nts = ntsSessions.isEmpty ? nil : NTSLoadClients(sessions: ntsSessions, slotsPerClient: Self.slotsPerClient, target: cookiesInFlight + NTSClientPacket.maximumCookies)
        self.sentCounter = sent
        self.answeredCounter = answered
        transmits = [UInt64](repeating: 0, count: fds.count * Self.slotsPerClient)
        sendTimes = [Int64](repeating: 0, count: fds.count * Self.slotsPerClient)
        let kernel = configuration.kernelTransmitTimestamps && configuration.protocol == .ntp
        kernelSendTimes = [Int64](repeating: 0, count: kernel ? fds.count * Self.slotsPerClient : 0)
        timestampSlots = [UInt16](repeating: 0, count: kernel ? fds.count * Self.slotsPerClient : 0)
        timestampedSends = [UInt32](repeating: 0, count: fds.count)
        let interleaved = configuration.interleaved && kernel
        previousReceive = [UInt64](repeating: 0, count: interleaved ? fds.count : 0)
        previousT1 = [Int64](repeating: 0, count: interleaved ? fds.count : 0)
        previousT2 = [Int64](repeating: 0, count: interleaved ? fds.count : 0)
        previousT4 = [Int64](repeating: 0, count: interleaved ? fds.count : 0)
        requestOrigins = [UInt64](repeating: 0, count: interleaved ? fds.count * Self.slotsPerClient : 0)
        inFlight = [Int](repeating: 0, count: fds.count)
        nextToMatch = [Int](repeating: 0, count: fds.count)
        nextSlot = [Int](repeating: 0, count: fds.count)
        if configuration.protocol == .roughtime {
            // A marker nonce to find its offset; the template's nonce is then zeroed.
            var template = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 0xA5, count: RoughtimeWire.hashLength), versions: [.rfc])
            let offset = (0...(template.count - RoughtimeWire.hashLength)).first {
                template[$0..<($0 + RoughtimeWire.hashLength)].allSatisfy { $0 == 0xA5 }
            }!
            for i in offset..<(offset + RoughtimeWire.hashLength) { template[i] = 0 }
            roughtimeTemplate = template
            roughtimeNonceOffset = offset
        } else {
            roughtimeTemplate = []
            roughtimeNonceOffset = 0
        }
    }

    /// Whether requests ask for kernel transmit timestamps (NTP only).
    var kernelTransmitTimestamps: Bool { !kernelSendTimes.isEmpty }
    /// Whether requests speak the interleaved mode.
    var interleaved: Bool { !previousReceive.isEmpty }

    mutating func run(until end: Int64) -> LoadReport {
        let b = Self.batch
        // One batch for both directions: requests are queued on connected sockets, replies
        // read with their kernel receive timestamps (T4), as the server's workers do.
        // NTS requests carry a cookie and placeholders, and replies as many cookies.
        let datagram = nts != nil || configuration.protocol == .roughtime ? (receive: 2048, send: 2048) : (receive: 512, send: NTPPacket.headerLength)
        var batch = DatagramBatch(capacity: b, receiveBufferSize: datagram.receive, sendBufferSize: datagram.send)
        var stamps = TransmitTimestampQueue(capacity: b)
        // poll, not epoll: an epoll set's callback on each socket runs inside the kernel's
        // transmit-timestamp report, between a request's T1 and its arrival at the server,
        // and added 0.2 µs to every interleaved exchange's measured error; poll's wait entries
        // exist only while it waits.
        let pollfds = UnsafeMutablePointer<pollfd>.allocate(capacity: fds.count)
        defer { pollfds.deallocate() }
        for (i, fd) in fds.enumerated() { pollfds[i] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0) }

        let window = min(configuration.window, Self.slotsPerClient - 1)
        var credit = 0.0
        var lastTick = SystemClock.monotonicNanoseconds()
        var lastExpiry = lastTick
        var openLoopClient = 0
        while true {
            let now = SystemClock.monotonicNanoseconds()
            if now >= end { break }
            if let rate {
                // Open loop: send what the rate allows since the last tick, one request per
                // client in turn, as many clients polling a server would.
                credit += Double(now - lastTick) * Double(rate) / 1e9
                lastTick = now
                var budget = Int(credit)
                credit -= Double(budget)
                while budget > 0 {
                    send(client: openLoopClient, count: 1, batch: &batch, stamps: &stamps)
                    openLoopClient = (openLoopClient + 1) % fds.count
                    budget -= 1
                }
            } else {
                for c in 0..<fds.count where inFlight[c] < window {
                    send(client: c, count: window - inFlight[c], batch: &batch, stamps: &stamps)
                }
            }
            let ready = poll(pollfds, nfds_t(fds.count), rate == nil ? 5 : 1)
            if ready > 0 {
                serve(pollfds, batch: &batch, stamps: &stamps)
            }
            if now - lastExpiry > 50_000_000 {
                expire(now: now)
                lastExpiry = now
                sentCounter.store(report.sent, ordering: .relaxed)
                answeredCounter.store(report.answered, ordering: .relaxed)
            }
        }
        // Stop sending, collect the replies still on their way (up to the timeout), and count
        // what never came as lost.
        let drainEnd = SystemClock.monotonicNanoseconds() + min(configuration.timeoutNanoseconds, 500_000_000)
        while inFlight.contains(where: { $0 > 0 }), SystemClock.monotonicNanoseconds() < drainEnd {
            if poll(pollfds, nfds_t(fds.count), 5) > 0 {
                serve(pollfds, batch: &batch, stamps: &stamps)
            }
        }
        for c in 0..<fds.count { report.lost += UInt64(inFlight[c]) }
        report.cookieReuses = nts?.reused ?? 0
        return report
    }

    /// Reads what `poll` found: each ready client's transmit timestamps (the error queue, which
    /// poll reports as POLLERR) before its replies, so a reply's T1 is known when it is read.
    mutating func serve(_ pollfds: UnsafeMutablePointer<pollfd>, batch: inout DatagramBatch, stamps: inout TransmitTimestampQueue) {
        for c in 0..<fds.count where pollfds[c].revents != 0 {
            let events = pollfds[c].revents
            if kernelTransmitTimestamps, events & Int16(POLLERR | POLLIN) != 0 {
                collectTransmitTimestamps(client: c, stamps: &stamps)
            }
            if events & Int16(POLLIN) != 0 {
                receive(client: c, batch: &batch)
            }
        }
    }

    /// Files the kernel transmit timestamps waiting on client `c`'s error queue under the slots
    /// of the requests they belong to. A timestamp is believed only if it falls within a second
    /// after the time read before the send, so a lost count cannot pair a request with another's.
    mutating func collectTransmitTimestamps(client c: Int, stamps: inout TransmitTimestampQueue) {
        let base = c * Self.slotsPerClient
        var read = 0
        repeat {
            read = stamps.drain(fds[c]) { id, time in
                let slot = Int(timestampSlots[base + Int(id % UInt32(Self.slotsPerClient))])
                let t = time.nanosecondsSinceUnixEpoch
                guard transmits[base + slot] != 0, t >= sendTimes[base + slot], t - sendTimes[base + slot] < 1_000_000_000 else { return }
                kernelSendTimes[base + slot] = t
            }
        } while read == stamps.capacity
    }

    /// Sends up to `count` requests from client `c` in one sendmmsg.
    mutating func send(client c: Int, count: Int, batch: inout DatagramBatch, stamps: inout TransmitTimestampQueue) {
        var n = 0
        var firstSlot = 0
        let base = c * Self.slotsPerClient
        let t1 = SystemClock.now().nanosecondsSinceUnixEpoch
        let requestLength = configuration.protocol == .ntp ? NTPPacket.headerLength : 0
        batch.clearQueue()
        while n < min(count, Self.batch), inFlight[c] + n < Self.slotsPerClient - 1 {
            let slot = nextSlot[c]
            if transmits[base + slot] != 0 { break }
            nextSlot[c] = (slot + 1) % Self.slotsPerClient
            var transmit = random.next() & ~0xFFFF | UInt64(slot)
            if transmit == 0 { transmit = 1 << 16 }
            transmits[base + slot] = transmit
            sendTimes[base + slot] = t1
            if kernelTransmitTimestamps { kernelSendTimes[base + slot] = 0 }
            var length = requestLength
            if let nts {
                length = nts.writeRequest(client: c, slot: slot, transmit: transmit, into: batch.sendBuffer(n), random: &random)
            } else if configuration.protocol == .roughtime {
                let packet = batch.sendBuffer(n)
                roughtimeTemplate.withUnsafeBytes { packet.copyMemory(from: $0) }
                packet.storeBytes(of: transmit.littleEndian, toByteOffset: roughtimeNonceOffset, as: UInt64.self)
                length = roughtimeTemplate.count
            } else if configuration.protocol == .ntp {
                let packet = batch.sendBuffer(n)
                packet.initializeMemory(as: UInt8.self, repeating: 0)
                packet[0] = 0x23
                NTPWire.store64(transmit, packet, NTPWire.transmitOffset)
                if interleaved, previousReceive[c] != 0 {
                    // RFC 9769 §2: the origin asks for the transmit timestamp of the reply that
                    // carried this receive timestamp. The receive field, which the interleaved
                    // reply returns as its origin, is the transmit value with bit 16 flipped: it
                    // names the same slot and differs from the transmit field, as the server
                    // requires of an interleaved request.
                    NTPWire.store64(previousReceive[c], packet, NTPWire.originOffset)
                    NTPWire.store64(transmit ^ (1 << 16), packet, NTPWire.receiveOffset)
                }
                if interleaved { requestOrigins[base + slot] = previousReceive[c] }
            }
            batch.queue(length: length, requestTransmitTimestamp: kernelTransmitTimestamps)
            if n == 0 { firstSlot = slot }
            n += 1
        }
        guard n > 0 else { return }
        let sent = max(0, batch.send(on: fds[c], from: 0, count: n))
        if kernelTransmitTimestamps {
            for k in 0..<sent {
                timestampSlots[base + Int(timestampedSends[c] % UInt32(Self.slotsPerClient))] = UInt16((firstSlot + k) % Self.slotsPerClient)
                timestampedSends[c] &+= 1
            }
            if sent < n {
                // The kernel may have numbered a datagram it did not send: file what was
                // reported, then restart the count at 0 (`TransmitTimestampQueue.enable`).
                collectTransmitTimestamps(client: c, stamps: &stamps)
                _ = TransmitTimestampQueue.enable(on: fds[c])
                timestampedSends[c] = 0
            }
        }
        // Unsent requests give their slots back.
        for k in sent..<n {
            let slot = (firstSlot + k) % Self.slotsPerClient
            transmits[base + slot] = 0
            nts?.forget(client: c, slot: slot)
        }
        if sent < n { nextSlot[c] = (firstSlot + sent) % Self.slotsPerClient }
        inFlight[c] += sent
        report.sent += UInt64(sent)
    }

    mutating func receive(client c: Int, batch: inout DatagramBatch) {
        let base = c * Self.slotsPerClient
        while true {
            let n = batch.receive(from: fds[c], flags: Int32(MSG_DONTWAIT))
            guard n > 0 else { return }
            let wall = SystemClock.now()
            for i in 0..<n {
                let t4 = batch.control(at: i).receiveTime ?? wall
                handle(reply: batch.bytes(at: i), client: c, base: base, t4: t4)
            }
            if n < Self.batch { return }
        }
    }

    mutating func handle(reply: UnsafeRawBufferPointer, client c: Int, base: Int, t4: UTCInstant) {
        switch configuration.protocol {
        case .ntp:
            guard reply.count >= 48 else { report.invalid += 1; return }
            let origin = NTPWire.load64(reply, NTPWire.originOffset)
            let slot = Int(origin & 0xFFFF)
            guard slot < Self.slotsPerClient, origin != 0 else {
                report.invalid += 1
                return
            }
            // An interleaved reply's origin is the request's receive field (see `send`).
            let interleavedReply = interleaved && transmits[base + slot] != 0 && transmits[base + slot] ^ (1 << 16) == origin && requestOrigins[base + slot] != 0
            guard transmits[base + slot] == origin || interleavedReply else {
                report.invalid += 1  // bogus: not a request we have in flight
                return
            }
            var t1 = UTCInstant(nanosecondsSinceUnixEpoch: sendTimes[base + slot])
            let kernelT1 = kernelTransmitTimestamps ? kernelSendTimes[base + slot] : 0
            if kernelT1 != 0 { t1 = UTCInstant(nanosecondsSinceUnixEpoch: kernelT1) }
            transmits[base + slot] = 0
            inFlight[c] -= 1
            report.answered += 1
            report.rtt.record(UInt64(max(1, t4.nanoseconds(since: t1))))
            if let nts {
                // RFC 8915 §5.7: only an authentic reply is believed; a NAK is the one
                // unauthenticated reply that means something.
                switch nts.check(reply: reply, client: c, slot: slot, transmit: origin) {
                case .authentic:
                    report.authenticated += 1
                case .nak:
                    report.ntsNAK += 1
                    report.kissOfDeath += 1
                    return
                case .rejected:
                    report.unauthenticated += 1
                    return
                }
            }
            let first = reply[0]
            let stratum = reply[1]
            if stratum == 0, first >> 6 == 3, NTPWire.load32(reply, NTPWire.referenceIDOffset) != 0 {
                report.kissOfDeath += 1
                return
            }
            if first >> 6 == 3 { report.unsynchronized += 1 }
            let receive = NTPWire.load64(reply, NTPWire.receiveOffset)
            let t2 = NTPTimestamp(rawValue: receive).instant(near: t1)
            let t3 = NTPTimestamp(rawValue: NTPWire.load64(reply, NTPWire.transmitOffset)).instant(near: t1)
            guard first & 7 == 4, abs(t2.nanoseconds(since: t1)) < 1_000_000_000, abs(t3.nanoseconds(since: t4)) < 1_000_000_000 else {
                report.invalid += 1
                return
            }
            if kernelTransmitTimestamps, kernelT1 == 0 { report.missingTransmitTimestamps += 1 }
            if interleaved {
                if interleavedReply {
                    report.interleavedReplies += 1
                    completePreviousExchange(client: c, origin: requestOrigins[base + slot], previousT3: t3)
                } else if t3 < t2 {
                    report.invalid += 1
                    return
                }
                // This exchange becomes the one the next request asks about.
                previousReceive[c] = receive
                previousT1[c] = kernelT1
                previousT2[c] = t2.nanosecondsSinceUnixEpoch
                previousT4[c] = t4.nanosecondsSinceUnixEpoch
                return
            }
            guard t3 >= t2 else {
                report.invalid += 1
                return
            }
            guard !kernelTransmitTimestamps || kernelT1 != 0 else { return }
            record(error: (t2.nanoseconds(since: t1) + t3.nanoseconds(since: t4)) / 2)
        case .roughtime:
            // The nonce echoed (§5.2.2) names the request; every `roughtimeVerifyEvery`-th reply
            // is checked in full against the request rebuilt from the template.
            guard let message = try? RoughtimeMessage(packet: reply), let nonce = message.value(of: .NONC),
                  nonce.count == RoughtimeWire.hashLength else { report.invalid += 1; return }
            let origin = UInt64(littleEndian: nonce.loadUnaligned(as: UInt64.self))
            let slot = Int(origin & 0xFFFF)
            guard slot < Self.slotsPerClient, transmits[base + slot] == origin, origin != 0 else {
                report.invalid += 1
                return
            }
            let t1 = UTCInstant(nanosecondsSinceUnixEpoch: sendTimes[base + slot])
            transmits[base + slot] = 0
            inFlight[c] -= 1
            report.answered += 1
            report.rtt.record(UInt64(max(1, t4.nanoseconds(since: t1))))
            guard report.answered % UInt64(max(1, configuration.roughtimeVerifyEvery)) == 0 else { return }
            var request = roughtimeTemplate
            request.withUnsafeMutableBytes { $0.storeBytes(of: origin.littleEndian, toByteOffset: roughtimeNonceOffset, as: UInt64.self) }
            let ok = request.withUnsafeBytes { q -> Bool in
                (try? RoughtimeClient.verify(request: q, reply: reply, longTermPublicKey: configuration.roughtimePublicKey,
                                             verifier: RoughtimeEd25519Verifier(), hasher: &roughtimeHasher)) != nil
            }
            if ok { report.verified += 1 } else { report.invalid += 1 }
        case .time, .daytime:
            // No origin to match: the reply answers the oldest request in flight.
            guard inFlight[c] > 0 else { report.invalid += 1; return }
            var slot = nextToMatch[c]
            while transmits[base + slot] == 0 { slot = (slot + 1) % Self.slotsPerClient }
            let t1 = UTCInstant(nanosecondsSinceUnixEpoch: sendTimes[base + slot])
            transmits[base + slot] = 0
            nextToMatch[c] = (slot + 1) % Self.slotsPerClient
            inFlight[c] -= 1
            report.answered += 1
            report.rtt.record(UInt64(max(1, t4.nanoseconds(since: t1))))
            if configuration.protocol == .time {
                guard reply.count == 4 else { report.invalid += 1; return }
                let value = UInt32(bigEndian: reply.loadUnaligned(as: UInt32.self))
                let instant = RFC868.instant(value, near: t4)
                if abs(instant.nanoseconds(since: t4)) > 2_000_000_000 { report.invalid += 1 }
            } else if reply.count == 0 {
                report.invalid += 1
            }
        }
    }

    /// Records the error of client `c`'s previous exchange from an interleaved reply (RFC 9769
    /// §2): its T1, T2 and T4 as kept, and `previousT3`, the kernel's transmit timestamp of
    /// that exchange's reply. Only if the request asked about that exchange (`origin`) and its
    /// T1 was reported; a T3 before its T2 is invalid.
    mutating func completePreviousExchange(client c: Int, origin: UInt64, previousT3: UTCInstant) {
        guard origin == previousReceive[c], previousT1[c] != 0 else { return }
        let t3 = previousT3.nanosecondsSinceUnixEpoch
        guard t3 >= previousT2[c], abs(t3 - previousT4[c]) < 1_000_000_000 else {
            report.invalid += 1
            return
        }
        record(error: ((previousT2[c] - previousT1[c]) + (t3 - previousT4[c])) / 2)
    }

    /// Records one exchange's signed timestamp error, nanoseconds.
    @inline(__always)
    mutating func record(error: Int64) {
        report.timestampError.record(UInt64(max(1, abs(error))))
        report.timestampOffsetSum += error
    }

    /// Frees the slots of requests older than the timeout and counts them lost.
    mutating func expire(now: Int64) {
        let limit = SystemClock.now().nanosecondsSinceUnixEpoch - configuration.timeoutNanoseconds
        for c in 0..<fds.count where inFlight[c] > 0 {
            let base = c * Self.slotsPerClient
            for slot in 0..<Self.slotsPerClient where transmits[base + slot] != 0 && sendTimes[base + slot] < limit {
                transmits[base + slot] = 0
                nts?.forget(client: c, slot: slot)
                inFlight[c] -= 1
                report.lost += 1
            }
        }
    }
}
