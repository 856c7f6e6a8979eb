import Glibc
import TockProtocol
import TockSockets

/// Which classic time service a listener offers.
public enum TextTimeProtocol: String, Sendable, Hashable {
    /// RFC 867: the time as text.
    case daytime
    /// RFC 868: the time as 32-bit seconds since 1900.
    case time
}

/// Writes Daytime and Time replies for both transports.
///
/// Both protocols answer anything: RFC 867 and RFC 868 ignore the request's content. Both stay
/// silent while the clock is unsynchronised (RFC 868: "If the server is unable to determine the
/// time at its site, it should either refuse the connection or close it without sending
/// anything"; the same holds for Daytime, which has no way to say "unsynchronised").
struct TextTimeReplyWriter: Sendable {
    let kind: TextTimeProtocol
    let format: DaytimeFormat
    let zone: DaytimeZone

    static var capacity: Int { max(Daytime.maximumReplyLength, RFC868.replyLength) }

    /// The zone to write local time in: offset and abbreviation, from the C library's zone
    /// database (TZ or /etc/localtime), looked up once per batch or connection.
    struct ZoneInfo {
        var offsetSeconds = 0
        var abbreviation: (UInt64, Int) = (0, 0)
    }

    func zoneInfo(at instant: UTCInstant) -> ZoneInfo {
        guard zone == .local, kind == .daytime else {
            return ZoneInfo(offsetSeconds: 0, abbreviation: (0x5554_43, 3))  // "UTC"
        }
        var t = time_t(instant.secondsSinceUnixEpoch)
        var tm = Glibc.tm()
        guard localtime_r(&t, &tm) != nil else { return ZoneInfo() }
        var info = ZoneInfo(offsetSeconds: Int(tm.tm_gmtoff))
        if let name = tm.tm_zone {
            var packed: UInt64 = 0
            var count = 0
            while count < 8, name[count] != 0 {
                packed = packed << 8 | UInt64(UInt8(bitPattern: name[count]))
                count += 1
            }
            info.abbreviation = (packed, count)
        }
        return info
    }

    /// Writes the reply for `now`, or returns 0 when the service must stay silent.
    func write(now: UTCInstant, zone info: ZoneInfo, clock: ServerClockState, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard clock.isSynchronized else { return 0 }
        switch kind {
        case .time:
            return RFC868.encode(now, into: buffer)
        case .daytime:
            var packedBigEndian = (info.abbreviation.0 << (8 * UInt64(8 - info.abbreviation.1))).bigEndian
            return withUnsafeBytes(of: &packedBigEndian) { raw in
                Daytime.write(
                    now,
                    format: format,
                    utcOffsetSeconds: info.offsetSeconds,
                    zoneAbbreviation: UnsafeRawBufferPointer(rebasing: raw.prefix(info.abbreviation.1)),
                    leapSecond: clock.leapSecondInProgress,
                    into: buffer
                )
            }
        }
    }
}

/// Daytime or Time over UDP on the datagram engine.
struct TextTimeDatagramResponder: DatagramResponder {
    static var replyCapacity: Int { TextTimeReplyWriter.capacity }
    static var dropReasons: [String] { DropReason.allCases.map(\.rawValue) }

    enum DropReason: String, CaseIterable {
        case unsynchronized
        /// From a port whose service answers anything (echo, chargen, ...): a reflection loop.
        case reflection_port
        case denied
        case rate_limited
    }

    let writer: TextTimeReplyWriter
    var clock: CachedClockState
    var zone = TextTimeReplyWriter.ZoneInfo()
    /// The access list and rate limit, refreshed once per batch so a reload applies live.
    var policy: CachedPolicy
    var random = FastRandom()
    var monotonicNow: Int64 = 0

    init(writer: TextTimeReplyWriter, clock: ClockStateCell, policy: PolicyCell = PolicyCell(ServicePolicy(), tableBytes: 0)) {
        self.writer = writer
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        policy.refresh()
        zone = writer.zoneInfo(at: now)
        if policy.limiter != nil { monotonicNow = SystemClock.monotonicNanoseconds() }
    }

    mutating func respond(to request: UnsafeRawBufferPointer, from source: DatagramSource, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        if ReflectionPorts.isReflectionRisk(source.port) { return .drop(reason: 1) }
        if !policy.policy.permits(source) { return .drop(reason: 2) }
        if let limiter = policy.limiter, limiter.decide(source, nowNanoseconds: monotonicNow, random: random.next()) != .allow {
            return .drop(reason: 3)
        }
        let length = writer.write(now: receiveTime, zone: zone, clock: clock.state, into: reply)
        return length > 0 ? .reply(length: length) : .drop(reason: 0)
    }
}
