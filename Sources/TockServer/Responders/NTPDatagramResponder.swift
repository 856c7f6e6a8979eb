import TockProtocol
import TockSockets

/// The NTP service on the datagram engine: the core's `NTPServer.handle` with this worker's
/// random generator, its cached clock state and policy, and, when NTS is on, its own NTS
/// cryptography (cookie keys and AEAD contexts, confined to the worker's thread), and, when
/// interleaved mode is on (RFC 9769), the listener's shared client log and this worker's
/// replies waiting for their kernel transmit timestamps.
struct NTPDatagramResponder: DatagramResponder {
    var service: TockService { .ntp }
    /// Plain NTP needs the 52-byte reply and, past it at `pendingOffset`, the log slot of a
    /// recorded reply until it is sent; NTS keeps the S2C key and the plaintext past the reply
    /// until the seal (`NTSReplyScratch`).
    var replyCapacity: Int { nts == nil ? Self.pendingOffset + 8 : NTSReplyScratch.slotLength }
    /// Where a plain reply's slot keeps its log slot: past the longest plain reply, and only
    /// for replies whose kind `wantsTransmitTimestamp` (an NTS reply may be longer, but is never
    /// recorded). Its receive timestamp, the log's key, is the reply's own receive field.
    static let pendingOffset = 56

    let core: NTPServer
    var clock: CachedClockState
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var random = FastRandom()
    var admission: ClientAdmission<ClientLimiter>
    /// This worker's NTS cryptography, or nil when the server does not speak NTS.
    var nts: NTSPacketCrypto?
    /// The listener's interleaved-mode client log, or nil when interleaved mode is off.
    var interleaved: InterleavedLogView?
    /// This worker's replies waiting for kernel transmit timestamps (with `interleaved`).
    let pending: PendingTransmits?

    init(precision: Int8, clock: ClockStateCell, policy: PolicyCell, nts: NTSPacketCrypto? = nil, interleaved: InterleavedClientLog? = nil) {
        self.core = NTPServer(precision: precision)
        self.interleaved = interleaved.map(InterleavedLogView.init)
        self.pending = interleaved == nil ? nil : PendingTransmits()
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
        self.admission = ClientAdmission(policy: self.policy.policy, table: self.policy.limiter, monotonicNanoseconds: 0)
        self.nts = nts
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        if policy.refresh() {
            admission = ClientAdmission(policy: policy.policy, table: policy.limiter, monotonicNanoseconds: 0)
        }
        if admission.table != nil { admission.monotonicNanoseconds = SystemClock.monotonicNanoseconds() }
        // Re-keys only when a cookie-key period begins.
        nts?.refresh(unixSeconds: now.secondsSinceUnixEpoch)
    }

    @inline(__always)
    mutating func respond(to request: UnsafeRawBufferPointer, from client: ClientAddress, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        switch core.handle(request, from: client, receiveTime: receiveTime, clock: clock.state, admission: admission, nts: &nts, interleaved: &interleaved, reply: reply, random: &random) {
        case .respond(let length, .time):
            // Recorded in the log, but nobody will ask for its transmit timestamp.
            return .send(length: length, kind: .timestamped)
        case .respond(let length, .timeForInterleavedClient):
            notePending(reply)
            return .send(length: length, kind: .timestampedForInterleaving)
        case .respond(let length, .interleavedTime):
            notePending(reply)
            return .send(length: length, kind: .interleaved)
        case .respond(let length, .authenticatedTime): return .send(length: length, kind: .authenticated)
        case .respond(let length, .kissOfDeath(_, let reason)): return .kiss(length: length, reason: reason)
        case .ignore(let reason): return .ignore(reason)
        }
    }

    /// Keeps the log slot the core recorded this reply in, in the reply's slot until it is sent.
    /// Only called for the kinds the core returns after recording, so `interleaved` is set.
    @inline(__always)
    private func notePending(_ reply: UnsafeMutableRawBufferPointer) {
        reply.storeBytes(of: UInt64(truncatingIfNeeded: interleaved!.lastSlot), toByteOffset: Self.pendingOffset, as: UInt64.self)
    }

    /// Called by the worker for the replies whose kind `wantsTransmitTimestamp`.
    @inline(__always)
    mutating func transmitted(_ kind: DatagramReplyKind, slot: UnsafeMutableRawBufferPointer, id: UInt32, transmitTime: UTCInstant) {
        guard let pending else { return }
        let receive = NTPWire.load64(UnsafeRawBufferPointer(slot), NTPWire.receiveOffset)
        let logSlot = Int(truncatingIfNeeded: slot.loadUnaligned(fromByteOffset: Self.pendingOffset, as: UInt64.self))
        pending.add(id: id, slot: logSlot, receive: receive, sentAfter: transmitTime.nanosecondsSinceUnixEpoch)
    }

    @inline(__always)
    mutating func transmitTimestamp(id: UInt32, time: UTCInstant, final: Bool) -> Bool {
        guard let pending, let log = interleaved?.log, let entry = pending.take(id: id, time: time.nanosecondsSinceUnixEpoch, keep: !final) else { return false }
        return log.setTransmitTimestamp(NTPTimestamp(time).rawValue, slot: entry.slot, receive: entry.receive)
    }

    mutating func forgetTransmits() {
        pending?.forgetAll()
    }

    var awaitsTransmitTimestamps: Bool { (pending?.outstanding ?? 0) > 0 }

    /// Read for the next batch's decisions has found nothing: stop waiting.
    mutating func settleTransmits() {
        pending?.settle()
    }

    @inline(__always)
    mutating func finish(_ kind: DatagramReplyKind, transmitTime: UTCInstant, slot: UnsafeMutableRawBufferPointer, length: Int) {
        if kind == .authenticated, nts != nil {
            core.sealAuthenticatedReply(transmitTime, slot: slot, length: length, crypto: &nts!, random: &random)
        } else {
            core.stampTransmitTime(transmitTime, reply: slot, random: &random)
        }
    }
}
