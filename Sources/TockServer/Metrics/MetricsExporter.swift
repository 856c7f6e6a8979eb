import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus
import TockProtocol

/// tockd's figures as swift-metrics counters and gauges, exported in Prometheus's text format
/// through swift-prometheus.
///
/// The workers never touch swift-metrics: they publish plain per-worker counters once per
/// batch (see `DatagramCounters`), and this exporter turns the totals into counter increments
/// when it is scraped. So the packet path has no lock and no allocation, and a scrape sees
/// every request counted up to the workers' last batch.
package final class MetricsExporter: Sendable {
    private let server: TockServer
    private let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    /// The swift-metrics objects and the totals already added to each counter; touched only
    /// under this lock, by scrapes.
    private let state = NIOLockedValueBox(State())

    struct State {
        var counters: [String: (counter: CoreMetrics.Counter, total: UInt64)] = [:]
        var gauges: [String: CoreMetrics.Gauge] = [:]
    }

    package init(server: TockServer) {
        self.server = server
        self.factory = PrometheusMetricsFactory(registry: registry)
    }

    /// The current figures in Prometheus's text exposition format.
    package func scrape() -> [UInt8] {
        let status = server.status(busiestClients: 0)
        return state.withLockedValue { state in
            update(&state, from: status)
            var out: [UInt8] = []
            out.reserveCapacity(8192)
            registry.emit(into: &out)
            return out
        }
    }

    private func update(_ state: inout State, from status: ServerStatus) {
        func count(_ label: String, _ dimensions: [(String, String)], _ total: UInt64) {
            let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
            var entry = state.counters[key] ?? (CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory), 0)
            if total > entry.total {
                entry.counter.increment(by: Int64(clamping: total - entry.total))
                entry.total = total
            }
            state.counters[key] = entry
        }
        func gauge(_ label: String, _ dimensions: [(String, String)] = [], value: Double) {
            let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
            let g = state.gauges[key] ?? CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: factory)
            g.record(value)
            state.gauges[key] = g
        }
        for s in status.services {
            let d = [("protocol", s.name), ("transport", s.transport)]
            count("tockd_requests_total", d, s.requests)
            count("tockd_replies_total", d, s.replies)
            count("tockd_errors_total", d, s.errors)
            if s.name == TockService.ntp.rawValue { count("tockd_kisses_of_death_total", d, s.kissesOfDeath) }
            if let authenticated = s.authenticated { count("tockd_nts_replies_total", d, authenticated) }
            if let interleaved = s.interleaved { count("tockd_ntp_interleaved_replies_total", d, interleaved) }
            if let samples = s.transmitDelaySamples, let seconds = s.transmitDelaySeconds {
                // A summary in two counters: the mean send delay T3 is corrected by is their ratio.
                count("tockd_ntp_transmit_delay_samples_total", d, samples)
                count("tockd_ntp_transmit_delay_nanoseconds_total", d, UInt64(max(0, seconds * 1e9)))
            }
            if let received = s.hardwareReceiveTimestamps, let transmitted = s.hardwareTransmitTimestamps {
                count("tockd_ntp_hardware_timestamps_total", d + [("direction", "receive")], received)
                count("tockd_ntp_hardware_timestamps_total", d + [("direction", "transmit")], transmitted)
            }
            for (reason, n) in (s.kisses ?? [:]).sorted(by: { $0.key < $1.key }) {
                count("tockd_kisses_by_reason_total", d + [("reason", reason)], n)
            }
            if let signatures = s.signatures { count("tockd_roughtime_signatures_total", d, signatures) }
            for (size, n) in (s.batchSizes ?? [:]).sorted(by: { $0.key < $1.key }) {
                count("tockd_roughtime_batches_total", d + [("size", size)], n)
            }
            for (reason, n) in s.drops.sorted(by: { $0.key < $1.key }) {
                count("tockd_drops_total", d + [("reason", reason)], n)
            }
            for (reason, n) in (s.evicted ?? [:]).sorted(by: { $0.key < $1.key }) {
                count("tockd_tcp_connections_evicted_total", d + [("reason", reason)], n)
            }
        }
        for w in status.workers {
            let d = [("protocol", w.name), ("address", w.address), ("worker", "\(w.index)")]
            count("tockd_worker_requests_total", d, w.requests)
            count("tockd_worker_replies_total", d, w.replies)
        }
        let c = status.clock
        gauge("tockd_clock_synchronized", value: c.synchronized ? 1 : 0)
        gauge("tockd_clock_stratum", value: Double(c.stratum))
        gauge("tockd_clock_leap", value: Double(c.leap))
        gauge("tockd_clock_root_delay_seconds", value: c.rootDelaySeconds)
        gauge("tockd_clock_root_dispersion_seconds", value: c.rootDispersionSeconds)
        gauge("tockd_uptime_seconds", value: status.uptimeSeconds)
        if let nts = status.nts {
            gauge("tockd_nts_cookie_key_id", value: Double(nts.cookieKey))
            gauge("tockd_nts_cookie_key_period_seconds", value: Double(nts.keyPeriodSeconds))
        }
        if let r = status.roughtime {
            let d = [("source", r.delegationSource)]
            gauge("tockd_roughtime_delegation_start_timestamp_seconds", d, value: Double(r.delegationStart))
            gauge("tockd_roughtime_delegation_expiry_timestamp_seconds", d, value: Double(r.delegationExpiry))
            gauge("tockd_roughtime_delegation_remaining_seconds", d, value: Double(r.delegationSecondsRemaining))
        }
        for interface in status.hardwareTimestamping ?? [] {
            // 1 while the card timestamps NTP packets, 0 while the interface keeps software ones.
            gauge("tockd_ntp_hardware_timestamping", [("interface", interface.name)], value: interface.hardware && interface.reason == nil ? 1 : 0)
        }
        for service in TockService.allCases {
            let group = status.clients.first { $0.name == service.rawValue }
            gauge("tockd_rate_limit_clients", [("protocol", service.rawValue)], value: Double(group?.tracked ?? 0))
        }
    }
}
