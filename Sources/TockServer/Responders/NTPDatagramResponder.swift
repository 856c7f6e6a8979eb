import TockProtocol
import TockSockets

/// The NTP service on the datagram engine: the core's `NTPServer.handle` with this worker's
/// random generator, its cached clock state and policy, and, when NTS is on, its own NTS
/// cryptography (cookie keys and AEAD contexts, confined to the worker's thread), and, when
/// interleaved mode is on (RFC 9769), the listener's shared client log.
///
/// What NTP adds to the engine is its own (NTPDatagramResponder+Send.swift): T3 stamped into
/// each chunk of replies just before its sendmmsg, NTS seals after it, the kernel's transmit
/// timestamps for interleaved clients and for the send-delay sample, and hardware receive
/// times.
struct NTPDatagramResponder: DatagramResponder {
    /// Plain NTP needs the 52-byte reply (48, and a crypto-NAK); NTS keeps the S2C key and the
    /// plaintext past the reply until the seal (`NTSReplyScratch`).
    var replyCapacity: Int { nts == nil ? NTPPacket.headerLength + 4 : NTSReplyScratch.slotLength }

    let core: NTPServer
    var clock: CachedClockState
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var admission: LiveAdmission
    var random = FastRandom()
    /// This worker's NTS cryptography, or nil when the server does not speak NTS.
    var nts: NTSPacketCrypto?
    /// The listener's interleaved-mode client log, or nil when interleaved mode is off.
    var interleaved: InterleavedLogView?
    /// The socket, and what it reports: transmit timestamps, hardware timestamps.
    let socket: DatagramSocket
    /// What the send path keeps between batches: each queued reply's work, the transmit
    /// timestamps awaited, the send-delay sample, the cards' clocks.
    var sends: NTPSendPath
    /// When the current batch was read: T2 of a datagram the kernel did not timestamp.
    var batchTime = UTCInstant(nanosecondsSinceUnixEpoch: 0)

    init(precision: Int8, clock: ClockStateCell, policy: PolicyCell, socket: DatagramSocket, nts: NTSPacketCrypto? = nil, interleaved: InterleavedClientLog? = nil) {
        self.core = NTPServer(precision: precision)
        self.interleaved = interleaved.map(InterleavedLogView.init)
        self.clock = CachedClockState(clock)
        self.admission = LiveAdmission(policy)
        self.nts = nts
        self.socket = socket
        self.sends = NTPSendPath(socket: socket, interleaved: interleaved != nil, batchSize: DatagramWorker<Self>.batchSize)
    }

    mutating func beginBatch(now: UTCInstant, totals: borrowing DatagramCounters.Totals) {
        batchTime = now
        sends.beginBatch(now: now, log: interleaved?.log, totals: totals)
        clock.refresh()
        admission.refresh(monotonicNanoseconds: SystemClock.monotonicNanoseconds)
        // Re-keys only when a cookie-key period begins.
        nts?.refresh(unixSeconds: now.secondsSinceUnixEpoch)
    }

    @inline(__always)
    mutating func respond(
        to request: UnsafeRawBufferPointer, from client: ClientAddress, control: ReceivedControl,
        slot: Int, reply: UnsafeMutableRawBufferPointer, totals: borrowing DatagramCounters.Totals
    ) -> DatagramVerdict {
        let receiveTime = sends.receiveTime(control, slot: slot, batchTime: batchTime, totals: totals)
        switch core.handle(request, from: client, receiveTime: receiveTime, clock: clock.state, admission: admission.admission, nts: &nts, interleaved: &interleaved, reply: reply, random: &random) {
        case .respond(let length, .kissOfDeath(_, let reason)):
            sends.queue(.asWritten, slot: slot)
            return .kiss(length: length, reason: reason)
        case .respond(let length, let kind):
            sends.queue(NTPSendPath.Work(kind), slot: slot, totals: totals)
            return .send(length: length)
        case .ignore(let reason):
            return .ignore(reason)
        }
    }

    mutating func send(_ batch: inout DatagramBatch, on socket: DatagramSocket, totals: borrowing DatagramCounters.Totals) {
        // The send path is taken out for the call, so the closure may use the rest of `self`.
        var sends = self.sends
        let core = self.core
        sends.send(&batch, log: interleaved?.log, finish: { work, transmitTime, slot, length in
            if work == .seal, nts != nil {
                core.sealAuthenticatedReply(transmitTime, slot: slot, length: length, crypto: &nts!, random: &random)
            } else {
                core.stampTransmitTime(transmitTime, reply: slot, random: &random)
            }
        }, totals: totals)
        self.sends = sends
    }
}
