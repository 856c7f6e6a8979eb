import TockProtocol
import TockSockets

/// The NTP service on the datagram engine: the protocol core's `NTPResponder` with this
/// worker's random generator and cached clock state.
struct NTPDatagramResponder: DatagramResponder {
    static var replyCapacity: Int { NTPResponder.maximumReplyLength }
    static var dropReasons: [String] { NTPDropReason.allCases.map(\.description) }

    let core: NTPResponder
    var clock: CachedClockState
    var random = FastRandom()
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var monotonicNow: Int64 = 0

    init(precision: Int8, clock: ClockStateCell, policy: PolicyCell = PolicyCell(ServicePolicy(), tableBytes: 0)) {
        self.core = NTPResponder(precision: precision)
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        policy.refresh()
        if policy.limiter != nil { monotonicNow = SystemClock.monotonicNanoseconds() }
    }

    /// The protocol decision first (so malformed and non-client packets are counted as such
    /// and only valid requests can be kissed), then the access list, then the rate limit.
    @inline(__always)
    mutating func respond(to request: UnsafeRawBufferPointer, from source: DatagramSource, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        let length: Int
        switch core.respond(to: request, sourcePort: source.port, receiveTime: receiveTime, clock: clock.state, reply: reply, random: &random) {
        case .respond(let n): length = n
        case .drop(let reason): return .drop(reason: reason.rawValue)
        }
        if !policy.policy.permits(source) {
            guard let code = policy.policy.denyKissCode else { return .drop(reason: NTPDropReason.denied.rawValue) }
            NTPResponder.convertToKissOfDeath(code, reply: reply)
            return .kiss(length: NTPPacket.headerLength)
        }
        if let limiter = policy.limiter {
            switch limiter.decide(source, nowNanoseconds: monotonicNow, random: random.next()) {
            case .allow:
                break
            case .kiss:
                NTPResponder.convertToKissOfDeath(.rate, reply: reply)
                return .kiss(length: NTPPacket.headerLength)
            case .drop:
                return .drop(reason: NTPDropReason.rateLimited.rawValue)
            }
        }
        return .reply(length: length)
    }

    @inline(__always)
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer) {
        core.stampTransmitTime(time, reply: reply, random: &random)
    }
}
