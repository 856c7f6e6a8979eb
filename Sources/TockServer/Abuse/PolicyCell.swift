import Atomics
import NIOConcurrencyHelpers
import TockProtocol

/// The access, rate-limit and kiss-o'-death policy of every service, as one value: what a
/// reload (SIGHUP) may change while the server runs.
package struct ServicePolicies: Sendable, Hashable {
    private var policies: [ServicePolicy]

    /// The same policy for every service.
    package init(all policy: ServicePolicy = ServicePolicy()) {
        policies = TockService.allCases.map { _ in policy }
    }

    /// A policy per service, as `policy` gives it.
    package init<Failure: Error>(_ policy: (TockService) throws(Failure) -> ServicePolicy) throws(Failure) {
        var policies: [ServicePolicy] = []
        for service in TockService.allCases { policies.append(try policy(service)) }
        self.policies = policies
    }

    /// One policy each for NTP, Daytime and Time; NTS-KE, NTP's key establishment, and
    /// Roughtime follow NTP's unless given their own.
    package init(ntp: ServicePolicy, daytime: ServicePolicy, time: ServicePolicy, ntsKE: ServicePolicy? = nil, roughtime: ServicePolicy? = nil) {
        policies = TockService.allCases.map { service in
            switch service {
            case .ntp: ntp
            case .daytime: daytime
            case .time: time
            case .ntsKE: ntsKE ?? ntp
            case .roughtime: roughtime ?? ntp
            }
        }
    }

    /// The policy of `service`.
    package subscript(service: TockService) -> ServicePolicy {
        get { policies[TockService.allCases.firstIndex(of: service)!] }
        set { policies[TockService.allCases.firstIndex(of: service)!] = newValue }
    }
}

/// A service's live policy and its rate-limit table, replaceable while workers run.
///
/// Like `ClockStateCell`: workers keep a copy and compare a version once per batch (one acquiring
/// atomic load); only after a reload do they take the lock to copy the new policy, so the
/// packet path never locks and a reload reaches every reply within one batch, without closing
/// a socket or dropping a request in flight.
package final class PolicyCell: Sendable {
    private let version = ManagedAtomic<UInt64>(1)
    private let current: NIOLockedValueBox<(policy: ServicePolicy, limiter: ClientLimiter?)>
    /// Memory for a rate-limit table, fixed at start.
    let tableBytes: Int

    /// A cell for `policy`, with a new table if it limits rates.
    init(_ policy: ServicePolicy, tableBytes: Int) {
        self.tableBytes = tableBytes
        self.current = NIOLockedValueBox((policy, policy.rateLimit.map { ClientLimiter(policy: $0, memoryBytes: tableBytes) }))
    }

    /// Installs `policy`. The rate-limit table is kept when the rate limit itself is unchanged
    /// (so clients keep their buckets across a reload that only edits access lists), and
    /// replaced by an empty one when it changed. Returns whether anything changed.
    @discardableResult
    func publish(_ policy: ServicePolicy) -> Bool {
        let changed = current.withLockedValue { current -> Bool in
            guard current.policy != policy else { return false }
            let limiter = policy.rateLimit == current.policy.rateLimit
                ? current.limiter
                : policy.rateLimit.map { ClientLimiter(policy: $0, memoryBytes: tableBytes) }
            current = (policy, limiter)
            return true
        }
        if changed { version.wrappingIncrement(ordering: .releasing) }
        return changed
    }

    /// The current version; changes whenever the policy does.
    @inline(__always)
    var currentVersion: UInt64 { version.load(ordering: .acquiring) }

    /// The current policy and table, and the version they belong to (or an older one, in which
    /// case the reader copies again next time).
    func read() -> (policy: ServicePolicy, limiter: ClientLimiter?, version: UInt64) {
        let v = version.load(ordering: .acquiring)
        let (policy, limiter) = current.withLockedValue { $0 }
        return (policy, limiter, v)
    }

    /// The current policy.
    package var policy: ServicePolicy { read().policy }
    /// The current rate-limit table, if rates are limited.
    package var limiter: ClientLimiter? { read().limiter }
}

/// A worker's cached copy of a `PolicyCell`.
struct CachedPolicy {
    let cell: PolicyCell
    private(set) var policy: ServicePolicy
    private(set) var limiter: ClientLimiter?
    private var version: UInt64

    init(_ cell: PolicyCell) {
        self.cell = cell
        (policy, limiter, version) = cell.read()
    }

    /// Copies the cell's policy if it changed since the last call; returns whether it did.
    @inline(__always)
    @discardableResult
    mutating func refresh() -> Bool {
        guard cell.currentVersion != version else { return false }
        (policy, limiter, version) = cell.read()
        return true
    }
}
