import Atomics
import NIOConcurrencyHelpers
import TockProtocol

/// The server's current clock state, published by the clock-state service and read by every
/// worker.
///
/// Workers keep a copy and compare a version number once per batch (one acquiring atomic load);
/// only when it changed do they take the lock to copy the new state. So the packet path never
/// locks, and a change reaches every reply within one batch.
package final class ClockStateCell: Sendable {
    private let version = ManagedAtomic<UInt64>(1)
    private let state: NIOLockedValueBox<ServerClockState>

    /// Creates a cell holding `initial`.
    package init(_ initial: ServerClockState) {
        self.state = NIOLockedValueBox(initial)
    }

    /// Replaces the state; every worker picks it up at its next batch.
    package func publish(_ newState: ServerClockState) {
        state.withLockedValue { $0 = newState }
        version.wrappingIncrement(ordering: .releasing)
    }

    /// The current version; changes whenever the state does.
    @inline(__always)
    package var currentVersion: UInt64 { version.load(ordering: .acquiring) }

    /// The current state and the version it belongs to (or an older version, in which case the
    /// reader copies again next time).
    package func read() -> (state: ServerClockState, version: UInt64) {
        let v = version.load(ordering: .acquiring)
        return (state.withLockedValue { $0 }, v)
    }
}

/// A worker's cached copy of a `ClockStateCell`.
struct CachedClockState {
    let cell: ClockStateCell
    private(set) var state: ServerClockState
    private var version: UInt64

    init(_ cell: ClockStateCell) {
        self.cell = cell
        (state, version) = cell.read()
    }

    /// Copies the cell's state if it changed since the last call.
    @inline(__always)
    mutating func refresh() {
        if cell.currentVersion != version {
            (state, version) = cell.read()
        }
    }
}
