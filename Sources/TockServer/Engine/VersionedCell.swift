import Atomics
import NIOConcurrencyHelpers

/// A value that one writer replaces now and then and many worker threads read on every batch:
/// the clock state, a service's policy, the Roughtime keys, the network cards' clock fits.
///
/// The value sits behind a lock, beside an atomic version that changes with every publication.
/// A reader keeps a `VersionedCopy` and compares the version once per batch (one acquiring
/// atomic load); only when it moved does it take the lock to copy the new value. So the packet
/// path never locks, and a change reaches every reply within one batch.
package final class VersionedCell<Value: Sendable>: Sendable {
    private let version: ManagedAtomic<UInt64>
    private let value: NIOLockedValueBox<Value>

    /// A cell holding `initial`, at `version` (readers that start from a cell's first value see
    /// it at once whatever the number).
    package init(_ initial: Value, version: UInt64 = 1) {
        self.value = NIOLockedValueBox(initial)
        self.version = ManagedAtomic(version)
    }

    /// Replaces the value; every reader picks it up at its next batch.
    package func publish(_ newValue: Value) {
        value.withLockedValue { $0 = newValue }
        version.wrappingIncrement(ordering: .releasing)
    }

    /// Changes the value in place under the lock; `body` returns whether it changed anything,
    /// and only then is the version moved (so readers copy nothing for a no-op). Returns that.
    @discardableResult
    package func update(_ body: (inout Value) -> Bool) -> Bool {
        let changed = value.withLockedValue(body)
        if changed { version.wrappingIncrement(ordering: .releasing) }
        return changed
    }

    /// The current version; changes whenever the value does.
    @inline(__always)
    package var currentVersion: UInt64 { version.load(ordering: .acquiring) }

    /// The current value and the version it belongs to (or an older version, in which case the
    /// reader copies again next time: the version is read before the value).
    package func read() -> (value: Value, version: UInt64) {
        let v = version.load(ordering: .acquiring)
        return (value.withLockedValue { $0 }, v)
    }

    /// The current value.
    package var current: Value { value.withLockedValue { $0 } }
}

/// One reader's copy of a `VersionedCell`, refreshed when the cell's version moves. Owned by
/// one thread (a worker, a connection's event loop), so it needs no synchronisation itself.
package struct VersionedCopy<Value: Sendable> {
    /// The cell copied from.
    package let cell: VersionedCell<Value>
    /// The copy.
    package private(set) var value: Value
    private var version: UInt64

    /// A copy of the cell's current value.
    package init(_ cell: VersionedCell<Value>) {
        self.cell = cell
        (value, version) = cell.read()
    }

    /// Copies the cell's value if it changed since the last call; returns whether it did.
    @inline(__always)
    @discardableResult
    package mutating func refresh() -> Bool {
        guard cell.currentVersion != version else { return false }
        (value, version) = cell.read()
        return true
    }
}
