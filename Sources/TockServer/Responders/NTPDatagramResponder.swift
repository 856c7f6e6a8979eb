import TockProtocol

/// The NTP service on the datagram engine: the protocol core's `NTPResponder` with this
/// worker's random generator and cached clock state.
struct NTPDatagramResponder: DatagramResponder {
    static var replyCapacity: Int { NTPResponder.maximumReplyLength }
    static var dropReasons: [String] { NTPDropReason.allCases.map(\.description) }

    let core: NTPResponder
    var clock: CachedClockState
    var random = FastRandom()

    init(precision: Int8, clock: ClockStateCell) {
        self.core = NTPResponder(precision: precision)
        self.clock = CachedClockState(clock)
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
    }

    @inline(__always)
    mutating func respond(to request: UnsafeRawBufferPointer, from source: DatagramSource, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        switch core.respond(to: request, sourcePort: source.port, receiveTime: receiveTime, clock: clock.state, reply: reply, random: &random) {
        case .respond(let length): .reply(length: length)
        case .drop(let reason): .drop(reason: reason.rawValue)
        }
    }

    @inline(__always)
    mutating func stampTransmitTime(_ time: UTCInstant, reply: UnsafeMutableRawBufferPointer) {
        core.stampTransmitTime(time, reply: reply, random: &random)
    }
}
