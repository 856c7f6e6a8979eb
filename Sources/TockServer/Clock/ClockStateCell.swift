import TockProtocol

/// The server's current clock state, published by the clock-state service once a second and
/// read by every worker and connection (a `VersionedCell`: no lock on the packet path).
package typealias ClockStateCell = VersionedCell<ServerClockState>

/// A worker's cached copy of the clock state, refreshed once per batch.
typealias CachedClockState = VersionedCopy<ServerClockState>

extension VersionedCopy where Value == ServerClockState {
    /// The clock state as of the last refresh.
    @inline(__always)
    var state: ServerClockState { value }
}

extension VersionedCell where Value == ServerClockState {
    /// The current clock state.
    package var state: ServerClockState { current }
}
