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

    let core: TextTimeServer
    private var clock: CachedClockState
    private var zone = LocalZone.utc
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    private var admission: LiveAdmission
    private var random = FastRandom()
    private var batchTime = UTCInstant(nanosecondsSinceUnixEpoch: 0)

    init(core: TextTimeServer, clock: ClockStateCell, policy: PolicyCell) {
        self.core = core
        self.clock = CachedClockState(clock)
        self.admission = LiveAdmission(policy)
    }

    mutating func beginBatch(now: UTCInstant, totals: borrowing DatagramCounters.Totals) {
        clock.refresh()
        admission.refresh(monotonicNanoseconds: SystemClock.monotonicNanoseconds)
        if core.needsLocalZone { zone = .lookup(at: now) }
        batchTime = now
    }

    mutating func respond(
        to request: UnsafeRawBufferPointer, from client: ClientAddress, control: ReceivedControl,
        slot: Int, reply: UnsafeMutableRawBufferPointer, totals: borrowing DatagramCounters.Totals
    ) -> DatagramVerdict {
        let now = control.receiveTime ?? batchTime
        switch core.handle(from: client, transport: .datagram, now: now, localZone: zone, clock: clock.state, admission: admission.admission, random: random.next(), reply: reply) {
        case .respond(let length): return .send(length: length)
        case .ignore(let reason): return .ignore(reason)
        }
    }
}
