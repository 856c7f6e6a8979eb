import Atomics
import Glibc
import Logging
import NIOConcurrencyHelpers
import TockProtocol
import TockSockets

/// The interfaces whose cards timestamp NTP packets (`--hw-timestamping`), their PTP hardware
/// clocks, and the mappings from each clock to system time that workers convert raw hardware
/// timestamps with.
///
/// Set up once, before the sockets are bound: each interface is asked what it can do
/// (`HardwareTimestampingSupport.plan`), turned on (SIOCSHWTSTAMP, needing CAP_NET_ADMIN; tockd
/// binds as root before it drops privileges) and its clock opened. An interface that cannot is
/// reported with its reason and keeps software timestamps, like every packet on the others.
/// `HardwareClockService` reads each clock once a second and publishes the fitted mapping;
/// workers copy the mappings when the version changes (one atomic load per batch), so the packet
/// path neither locks nor allocates. `stop` puts each interface's previous setting back.
package final class HardwareClocks: Sendable {
    /// At most this many interfaces: workers keep the mappings in a fixed array.
    package static let capacity = 8

    /// One interface asked for, and what became of it.
    package struct Interface: Sendable {
        package let name: String
        package let index: UInt32
        /// How it is used, or why not.
        package let outcome: Result<HardwareTimestampingPlan, HardwareTimestampingUnavailable>
        let device: HardwareClockDevice?
        let previous: InterfaceTimestamping.Previous?
    }

    /// Every interface asked for, in order (with `*`, those that can).
    package let interfaces: [Interface]
    /// What was asked for.
    package let requested: [String]
    /// Per interface: the current mapping and how often its fit started again.
    private let fits: VersionedCell<Fits>

    /// The clock fits of every interface, in `interfaces` order.
    struct Fits: Sendable {
        var mappings: [HardwareClockMapping?]
        var resets: [Int]
    }
    private let stopped = ManagedAtomic(false)

    /// Whether any interface is in hardware mode: the NTP sockets then ask for the cards'
    /// timestamps too.
    package var isActive: Bool {
        interfaces.contains { if case .success = $0.outcome { true } else { false } }
    }

    /// Sets up every interface in `names` (`*`: every interface that can, silently skipping
    /// those that cannot).
    package convenience init(names: [String]) {
        var list: [Interface] = []
        let everything = names.contains("*")
        // `*`: devices of their own only; a VLAN or bond passes these settings to the device
        // underneath, which `*` already takes.
        let candidates = everything ? InterfaceTimestamping.allInterfaces().filter(InterfaceTimestamping.isPhysical) : names
        for name in candidates where !list.contains(where: { $0.name == name }) {
            guard list.count < Self.capacity else { break }
            let index = InterfaceTimestamping.index(of: name) ?? 0
            var device: HardwareClockDevice?
            var previous: InterfaceTimestamping.Previous?
            let outcome = InterfaceTimestamping.support(of: name).flatMap(\.plan).flatMap { plan -> Result<HardwareTimestampingPlan, HardwareTimestampingUnavailable> in
                let opened: HardwareClockDevice
                do throws(HardwareTimestampingUnavailable) {
                    opened = try HardwareClockDevice(index: plan.hardwareClock)
                } catch {
                    return .failure(error)
                }
                return InterfaceTimestamping.enable(name, plan: plan).map { enabled in
                    device = opened
                    previous = enabled.previous
                    return enabled.plan
                }
            }
            if everything, device == nil { continue }
            list.append(Interface(name: name, index: index, outcome: outcome, device: device, previous: previous))
        }
        self.init(interfaces: list, requested: names)
    }

    /// Interfaces already set up (tests build them without a card).
    init(interfaces: [Interface], requested: [String]) {
        self.interfaces = interfaces
        self.requested = requested
        fits = VersionedCell(Fits(mappings: Array(repeating: nil, count: interfaces.count), resets: Array(repeating: 0, count: interfaces.count)), version: 0)
    }

    deinit {
        stop()
    }

    /// Puts back each interface's previous timestamping setting (once), last set first (a
    /// device named after a VLAN on it gets back what it had before either); says which it
    /// could not (tockd no longer has CAP_NET_ADMIN after `--user`).
    package func stop(logger: Logger? = nil) {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        for interface in interfaces.reversed() {
            guard let previous = interface.previous else { continue }
            let error = InterfaceTimestamping.restore(interface.name, previous)
            if error != 0 {
                logger?.warning("could not put back the hardware timestamping settings of \(interface.name) (errno \(error)\(error == EPERM ? ": tockd no longer has CAP_NET_ADMIN" : "")); the card keeps timestamping", metadata: ["interface": "\(interface.name)"])
            }
        }
    }

    /// Reads every clock once and publishes the new mappings.
    func sample(trackers: inout [HardwareClockTracker]) {
        var changed = false
        var fresh: [HardwareClockMapping?] = []
        for (i, interface) in interfaces.enumerated() {
            guard let device = interface.device, case .success(let burst) = device.readings() else {
                fresh.append(trackers[i].mapping)
                continue
            }
            fresh.append(trackers[i].add(burst))
            changed = true
        }
        guard changed else { return }
        publish(fresh, resets: trackers.map(\.resets))
    }

    /// Replaces the mappings (one per interface); workers pick them up at their next batch.
    func publish(_ fresh: [HardwareClockMapping?], resets counts: [Int]) {
        precondition(fresh.count == interfaces.count && counts.count == interfaces.count, "one mapping per interface")
        fits.publish(Fits(mappings: fresh, resets: counts))
    }

    /// The current mapping of each interface, and the version they belong to.
    func read() -> (mappings: [HardwareClockMapping?], version: UInt64) {
        let (current, version) = fits.read()
        return (current.mappings, version)
    }

    @inline(__always)
    var currentVersion: UInt64 { fits.currentVersion }

    /// What `tock status` and the metrics show of each interface.
    package func status(now: UTCInstant) -> [ServerStatus.HardwareInterface] {
        let current = fits.current
        return interfaces.enumerated().map { i, interface in
            switch interface.outcome {
            case .success(let plan):
                let mapping = current.mappings[i]
                let valid = mapping.map { $0.validUntil >= now.nanosecondsSinceUnixEpoch } ?? false
                return ServerStatus.HardwareInterface(
                    name: interface.name, hardware: true, reason: valid ? nil : "the hardware clock has no current reading yet",
                    clock: "/dev/ptp\(plan.hardwareClock)", receiveFilter: "\(plan.receiveFilter)",
                    rateErrorPPM: valid ? (mapping!.rate - 1) * 1e6 : nil, clockResets: UInt64(current.resets[i])
                )
            case .failure(let reason):
                return ServerStatus.HardwareInterface(name: interface.name, hardware: false, reason: "\(reason)")
            }
        }
    }

    /// Logs what became of each interface: a warning for each that keeps software timestamps.
    package func log(to logger: Logger) {
        if interfaces.isEmpty {
            logger.warning("hardware timestamping unavailable: no interface can (\(requested.joined(separator: ", "))); every packet keeps software timestamps")
        }
        for interface in interfaces {
            switch interface.outcome {
            case .success(let plan):
                var metadata: Logger.Metadata = ["interface": "\(interface.name)", "clock": "/dev/ptp\(plan.hardwareClock)", "receive_filter": "\(plan.receiveFilter)"]
                if let speed = plan.linkSpeedMbps { metadata["link_mbps"] = "\(speed)" }
                logger.info("hardware timestamping on", metadata: metadata)
            case .failure(let reason):
                logger.warning("hardware timestamping unavailable: \(interface.name) keeps software timestamps: \(reason)", metadata: ["interface": "\(interface.name)"])
            }
        }
    }
}

/// Reads each hardware clock once a second (`HardwareClockTracker.intervalNanoseconds`) and
/// publishes the mappings.
struct HardwareClockService {
    let clocks: HardwareClocks

    func run() async {
        var trackers = clocks.interfaces.map { _ in HardwareClockTracker() }
        while !Task.isCancelled {
            clocks.sample(trackers: &trackers)
            do {
                try await Task.sleep(nanoseconds: UInt64(HardwareClockTracker.intervalNanoseconds))
            } catch {
                return
            }
        }
    }
}

/// A worker's copy of the hardware clock mappings: a fixed array, refreshed when the version
/// changes, so converting a timestamp is a short scan and a multiply.
struct CachedHardwareClocks {
    private struct Entry {
        var interface: UInt32 = 0
        var linkSpeedMbps = 0
        var mapping = HardwareClockMapping(hardwareReference: 0, systemReference: 0, rate: 1, validUntil: Int64.min)
    }

    let clocks: HardwareClocks?
    private var entries = InlineArray<8, Entry>(repeating: Entry())
    private var count = 0
    private var version: UInt64 = .max
    /// Whether the socket asks for the cards' timestamps at all.
    let isActive: Bool
    /// Interfaces in hardware mode, with a current mapping or not: a timestamp whose interface
    /// is unknown is only unambiguous when this is 1.
    private let enabled: Int
    /// How far (nanoseconds) a converted hardware receive time may lie from the kernel's
    /// software time of the same packet: further means a clock was stepped since the card's
    /// clock was last read, and the software time is used.
    static var agreement: Int64 { 1_000_000 }

    init(_ clocks: HardwareClocks?) {
        self.clocks = clocks
        isActive = clocks?.isActive ?? false
        enabled = clocks?.interfaces.count { if case .success = $0.outcome { true } else { false } } ?? 0
        refresh()
    }

    /// Copies the mappings if they changed.
    @inline(__always)
    mutating func refresh() {
        guard let clocks, isActive, clocks.currentVersion != version else { return }
        let (mappings, v) = clocks.read()
        count = 0
        for (i, interface) in clocks.interfaces.enumerated() {
            guard case .success(let plan) = interface.outcome, let mapping = mappings[i], count < entries.count else { continue }
            entries[count] = Entry(interface: interface.index, linkSpeedMbps: plan.linkSpeedMbps ?? 0, mapping: mapping)
            count += 1
        }
        version = v
    }

    /// The interface whose card took a received packet's hardware timestamp: the one the
    /// kernel names with it (SCM_TIMESTAMPING_PKTINFO), else the one the packet arrived by.
    @inline(__always)
    static func interface(of control: ReceivedControl) -> UInt32 {
        control.timestampInterface != 0 ? control.timestampInterface : control.arrivalInterface
    }

    /// A received packet's time from its card, converted, moved to the frame's end, and only if
    /// it lies within `agreement` of the kernel's software time `software` of the same packet;
    /// nil when the card did not timestamp it or its clock cannot be trusted now.
    @inline(__always)
    func receiveTime(_ control: ReceivedControl, software: UTCInstant, now: UTCInstant) -> UTCInstant? {
        guard control.hardwareReceiveTime != 0,
              let card = systemTime(hardware: control.hardwareReceiveTime, interface: Self.interface(of: control), frameLength: control.frameLength, receive: true, now: now),
              abs(card.nanoseconds(since: software)) < Self.agreement
        else { return nil }
        return card
    }

    /// The system time of a hardware timestamp taken by the card of `interface` (0: unknown,
    /// which is only unambiguous with one card in hardware mode), or nil when that card's mapping is missing or
    /// stale at `now`. A receive timestamp of a `frameLength`-byte frame is moved to the frame's
    /// end (`HardwareClockMapping.receiveCorrection`).
    @inline(__always)
    func systemTime(hardware: Int64, interface: UInt32, frameLength: UInt32 = 0, receive: Bool, now: UTCInstant) -> UTCInstant? {
        guard hardware != 0 else { return nil }
        for i in 0..<count {
            let entry = entries[i]
            guard entry.interface == interface || (interface == 0 && enabled == 1) else { continue }
            guard entry.mapping.validUntil >= now.nanosecondsSinceUnixEpoch else { return nil }
            var time = entry.mapping.systemTime(hardware: hardware)
            if receive { time &+= HardwareClockMapping.receiveCorrection(frameLength: Int(frameLength), linkSpeedMbps: entry.linkSpeedMbps) }
            return UTCInstant(nanosecondsSinceUnixEpoch: time)
        }
        return nil
    }
}
