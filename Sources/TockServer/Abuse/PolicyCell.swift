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

/// A service's policy as the packet path uses it: the policy and its running rate-limit table.
package struct LivePolicy: Sendable {
    /// The access list, rate limit and kiss-o'-death settings.
    package var policy: ServicePolicy
    /// The rate-limit table, when the policy limits rates.
    package var limiter: ClientLimiter?
}

/// A service's live policy and its rate-limit table, replaceable while workers run: a
/// `VersionedCell`, so a reload reaches every reply within one batch without closing a socket
/// or dropping a request in flight, and the packet path never locks.
package final class PolicyCell: Sendable {
    /// The policy and table workers copy.
    let cell: VersionedCell<LivePolicy>
    /// Memory for a rate-limit table, fixed at start.
    let tableBytes: Int

    /// A cell for `policy`, with a new table if it limits rates.
    init(_ policy: ServicePolicy, tableBytes: Int) {
        self.tableBytes = tableBytes
        self.cell = VersionedCell(LivePolicy(policy: policy, limiter: policy.rateLimit.map { ClientLimiter(policy: $0, memoryBytes: tableBytes) }))
    }

    /// Installs `policy`. The rate-limit table is kept when the rate limit itself is unchanged
    /// (so clients keep their buckets across a reload that only edits access lists), and
    /// replaced by an empty one when it changed. Returns whether anything changed.
    @discardableResult
    func publish(_ policy: ServicePolicy) -> Bool {
        let tableBytes = self.tableBytes
        return cell.update { current in
            guard current.policy != policy else { return false }
            let limiter = policy.rateLimit == current.policy.rateLimit
                ? current.limiter
                : policy.rateLimit.map { ClientLimiter(policy: $0, memoryBytes: tableBytes) }
            current = LivePolicy(policy: policy, limiter: limiter)
            return true
        }
    }

    /// The current policy and table.
    package var live: LivePolicy { cell.current }
    /// The current policy.
    package var policy: ServicePolicy { live.policy }
    /// The current rate-limit table, if rates are limited.
    package var limiter: ClientLimiter? { live.limiter }
}

/// A worker's admission of clients (`ClientAdmission`) under a service's live policy: the
/// policy copied when a reload changes it, and the monotonic time the rate limit needs, both
/// refreshed once per batch.
struct LiveAdmission {
    private var copy: VersionedCopy<LivePolicy>
    /// The admission the core's decisions take.
    private(set) var admission: ClientAdmission<ClientLimiter>

    init(_ cell: PolicyCell) {
        copy = VersionedCopy(cell.cell)
        admission = ClientAdmission(policy: copy.value.policy, table: copy.value.limiter, monotonicNanoseconds: 0)
    }

    /// Takes a reloaded policy, and reads the monotonic clock when rates are limited (once per
    /// batch: every request of the batch is charged at the same time).
    @inline(__always)
    mutating func refresh(monotonicNanoseconds now: () -> Int64) {
        if copy.refresh() {
            admission = ClientAdmission(policy: copy.value.policy, table: copy.value.limiter, monotonicNanoseconds: 0)
        }
        if admission.table != nil { admission.monotonicNanoseconds = now() }
    }
}
