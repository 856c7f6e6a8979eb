import TockProtocol
import TockSockets

/// The NTP service on the datagram engine: the core's `NTPServer.handle` with this worker's
/// random generator and its cached clock state and policy.
struct NTPDatagramResponder: DatagramResponder {
    static var replyCapacity: Int { NTPServer.maximumReplyLength }
    var service: TockService { .ntp }

    let core: NTPServer
    var clock: CachedClockState
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var random = FastRandom()
    var admission: ClientAdmission<ClientLimiter>

    init(precision: Int8, clock: ClockStateCell, policy: PolicyCell) {
        self.core = NTPServer(precision: precision)
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
        self.admission = ClientAdmission(policy: self.policy.policy, table: self.policy.limiter, monotonicNanoseconds: 0)
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        if policy.refresh() {
            admission = ClientAdmission(policy: policy.policy, table: policy.limiter, monotonicNanoseconds: 0)
        }
        if admission.table != nil { admission.monotonicNanoseconds = SystemClock.monotonicNanoseconds() }
    }

    @inline(__always)
    mutating func respond(to request: UnsafeRawBufferPointer, from client: ClientAddress, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        switch core.handle(request, from: client, receiveTime: receiveTime, clock: clock.state, admission: admission, reply: reply, random: &random) {
        case .respond(let length, .time), .respond(let length, .authenticatedTime): .send(length: length, kind: .timestamped)
        case .respond(let length, .kissOfDeath): .send(length: length, kind: .kissOfDeath)
        case .ignore(let reason): .ignore(reason)
        }
    }

    @inline(__always)
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer) {
        core.stampTransmitTime(time, reply: reply, random: &random)
    }
}
