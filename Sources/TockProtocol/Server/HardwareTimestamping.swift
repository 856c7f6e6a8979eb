/// Hardware timestamping of NTP packets by the network card (chrony's `hwtimestamp`): the
/// decisions, no I/O. The transport asks the kernel what an interface can do
/// (`HardwareTimestampingSupport`, from ETHTOOL_GET_TS_INFO), turns it on as `plan` says, reads
/// the card's PTP hardware clock (PHC) against the system clock, and converts each raw
/// hardware timestamp with the `HardwareClockMapping` the `HardwareClockTracker` fits.
///
/// Why: a software timestamp is taken where the kernel's network stack meets the packet, after
/// (receive) or before (transmit) the driver, interrupt coalescing and queues on the card; a
/// hardware timestamp is taken as the frame crosses the wire. RFC 5905 §8 wants T2 and T3 at
/// arrival and departure; on a loaded server the difference is microseconds.

/// What an interface can do, as the kernel reports it (Documentation/networking/timestamping.rst
/// §3: ETHTOOL_GET_TS_INFO), decoded.
public struct HardwareTimestampingSupport: Sendable, Equatable {
    /// The PTP hardware clock the card timestamps with (/dev/ptpN), or nil when it has none.
    public var hardwareClock: Int?
    /// SOF_TIMESTAMPING_RAW_HARDWARE: the card's timestamps can be reported.
    public var rawHardware: Bool
    /// SOF_TIMESTAMPING_RX_HARDWARE.
    public var receiveHardware: Bool
    /// SOF_TIMESTAMPING_TX_HARDWARE.
    public var transmitHardware: Bool
    /// HWTSTAMP_TX_ON among the transmit types.
    public var transmitOn: Bool
    /// HWTSTAMP_FILTER_ALL among the receive filters.
    public var filterAll: Bool
    /// HWTSTAMP_FILTER_NTP_ALL among the receive filters.
    public var filterNTP: Bool
    /// The link speed, when the driver knows it: the receive correction needs it.
    public var linkSpeedMbps: Int?

    /// A description of an interface's abilities.
    public init(
        hardwareClock: Int?, rawHardware: Bool, receiveHardware: Bool, transmitHardware: Bool,
        transmitOn: Bool, filterAll: Bool, filterNTP: Bool, linkSpeedMbps: Int?
    ) {
        self.hardwareClock = hardwareClock
        self.rawHardware = rawHardware
        self.receiveHardware = receiveHardware
        self.transmitHardware = transmitHardware
        self.transmitOn = transmitOn
        self.filterAll = filterAll
        self.filterNTP = filterNTP
        self.linkSpeedMbps = linkSpeedMbps
    }

    /// How to use the interface, or why it cannot be used. Receive timestamps need a filter
    /// that takes NTP packets (all packets, or NTP's own where the card has that filter);
    /// without one the card still timestamps what it sends (interleaved replies gain), as
    /// chrony's `rxfilter none` does. Transmit timestamps and a readable clock are required.
    public var plan: Result<HardwareTimestampingPlan, HardwareTimestampingUnavailable> {
        guard let clock = hardwareClock, clock >= 0 else { return .failure(.noHardwareClock) }
        guard rawHardware else { return .failure(.noRawTimestamps) }
        guard transmitHardware, transmitOn else { return .failure(.noTransmitTimestamps) }
        let filter: HardwareReceiveFilter
        if receiveHardware, filterAll {
            filter = .all
        } else if receiveHardware, filterNTP {
            filter = .ntp
        } else {
            filter = .none
        }
        return .success(HardwareTimestampingPlan(hardwareClock: clock, receiveFilter: filter, linkSpeedMbps: linkSpeedMbps))
    }
}

/// Which received packets the card timestamps (`hwtstamp_rx_filters`).
public enum HardwareReceiveFilter: Sendable, Equatable, CustomStringConvertible {
    /// HWTSTAMP_FILTER_ALL.
    case all
    /// HWTSTAMP_FILTER_NTP_ALL.
    case ntp
    /// None: receive timestamps stay software.
    case none

    public var description: String {
        switch self {
        case .all: "all"
        case .ntp: "ntp"
        case .none: "none"
        }
    }
}

/// How an interface is used: its clock, its receive filter, its link speed.
public struct HardwareTimestampingPlan: Sendable, Equatable {
    /// /dev/ptpN.
    public var hardwareClock: Int
    /// The receive filter to ask for.
    public var receiveFilter: HardwareReceiveFilter
    /// For the receive correction; nil: none.
    public var linkSpeedMbps: Int?

    /// A plan.
    public init(hardwareClock: Int, receiveFilter: HardwareReceiveFilter, linkSpeedMbps: Int?) {
        self.hardwareClock = hardwareClock
        self.receiveFilter = receiveFilter
        self.linkSpeedMbps = linkSpeedMbps
    }
}

/// Why an interface keeps software timestamps: each is a warning, and its packets are
/// timestamped as on every other interface.
public enum HardwareTimestampingUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    /// if_nametoindex found no such interface.
    case noSuchInterface
    /// The driver reports no PTP hardware clock (loopback, veth, most virtual NICs).
    case noHardwareClock
    /// No SOF_TIMESTAMPING_RAW_HARDWARE.
    case noRawTimestamps
    /// No hardware transmit timestamps, or HWTSTAMP_TX_ON not among its types.
    case noTransmitTimestamps
    /// SIOCSHWTSTAMP needs CAP_NET_ADMIN.
    case permissionDenied
    /// The driver refused a request (ETHTOOL_GET_TS_INFO or SIOCSHWTSTAMP) with this errno.
    case driverRefused(Int32)
    /// /dev/ptpN could not be opened or read (errno).
    case clockUnreadable(Int32)

    public var description: String {
        switch self {
        case .noSuchInterface: "no such interface"
        case .noHardwareClock: "the driver reports no PTP hardware clock (PHC)"
        case .noRawTimestamps: "the driver reports no raw hardware timestamps"
        case .noTransmitTimestamps: "the driver cannot timestamp transmitted packets"
        case .permissionDenied: "turning hardware timestamps on needs CAP_NET_ADMIN"
        case .driverRefused(let e): "the driver refused (errno \(e))"
        case .clockUnreadable(let e): "the PTP hardware clock cannot be read (errno \(e))"
        }
    }
}

/// One reading of a PTP hardware clock between two readings of the system clock
/// (PTP_SYS_OFFSET_EXTENDED), nanoseconds since each clock's epoch.
public struct HardwareClockReading: Sendable, Equatable {
    /// System clock just before.
    public var systemBefore: Int64
    /// The hardware clock.
    public var hardware: Int64
    /// System clock just after.
    public var systemAfter: Int64

    /// A reading.
    public init(systemBefore: Int64, hardware: Int64, systemAfter: Int64) {
        self.systemBefore = systemBefore
        self.hardware = hardware
        self.systemAfter = systemAfter
    }

    /// How long the reading took: the bound on its error.
    public var delay: Int64 { systemAfter &- systemBefore }
}

/// How to turn a hardware clock's time into system time: a line through the tracker's recent
/// readings, anchored at the newest. Valid until `validUntil` (system time): a clock no longer
/// read is no longer believed, and packets fall back to software timestamps.
public struct HardwareClockMapping: Sendable, Equatable {
    /// A hardware time on the line.
    public var hardwareReference: Int64
    /// The system time at `hardwareReference`.
    public var systemReference: Int64
    /// System nanoseconds per hardware nanosecond.
    public var rate: Double
    /// System time after which the mapping is not used.
    public var validUntil: Int64

    /// A mapping.
    public init(hardwareReference: Int64, systemReference: Int64, rate: Double, validUntil: Int64) {
        self.hardwareReference = hardwareReference
        self.systemReference = systemReference
        self.rate = rate
        self.validUntil = validUntil
    }

    /// The system time of hardware time `hardware`.
    @inline(__always)
    public func systemTime(hardware: Int64) -> Int64 {
        let elapsed = Double(hardware &- hardwareReference)
        return systemReference &+ Int64((elapsed * rate).rounded())
    }

    /// Nanoseconds a frame of `frameLength` bytes (layer 2, without its 4-byte frame check
    /// sequence) takes on a link of `linkSpeedMbps`: added to a hardware receive timestamp.
    /// Cards timestamp a frame at its start (after the start-of-frame delimiter); the request
    /// has then not fully arrived. Moving T2 to the frame's end and keeping T3 at the reply's
    /// start puts one frame's duration in each direction of the client's measured delay, so it
    /// cancels in the offset (RFC 5905 §8 assumes symmetric paths); chrony corrects the same way.
    @inline(__always)
    public static func receiveCorrection(frameLength: Int, linkSpeedMbps: Int) -> Int64 {
        guard frameLength > 0, linkSpeedMbps > 0 else { return 0 }
        return Int64((frameLength + 4) * 8 * 1000 / linkSpeedMbps)
    }
}

/// Fits a hardware clock to the system clock from periodic bursts of readings: of each burst
/// the fastest reading (the least room for error), a least-squares line through the last
/// `window` of them (the two clocks run at different rates: a PHC that no ptp4l disciplines
/// drifts tens of ppm from a disciplined system clock, microseconds per second), and a fresh
/// start when a reading jumps off the line (someone stepped either clock).
///
/// Runs off the packet path (once per `interval`); workers only read the mapping it publishes.
public struct HardwareClockTracker: Sendable {
    /// Readings the line is fitted to.
    public static let window = 8
    /// Seconds between bursts of readings.
    public static let intervalNanoseconds: Int64 = 1_000_000_000
    /// A reading this far off the line (nanoseconds) means a step: start again.
    public static let stepThreshold: Int64 = 1_000_000
    /// How long a mapping stays valid without new readings: three missed bursts.
    public static let validity: Int64 = 3 * intervalNanoseconds + intervalNanoseconds / 2

    private var hardware: [Int64] = []
    private var offsets: [Int64] = []
    /// The current mapping: nil until two readings are in (one cannot tell the rate).
    public private(set) var mapping: HardwareClockMapping?
    /// Fresh starts after a step.
    public private(set) var resets = 0

    /// A tracker with no readings.
    public init() {}

    /// Adds a burst of readings; returns the mapping it leads to.
    @discardableResult
    public mutating func add(_ burst: some Collection<HardwareClockReading>) -> HardwareClockMapping? {
        guard let best = burst.filter({ $0.delay >= 0 }).min(by: { $0.delay < $1.delay }) else { return mapping }
        let system = best.systemBefore &+ best.delay / 2
        let offset = system &- best.hardware
        if let mapping, abs(mapping.systemTime(hardware: best.hardware) &- system) > Self.stepThreshold {
            hardware.removeAll()
            offsets.removeAll()
            self.mapping = nil
            resets += 1
        }
        hardware.append(best.hardware)
        offsets.append(offset)
        if hardware.count > Self.window {
            hardware.removeFirst()
            offsets.removeFirst()
        }
        guard hardware.count >= 2 else { return nil }
        // Offset (system − hardware) against hardware time, relative to the newest reading.
        let reference = best.hardware
        let n = Double(hardware.count)
        var sumX = 0.0, sumY = 0.0
        for i in 0..<hardware.count {
            sumX += Double(hardware[i] &- reference)
            sumY += Double(offsets[i] &- offset)
        }
        let meanX = sumX / n, meanY = sumY / n
        var sxx = 0.0, sxy = 0.0
        for i in 0..<hardware.count {
            let dx = Double(hardware[i] &- reference) - meanX
            sxx += dx * dx
            sxy += dx * (Double(offsets[i] &- offset) - meanY)
        }
        guard sxx > 0 else { return mapping }
        let slope = sxy / sxx
        let offsetAtReference = offset &+ Int64((meanY - slope * meanX).rounded())
        mapping = HardwareClockMapping(
            hardwareReference: reference,
            systemReference: reference &+ offsetAtReference,
            rate: 1 + slope,
            validUntil: system &+ Self.validity
        )
        return mapping
    }
}
