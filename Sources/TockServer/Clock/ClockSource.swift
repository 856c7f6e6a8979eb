import CTockShims
import Logging
import ServiceLifecycle
import TockProtocol
import TockSockets

/// Where tockd's statement about its own clock comes from.
package enum ClockSource: Sendable, Hashable, CustomStringConvertible {
    /// The kernel's synchronisation state (adjtimex): whatever disciplines the clock (chronyd,
    /// ntpd, ptp4l) decides whether tockd claims to be synchronised. Served at `stratum` when
    /// it is, with the local-clock reference ID (the kernel does not know its upstream).
    case kernel(stratum: UInt8)
    /// The local clock declared authoritative, like chrony's `local stratum N`: always
    /// synchronised at `stratum`, reference ID `LOCL`.
    case local(stratum: UInt8)
    /// Always unsynchronised (leap 3, stratum 0): for testing clients and for draining a server
    /// out of a pool without stopping it.
    case unsynchronized
    /// Published by the embedding program through `TockServer.clockState` (tests inject
    /// states this way); starts unsynchronised and is never re-read.
    case external

    /// The default stratum for a kernel-disciplined clock: the kernel does not know its distance
    /// from a reference clock, and 2 is right for a host synchronised to a stratum-1 server.
    package static let defaultKernelStratum: UInt8 = 2
    /// The default stratum for a local clock, chrony's default for `local`.
    package static let defaultLocalStratum: UInt8 = 10

    package var description: String {
        switch self {
        case .kernel(let s): "kernel (stratum \(s) when synchronised)"
        case .local(let s): "local clock, stratum \(s)"
        case .unsynchronized: "unsynchronised (declared)"
        case .external: "external (published by the embedding program)"
        }
    }

    /// The state to serve now.
    func currentState(now: UTCInstant, precisionNanoseconds: Int64) -> ServerClockState {
        switch self {
        case .kernel(let stratum):
            let raw = tock_read_kernel_clock()
            guard raw.state >= 0 else { return .unsynchronized }
            let reading = KernelClockReading(
                status: raw.status,
                state: raw.state,
                maxErrorMicroseconds: Int64(raw.maxerror),
                estimatedErrorMicroseconds: Int64(raw.esterror)
            )
            return reading.serverState(stratum: stratum, referenceID: ReferenceID.localClock(stratum: stratum), now: now)
        case .local(let stratum):
            return .local(stratum: stratum, now: now, precisionNanoseconds: precisionNanoseconds)
        case .unsynchronized, .external:
            return .unsynchronized
        }
    }
}

/// Re-reads the clock source once a second and publishes the result to the workers; logs each
/// change of synchronisation, stratum or leap status once.
struct ClockStateService: Service {
    let source: ClockSource
    let cell: ClockStateCell
    let precisionNanoseconds: Int64
    let logger: Logger
    /// Injected for tests; defaults to the system clock.
    let now: @Sendable () -> UTCInstant

    func run() async throws {
        if source == .external { return }
        var last = cell.state
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .seconds(1))
            } catch {
                return
            }
            let state = source.currentState(now: now(), precisionNanoseconds: precisionNanoseconds)
            cell.publish(state)
            if state.leap != last.leap || state.stratum != last.stratum {
                logger.notice("clock state changed", metadata: ClockStateService.metadata(state))
            }
            last = state
        }
    }

    /// Log metadata describing a clock state.
    static func metadata(_ state: ServerClockState) -> Logger.Metadata {
        [
            "synchronised": "\(state.isSynchronized)",
            "stratum": "\(state.stratum)",
            "leap": "\(state.leap)",
            "root_dispersion": "\(TimeFigure.seconds(state.rootDispersionNanoseconds)) s",
        ]
    }
}
