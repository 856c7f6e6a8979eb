import TockProtocol
import TockSockets

/// The NTP service on the datagram engine: the core's `NTPServer.handle` with this worker's
/// random generator, its cached clock state and policy, and, when NTS is on, its own NTS
/// cryptography (cookie keys and AEAD contexts, confined to the worker's thread).
struct NTPDatagramResponder: DatagramResponder {
    var service: TockService { .ntp }
    /// Plain NTP needs the 52-byte reply; NTS keeps the S2C key and the plaintext past the
    /// reply until the seal (`NTSReplyScratch`).
    var replyCapacity: Int { nts == nil ? NTPServer.maximumReplyLength : NTSReplyScratch.slotLength }

    let core: NTPServer
    var clock: CachedClockState
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var random = FastRandom()
    var admission: ClientAdmission<ClientLimiter>
    /// This worker's NTS cryptography, or nil when the server does not speak NTS.
    var nts: NTSPacketCrypto?

    init(precision: Int8, clock: ClockStateCell, policy: PolicyCell, nts: NTSPacketCrypto? = nil) {
        self.core = NTPServer(precision: precision)
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
        switch core.handle(request, from: client, receiveTime: receiveTime, clock: clock.state, admission: admission, nts: &nts, reply: reply, random: &random) {
        case .respond(let length, .time): .send(length: length, kind: .timestamped)
        case .respond(let length, .authenticatedTime): .send(length: length, kind: .authenticated)
        case .respond(let length, .kissOfDeath(_, let reason)): .kiss(length: length, reason: reason)
        case .ignore(let reason): .ignore(reason)
        }
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
