import TockCrypto
import TockProtocol
import TockSockets

extension TockServer {
    /// The server's live figures: counters summed per protocol and transport, per-worker
    /// load, the clock state, and the `busiestClients` busiest clients of each rate-limited
    /// service. Reads the workers' published counters (relaxed loads); never blocks them.
    package func status(busiestClients: Int = 10) -> ServerStatus {
        let state = clockState.state
        let clock = ServerStatus.Clock(
            source: configuration.clockSource.name,
            synchronized: state.isSynchronized,
            stratum: Int(state.stratum),
            leap: Int(state.leap.rawValue),
            reference: ReferenceID.display(state.referenceID, stratum: state.stratum),
            rootDelaySeconds: Double(state.rootDelayNanoseconds) / 1e9,
            rootDispersionSeconds: Double(state.rootDispersionNanoseconds) / 1e9
        )
        func labels(_ drops: [DropReason: UInt64]) -> [String: UInt64] {
            Dictionary(uniqueKeysWithValues: drops.map { ($0.key.label, $0.value) })
        }
        var services: [ServerStatus.Service] = []
        var clients: [ServerStatus.ClientGroup] = []
        for service in TockService.allCases {
            if service != .ntsKE {
                let udp = datagramStatistics(service)
                services.append(ServerStatus.Service(
                    name: service.rawValue, transport: "udp", requests: udp.received, replies: udp.replied,
                    kissesOfDeath: udp.kissesSent, drops: labels(udp.drops), errors: udp.receiveErrors + udp.sendErrors,
                    authenticated: service == .ntp && configuration.nts != nil ? udp.authenticated : nil,
                    kisses: udp.kisses.isEmpty ? nil : labels(udp.kisses),
                    signatures: service == .roughtime ? udp.signatures : nil,
                    batchSizes: service == .roughtime
                        ? Dictionary(uniqueKeysWithValues: zip(DatagramStatistics.batchBuckets, udp.deferredBatches)) : nil,
                    interleaved: service == .ntp && configuration.ntpInterleaved ? udp.interleaved : nil,
                    transmitDelaySamples: service == .ntp ? udp.transmitDelaySamples : nil,
                    transmitDelaySeconds: service == .ntp ? Double(udp.transmitDelayNanoseconds) / 1e9 : nil
                ))
            }
            if service == .ntsKE {
                let ke = keStatistics()
                var figures = ServerStatus.Service(
                    name: service.rawValue, transport: "tcp", requests: ke.connections, replies: ke.replied,
                    kissesOfDeath: 0, drops: labels(ke.drops), errors: 0
                )
                figures.evicted = labels(ke.evicted)
                services.append(figures)
            } else if service != .ntp {
                let tcp = streamStatistics(service)
                var figures = ServerStatus.Service(
                    name: service.rawValue, transport: "tcp", requests: tcp.connections, replies: tcp.replied,
                    kissesOfDeath: 0, drops: labels(tcp.drops), errors: 0
                )
                figures.evicted = labels(tcp.evicted)
                services.append(figures)
            }
            if let limiter = limiters[service] {
                clients.append(ServerStatus.ClientGroup(
                    name: service.rawValue, tracked: limiter.occupied, capacity: limiter.capacity,
                    busiest: limiter.busiest(busiestClients).map {
                        ServerStatus.Client(prefix: $0.prefix, requests: $0.requests, limited: $0.limited, tokens: $0.tokens)
                    }
                ))
            }
        }
        var workers: [ServerStatus.Worker] = []
        for listener in datagramListeners {
            for (index, counters) in listener.counters.enumerated() {
                workers.append(ServerStatus.Worker(
                    name: listener.service.rawValue, address: listener.address.description, index: index,
                    requests: counters.value(.received), replies: counters.value(.replied)
                ))
            }
        }
        let uptime = Double(SystemClock.monotonicNanoseconds() - startedAtMonotonicNanoseconds) / 1e9
        let nts = configuration.nts.map { c in
            ServerStatus.NTS(cookieKey: c.cookieKeys.keyID(atUnixSeconds: SystemClock.now().secondsSinceUnixEpoch), keyPeriodSeconds: c.cookieKeys.periodSeconds, keptPeriods: c.cookieKeys.keptPeriods)
        }
        let roughtime = roughtimeKeys.map { keys in
            let certificate = keys.delegation.certificate
            return ServerStatus.Roughtime(
                delegationSource: keys.sourceName, delegationFile: keys.delegationFile,
                longTermPublicKey: RoughtimeKeyText.base64(keys.longTermPublicKey), onlinePublicKey: RoughtimeKeyText.base64(certificate.onlinePublicKey),
                delegationStart: certificate.minimumTime, delegationExpiry: certificate.maximumTime,
                delegationSecondsRemaining: Int64(clamping: certificate.maximumTime) - SystemClock.now().secondsSinceUnixEpoch
            )
        }
        var status = ServerStatus(uptimeSeconds: uptime, clock: clock, services: services, workers: workers, clients: clients, nts: nts, roughtime: roughtime)
        if let hardwareClocks {
            status.hardwareTimestamping = hardwareClocks.status(now: SystemClock.now())
            if hardwareClocks.isActive, let i = status.services.firstIndex(where: { $0.name == TockService.ntp.rawValue && $0.transport == "udp" }) {
                let udp = datagramStatistics(.ntp)
                status.services[i].hardwareReceiveTimestamps = udp.hardwareReceiveTimestamps
                status.services[i].hardwareTransmitTimestamps = udp.hardwareTransmitTimestamps
            }
        }
        return status
    }
}

extension ClockSource {
    /// The source's name as configured.
    package var name: String {
        switch self {
        case .kernel: "kernel"
        case .local: "local"
        case .unsynchronized: "unsynchronized"
        case .external: "external"
        }
    }
}
