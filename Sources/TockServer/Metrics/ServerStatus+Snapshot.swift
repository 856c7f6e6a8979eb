import TockProtocol
import TockSockets

extension TockServer {
    /// The server's live figures: counters summed per protocol and transport, per-worker
    /// load, the clock state, and the `busiestClients` busiest clients of each rate-limited
    /// service. Reads the workers' published counters (relaxed loads); never blocks them.
    public func status(busiestClients: Int = 10) -> ServerStatus {
        let state = clockState.read().state
        let clock = ServerStatus.Clock(
            source: configuration.clockSource.name,
            synchronized: state.isSynchronized,
            stratum: Int(state.stratum),
            leap: Int(state.leap.rawValue),
            reference: ReferenceID.display(state.referenceID, stratum: state.stratum),
            rootDelaySeconds: Double(state.rootDelayNanoseconds) / 1e9,
            rootDispersionSeconds: Double(state.rootDispersionNanoseconds) / 1e9
        )
        func service(_ name: String, _ stats: DatagramStatistics) -> ServerStatus.Service {
            var drops = stats.drops
            drops["oversized"] = stats.oversized
            return ServerStatus.Service(
                name: name, transport: "udp", requests: stats.received, replies: stats.replied,
                kissesOfDeath: stats.kissesSent, drops: drops, errors: stats.receiveErrors + stats.sendErrors
            )
        }
        var services = [service("ntp", ntpStatistics)]
        for kind in [TextTimeProtocol.daytime, .time] {
            services.append(service(kind.rawValue, datagramStatistics(kind)))
            let tcp = streamStatistics(kind)
            services.append(ServerStatus.Service(
                name: kind.rawValue, transport: "tcp", requests: tcp.connections, replies: tcp.replied,
                kissesOfDeath: 0, drops: ["unsynchronized": tcp.silent, "refused": tcp.refused], errors: 0
            ))
        }
        var workers: [ServerStatus.Worker] = []
        for (name, listener) in datagramListeners {
            for (index, counters) in listener.counters.enumerated() {
                workers.append(ServerStatus.Worker(
                    name: name, address: listener.address.description, index: index,
                    requests: counters.value(.received), replies: counters.value(.replied)
                ))
            }
        }
        var clients: [ServerStatus.ClientGroup] = []
        for name in ["ntp", "daytime", "time"] {
            guard let limiter = limiters[name] else { continue }
            clients.append(ServerStatus.ClientGroup(
                name: name, tracked: limiter.occupied, capacity: limiter.capacity,
                busiest: limiter.busiest(busiestClients).map {
                    ServerStatus.Client(prefix: $0.prefix, requests: $0.requests, limited: $0.limited, tokens: $0.tokens)
                }
            ))
        }
        let uptime = Double(SystemClock.monotonicNanoseconds() - startedAtMonotonicNanoseconds) / 1e9
        return ServerStatus(uptimeSeconds: uptime, clock: clock, services: services, workers: workers, clients: clients)
    }
}

extension ClockSource {
    /// The source's name as configured.
    public var name: String {
        switch self {
        case .kernel: "kernel"
        case .local: "local"
        case .unsynchronized: "unsynchronized"
        case .external: "external"
        }
    }
}
