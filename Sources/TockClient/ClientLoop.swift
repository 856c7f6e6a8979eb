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

    /// Per client and slot: the transmit timestamp sent (0 = free) and T1.
    var transmits: [UInt64]
    var sendTimes: [Int64]
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

    mutating func run(until end: Int64) -> LoadReport {
        let b = Self.batch
        // One batch for both directions: requests are queued on connected sockets, replies
        // read with their kernel receive timestamps (T4), as the server's workers do.
        // NTS requests carry a cookie and placeholders, and replies as many cookies.
        let datagram = nts != nil || configuration.protocol == .roughtime ? (receive: 2048, send: 2048) : (receive: 512, send: NTPPacket.headerLength)
        var batch = DatagramBatch(capacity: b, receiveBufferSize: datagram.receive, sendBufferSize: datagram.send)
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
                // Open loop: send what the rate allows since the last tick, round-robin.
                credit += Double(now - lastTick) * Double(rate) / 1e9
                lastTick = now
                var budget = Int(credit)
                credit -= Double(budget)
                while budget > 0 {
                    let n = min(budget, b)
                    send(client: openLoopClient, count: n, batch: &batch)
                    openLoopClient = (openLoopClient + 1) % fds.count
                    budget -= n
                }
            } else {
                for c in 0..<fds.count where inFlight[c] < window {
                    send(client: c, count: window - inFlight[c], batch: &batch)
                }
            }
            let ready = poll(pollfds, nfds_t(fds.count), rate == nil ? 5 : 1)
            if ready > 0 {
                for c in 0..<fds.count where pollfds[c].revents & Int16(POLLIN) != 0 {
                    receive(client: c, batch: &batch)
                }
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
                for c in 0..<fds.count where pollfds[c].revents & Int16(POLLIN) != 0 {
                    receive(client: c, batch: &batch)
                }
            }
        }
        for c in 0..<fds.count { report.lost += UInt64(inFlight[c]) }
        report.cookieReuses = nts?.reused ?? 0
        return report
    }

    /// Sends up to `count` requests from client `c` in one sendmmsg.
    mutating func send(client c: Int, count: Int, batch: inout DatagramBatch) {
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
            }
            batch.queue(length: length)
            if n == 0 { firstSlot = slot }
            n += 1
        }
        guard n > 0 else { return }
        let sent = max(0, batch.send(on: fds[c], from: 0, count: n))
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
            guard slot < Self.slotsPerClient, transmits[base + slot] == origin, origin != 0 else {
                report.invalid += 1  // bogus: not a request we have in flight
                return
            }
            let t1 = UTCInstant(nanosecondsSinceUnixEpoch: sendTimes[base + slot])
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
            let t2 = NTPTimestamp(rawValue: NTPWire.load64(reply, NTPWire.receiveOffset)).instant(near: t1)
            let t3 = NTPTimestamp(rawValue: NTPWire.load64(reply, NTPWire.transmitOffset)).instant(near: t1)
            guard first & 7 == 4, t3 >= t2, abs(t2.nanoseconds(since: t1)) < 1_000_000_000, abs(t3.nanoseconds(since: t4)) < 1_000_000_000 else {
                report.invalid += 1
                return
            }
            let error = (t2.nanoseconds(since: t1) + t3.nanoseconds(since: t4)) / 2
            report.timestampError.record(UInt64(max(1, abs(error))))
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
