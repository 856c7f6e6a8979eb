import Glibc
import TockProtocol
import TockSockets

extension LocalZone {
    /// The host's zone at `instant`: offset and abbreviation from the C library's zone database
    /// (TZ or /etc/localtime). Looked up once per batch or connection, never per datagram.
    static func lookup(at instant: UTCInstant) -> LocalZone {
        var t = time_t(instant.secondsSinceUnixEpoch)
        var tm = Glibc.tm()
        guard localtime_r(&t, &tm) != nil else { return .utc }
        var abbreviation: [UInt8] = []
        if let name = tm.tm_zone {
            var count = 0
            while count < 8, name[count] != 0 {
                abbreviation.append(UInt8(bitPattern: name[count]))
                count += 1
            }
        }
        return LocalZone(offsetSeconds: Int(tm.tm_gmtoff), abbreviation: abbreviation)
    }
}

/// Daytime or Time over UDP on the datagram engine: the core's `TextTimeServer.handle`.
struct TextTimeDatagramResponder: DatagramResponder {
    var replyCapacity: Int { TextTimeServer.maximumReplyLength }
    var service: TockService { core.service }

    let core: TextTimeServer
    var clock: CachedClockState
    var zone = LocalZone.utc
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var random = FastRandom()
    var admission: ClientAdmission<ClientLimiter>

    init(core: TextTimeServer, clock: ClockStateCell, policy: PolicyCell) {
        self.core = core
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
        self.admission = ClientAdmission(policy: self.policy.policy, table: self.policy.limiter, monotonicNanoseconds: 0)
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        if policy.refresh() {
            admission = ClientAdmission(policy: policy.policy, table: policy.limiter, monotonicNanoseconds: 0)
        }
        if core.needsLocalZone { zone = .lookup(at: now) }
        if admission.table != nil { admission.monotonicNanoseconds = SystemClock.monotonicNanoseconds() }
    }

    mutating func respond(to request: UnsafeRawBufferPointer, from client: ClientAddress, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        switch core.handle(from: client, transport: .datagram, now: receiveTime, localZone: zone, clock: clock.state, admission: admission, random: random.next(), reply: reply) {
        case .respond(let length): .send(length: length, kind: .complete)
        case .ignore(let reason): .ignore(reason)
        }
    }
}
