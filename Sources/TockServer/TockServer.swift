import Atomics
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import TockCrypto
import TockProtocol
import TockSockets

/// tockd's services: NTP, Daytime, Time and Roughtime on every configured address, and the clock-state
/// refresher, run as one swift-service-lifecycle `Service`.
///
/// Creating it binds every socket, and takes over the sockets inherited from systemd (socket
/// activation), so a bind failure is reported before anything runs; `run` starts the workers
/// and keeps them until graceful shutdown (or cancellation), then stops them: UDP workers
/// finish their batch and join, then their sockets close; TCP listeners close. Its life is an
/// explicit `State`: a server runs once.
package final class TockServer: Service, Sendable {
    /// The configuration the server was built from.
    package let configuration: TockServerConfiguration
    /// The clock state every reply carries.
    package let clockState: ClockStateCell
    /// log2 seconds of the clock's measured resolution.
    package let precision: Int8
    private let logger: Logger
    /// Every UDP listener, NTP first.
    let datagramListeners: [DatagramListener]
    /// Every TCP listener.
    let streamListeners: [StreamTimeListener]
    /// Every NTS-KE listener.
    let keListeners: [NTSKEListener]
    private let precisionNanoseconds: Int64
    /// When the server was created, on CLOCK_MONOTONIC.
    let startedAtMonotonicNanoseconds = SystemClock.monotonicNanoseconds()
    /// Live policies, one per service, shared by its listeners and workers (so a client's limit
    /// holds across addresses, workers and source ports); `updatePolicies` replaces them.
    private let policyCells: [TockService: PolicyCell]
    /// The Roughtime keys, when Roughtime is served.
    package let roughtimeKeys: RoughtimeKeyCell?
    /// The network cards that timestamp NTP packets, when `--hw-timestamping` named any.
    package let hardwareClocks: HardwareClocks?
    private let state = NIOLockedValueBox(State.bound)

    /// Where the server is in its life.
    package enum State: Sendable, Hashable {
        /// Sockets bound, nothing running.
        case bound
        /// `run` is starting the listeners.
        case starting
        /// Every listener runs: datagrams are read and TCP connections accepted. Set just
        /// before systemd is told READY=1, so tests and supervisors wait for this, not for a
        /// probe to be answered in time.
        case serving
        /// Graceful shutdown: the listeners are being stopped.
        case stopping
        /// `run` returned; the sockets are closed.
        case stopped
    }

    /// The current state.
    package var currentState: State { state.withLockedValue { $0 } }

    /// The running rate-limit table of each service that limits rates now.
    package var limiters: [TockService: ClientLimiter] { policyCells.compactMapValues(\.limiter) }

    /// Binds every listener in `configuration` and adopts its inherited sockets, which it owns
    /// from then on (closing them on failure too).
    package init(configuration: TockServerConfiguration, logger: Logger) throws(ListenerError) {
        self.configuration = configuration
        self.logger = logger
        let precision = NTPServer.precision(resolutionNanoseconds: SystemClock.measuredResolutionNanoseconds())
        self.precision = precision
        // The precision as every reply states it (2^precision s): a local clock's root
        // dispersion, so the log, the status and clients see one figure.
        let precisionNanoseconds = NTPServer.nanoseconds(precision: precision)
        self.precisionNanoseconds = precisionNanoseconds
        let clockState = ClockStateCell(configuration.clockSource.currentState(now: SystemClock.now(), precisionNanoseconds: precisionNanoseconds))
        self.clockState = clockState
        var cells: [TockService: PolicyCell] = [:]
        for service in TockService.allCases {
            cells[service] = PolicyCell(configuration.policies[service], tableBytes: configuration.clientTableBytes)
        }
        self.policyCells = cells

        let hardwareClocks = configuration.hardwareTimestamping.isEmpty ? nil : HardwareClocks(names: configuration.hardwareTimestamping)
        self.hardwareClocks = hardwareClocks
        var datagram: [DatagramListener] = []
        var stream: [StreamTimeListener] = []
        var ke: [NTSKEListener] = []
        var inheritedKE: [InheritedSocket] = []
        var roughtimeKeys: RoughtimeKeyCell?
        // Inherited descriptors handed to a listener, which closes them from then on.
        var adopted: Set<Int32> = []
        do throws(ListenerError) {
            // One interleaved-mode client log per NTP listener, shared by its workers.
            var interleavedLog: InterleavedClientLog?
            func ntpResponder() -> NTPDatagramResponder {
                // Each worker its own NTS contexts, confined to its thread.
                let nts = configuration.nts.map { NTSPacketCrypto(keys: $0.cookieKeys, now: SystemClock.now().secondsSinceUnixEpoch) }
                return NTPDatagramResponder(precision: precision, clock: clockState, policy: cells[.ntp]!, nts: nts, interleaved: interleavedLog)
            }
            // A systemd socket shared by several workers gets no transmit timestamps (the kernel
            // numbers a socket's datagrams; the workers could not tell whose a number is).
            func newInterleavedLog(sharedSocket: Bool = false) {
                interleavedLog = configuration.ntpInterleaved && !sharedSocket ? InterleavedClientLog(memoryBytes: configuration.clientTableBytes) : nil
            }
            func textCore(_ service: TockService) -> TextTimeServer {
                TextTimeServer(service: service, format: configuration.daytimeFormat, zone: configuration.daytimeZone)
            }
            func textResponder(_ service: TockService) -> TextTimeDatagramResponder {
                TextTimeDatagramResponder(core: textCore(service), clock: clockState, policy: cells[service]!)
            }
            func roughtimeResponder() throws(ListenerError) -> RoughtimeKeyCell {
                if let roughtimeKeys { return roughtimeKeys }
                let address = configuration.roughtimeListeners.first ?? configuration.inheritedSockets.first { $0.service == .roughtime }!.address
                let keys: RoughtimeKeyCell
                if let file = configuration.roughtimeDelegation {
                    keys = RoughtimeKeyCell(file: file)
                } else if let seed = configuration.roughtimeKeySeed,
                          let made = try? RoughtimeKeyCell(longTermSeed: seed, renewal: configuration.roughtimeRenewal, now: SystemClock.now()) {
                    keys = made
                } else {
                    throw ListenerError(transport: "UDP", address: address, errorNumber: ENOKEY)
                }
                roughtimeKeys = keys
                return keys
            }
            for address in configuration.ntpListeners {
                newInterleavedLog()
                datagram.append(try DatagramListener(service: .ntp, address: address, workers: configuration.ntpWorkers, transmitTimestamps: true, hardwareClocks: hardwareClocks, makeResponder: ntpResponder))
            }
            for (service, addresses) in [(TockService.daytime, configuration.daytimeListeners), (.time, configuration.timeListeners)] {
                for address in addresses {
                    // UDP and TCP share the port: for port 0, one free for both (chosen again
                    // if either bind finds it taken meanwhile).
                    let (udp, tcp) = try ListenerSocket.bindingPort(address, alsoTCP: true) { (address) throws(ListenerError) in
                        let udp = try DatagramListener(service: service, address: address, workers: 1) { textResponder(service) }
                        return (udp, try StreamTimeListener(address: udp.address, serves: .text(textCore(service)), policy: cells[service]!, maxConnections: configuration.tcpMaxConnections))
                    }
                    datagram.append(udp)
                    stream.append(tcp)
                }
            }
            for address in configuration.roughtimeListeners {
                let keys = try roughtimeResponder()
                // UDP and TCP share the port, as for Daytime and Time (RFC 10049 §5: the same
                // packet over either).
                let (udp, tcp) = try ListenerSocket.bindingPort(address, alsoTCP: true) { (address) throws(ListenerError) in
                    let udp = try DatagramListener(service: .roughtime, address: address, workers: configuration.ntpWorkers) {
                        RoughtimeDatagramResponder(keys: keys, clock: clockState, policy: cells[.roughtime]!)
                    }
                    return (udp, try StreamTimeListener(address: udp.address, serves: .roughtime(keys), policy: cells[.roughtime]!, maxConnections: configuration.tcpMaxConnections))
                }
                datagram.append(udp)
                stream.append(tcp)
            }
            for socket in configuration.inheritedSockets {
                adopted.insert(socket.fd)
                switch (socket.service, socket.transport) {
                case (.ntp, .udp):
                    newInterleavedLog(sharedSocket: configuration.ntpWorkers > 1)
                    datagram.append(try DatagramListener(service: .ntp, inherited: socket, workers: configuration.ntpWorkers, transmitTimestamps: true, hardwareClocks: hardwareClocks, makeResponder: ntpResponder))
                case (.ntp, .tcp):
                    close(socket.fd)
                    throw ListenerError(transport: "TCP", address: socket.address, errorNumber: EPROTONOSUPPORT, inheritedFD: socket.fd)
                case (.daytime, .udp), (.time, .udp):
                    datagram.append(try DatagramListener(service: socket.service, inherited: socket, workers: 1) { textResponder(socket.service) })
                case (.daytime, .tcp), (.time, .tcp):
                    stream.append(StreamTimeListener(inherited: socket, serves: .text(textCore(socket.service)), policy: cells[socket.service]!, maxConnections: configuration.tcpMaxConnections))
                case (.ntsKE, .udp):
                    close(socket.fd)
                    throw ListenerError(transport: "UDP", address: socket.address, errorNumber: EPROTONOSUPPORT, inheritedFD: socket.fd)
                case (.ntsKE, .tcp):
                    inheritedKE.append(socket)
                case (.roughtime, .udp):
                    let keys = try roughtimeResponder()
                    datagram.append(try DatagramListener(service: .roughtime, inherited: socket, workers: configuration.ntpWorkers) {
                        RoughtimeDatagramResponder(keys: keys, clock: clockState, policy: cells[.roughtime]!)
                    })
                case (.roughtime, .tcp):
                    let keys = try roughtimeResponder()
                    stream.append(StreamTimeListener(inherited: socket, serves: .roughtime(keys), policy: cells[.roughtime]!, maxConnections: configuration.tcpMaxConnections))
                }
            }
            if let nts = configuration.nts {
                let cookies = NTSCookieMaker(keys: nts.cookieKeys)
                // Announce this host's NTP port when it is not 123 and no other host is named, so
                // clients find it (RFC 8915 §4.1.8).
                var port = nts.ntpPort
                if port == nil, nts.ntpServer == nil, let first = datagram.first(where: { $0.service == .ntp }), first.address.port != 123 {
                    port = first.address.port
                }
                let core = NTSKEServer(ntpServer: nts.ntpServer, ntpPort: port)
                let timeout = TimeAmount.nanoseconds(Int64(nts.timeout.components.seconds) * 1_000_000_000 + nts.timeout.components.attoseconds / 1_000_000_000)
                if !(nts.keListeners.isEmpty && inheritedKE.isEmpty) {
                    guard let credentials = nts.credentials else {
                        throw ListenerError(transport: "TCP", address: nts.keListeners.first ?? inheritedKE[0].address, errorNumber: ENOKEY)
                    }
                    for address in nts.keListeners {
                        ke.append(try NTSKEListener(address: address, credentials: credentials, cookies: cookies, server: core, policy: cells[.ntsKE]!, connectionLimit: nts.connectionLimit, timeout: timeout))
                    }
                    for socket in inheritedKE {
                        ke.append(NTSKEListener(inherited: socket, credentials: credentials, cookies: cookies, server: core, policy: cells[.ntsKE]!, connectionLimit: nts.connectionLimit, timeout: timeout))
                    }
                }
            } else {
                for socket in inheritedKE {
                    close(socket.fd)
                    throw ListenerError(transport: "TCP", address: socket.address, errorNumber: ENOKEY, inheritedFD: socket.fd)
                }
            }
        } catch {
            // Listeners close their sockets when released; inherited ones not yet handed to a
            // listener are closed here.
            for socket in configuration.inheritedSockets where !adopted.contains(socket.fd) {
                close(socket.fd)
            }
            throw error
        }
        self.datagramListeners = datagram
        self.streamListeners = stream
        self.keListeners = ke
        self.roughtimeKeys = roughtimeKeys
    }

    /// The bound addresses of `service` over UDP, TCP or both (ports resolved): listeners
    /// from addresses take both for Daytime and Time, an inherited socket one.
    package func addresses(_ service: TockService) -> [SocketEndpoint] {
        var seen: Set<SocketEndpoint> = []
        let all = datagramListeners.filter { $0.service == service }.map(\.address) + streamListeners.filter { $0.service == service }.map(\.address)
            + (service == .ntsKE ? keListeners.map(\.address) : [])
        return all.filter { seen.insert($0).inserted }
    }

    /// UDP totals of `service` over every address and worker.
    package func datagramStatistics(_ service: TockService) -> DatagramStatistics {
        var total = DatagramStatistics()
        for l in datagramListeners where l.service == service { total.add(l.statistics) }
        return total
    }

    /// TCP totals of `service`: connections, replies, and connections closed unanswered by
    /// reason.
    package func streamStatistics(_ service: TockService) -> (connections: UInt64, replied: UInt64, drops: [DropReason: UInt64]) {
        var total: (connections: UInt64, replied: UInt64, drops: [DropReason: UInt64]) = (0, 0, [:])
        for l in streamListeners where l.service == service {
            total.connections += l.counters.connections.load(ordering: .relaxed)
            total.replied += l.counters.replied.load(ordering: .relaxed)
            // Daytime and Time read no input over TCP; Roughtime refuses an oversized frame.
            for reason in service.dropReasons where reason != .reflectionPort && (reason != .oversized || service == .roughtime) {
                total.drops[reason, default: 0] += l.counters.drops(reason)
            }
        }
        return total
    }

    /// NTS-KE totals: connections, responses, and connections ended without one, by reason.
    package func keStatistics() -> (connections: UInt64, replied: UInt64, drops: [DropReason: UInt64]) {
        var total: (connections: UInt64, replied: UInt64, drops: [DropReason: UInt64]) = (0, 0, [:])
        for l in keListeners {
            total.connections += l.counters.connections.load(ordering: .relaxed)
            total.replied += l.counters.replied.load(ordering: .relaxed)
            for reason in TockService.ntsKE.dropReasons {
                total.drops[reason, default: 0] += l.counters.drops(reason)
            }
        }
        return total
    }

    /// Reads the NTS certificate and key files again (SIGHUP): new connections use them; a
    /// pair that does not load keeps the running one. Returns the error, if any.
    package func reloadNTSCredentials() -> String? {
        guard let credentials = configuration.nts?.credentials else { return nil }
        do {
            try credentials.reload()
            return nil
        } catch {
            return error.description
        }
    }

    /// Reads the offline Roughtime delegation file again (SIGHUP): the workers serve the new
    /// delegation from their next batch; one that does not load, is not valid now, or is signed
    /// by another long-term key keeps the running one. Returns nil when Roughtime serves no
    /// delegation file, else the delegation now served or why the file was refused.
    package func reloadRoughtimeDelegation() -> Result<RoughtimeDelegation, RoughtimeKeyCell.KeyError>? {
        guard let keys = roughtimeKeys else { return nil }  // `reloadFile` answers nil without a file
        do throws(RoughtimeKeyCell.KeyError) {
            return try keys.reloadFile(now: SystemClock.now()).map { .success($0) }
        } catch {
            return .failure(error)
        }
    }

    /// The running access, rate-limit and kiss-o'-death policies.
    package var currentPolicies: ServicePolicies {
        ServicePolicies { service in policyCells[service]!.policy }
    }

    /// Replaces the access, rate-limit and kiss-o'-death policies while the server runs, without
    /// closing a socket: workers pick them up at their next batch, TCP at the next connection.
    /// A service whose rate limit is unchanged keeps its clients' buckets. Returns the services
    /// whose policy changed.
    @discardableResult
    package func updatePolicies(_ new: ServicePolicies) -> [TockService] {
        TockService.allCases.filter { policyCells[$0]!.publish(new[$0]) }
    }

    /// Runs until graceful shutdown or cancellation. A server runs once: a second call
    /// returns at once.
    package func run() async throws {
        let starting = state.withLockedValue { state -> Bool in
            guard state == .bound else { return false }
            state = .starting
            return true
        }
        guard starting else {
            logger.error("tockd server run twice; ignoring the second run")
            return
        }
        defer { state.withLockedValue { $0 = .stopped } }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(2, TockServerConfiguration.coreCount))
        var channels: [Channel] = []
        let timeout = TimeAmount.nanoseconds(Int64(configuration.tcpConnectionTimeout.components.seconds) * 1_000_000_000 + configuration.tcpConnectionTimeout.components.attoseconds / 1_000_000_000)
        do {
            for listener in streamListeners {
                channels.append(try await listener.start(group: group, clock: clockState, connectionTimeout: timeout))
            }
            for listener in keListeners {
                channels.append(try await listener.start(group: group, logger: logger))
            }
        } catch {
            for c in channels { try? await c.close() }
            try? await group.shutdownGracefully()
            throw error
        }
        for l in datagramListeners { l.run() }

        let clock = clockState.read().state
        var startMetadata: Logger.Metadata = [
            "clock_source": "\(configuration.clockSource)",
            "precision": "\(TimeFigure.precision(precision))",
        ]
        if datagramListeners.contains(where: { $0.service == .ntp }) {
            startMetadata["ntp_workers_per_address"] = "\(configuration.ntpWorkers)"
            startMetadata["cpus"] = "\(CPUBudget.current())"
        }
        logger.info("tockd started", metadata: startMetadata.merging(ClockStateService.metadata(clock)) { a, _ in a })
        for l in datagramListeners where l.inheritedFD == nil {
            let transport = l.service == .ntp ? "udp" : "udp+tcp"
            logger.info("listening", metadata: ["service": "\(l.service)", "transport": "\(transport)", "address": "\(l.address)"])
        }
        for l in keListeners {
            logger.info("listening", metadata: ["service": "nts-ke", "transport": "tcp+tls", "address": "\(l.address)"])
        }
        if configuration.nts != nil {
            logger.info("NTS-protected NTP on every NTP listener", metadata: ["cookie_key_period_s": "\(configuration.nts!.cookieKeys.periodSeconds)", "kept_periods": "\(configuration.nts!.cookieKeys.keptPeriods)"])
        }
        for socket in configuration.inheritedSockets {
            var metadata: Logger.Metadata = ["service": "\(socket.service)", "transport": "\(socket.transport.rawValue)", "address": "\(socket.address)", "fd": "\(socket.fd)"]
            if let name = socket.name { metadata["fd_name"] = "\(name)" }
            logger.info("listening on a socket inherited from systemd", metadata: metadata)
        }
        if let keys = roughtimeKeys {
            let now = SystemClock.now()
            let metadata = keys.metadata(now: now)
            // The key service warns when little time remains.
            switch keys.delegation.certificate.status(atUnixSeconds: now.secondsSinceUnixEpoch) {
            case .valid:
                logger.info("Roughtime delegation", metadata: metadata)
            case .expired, .notYetValid:
                logger.error("the Roughtime delegation does not cover the time: Roughtime is not answering until a new delegation is loaded", metadata: metadata)
            }
        }
        hardwareClocks?.log(to: logger)
        if !clock.isSynchronized {
            logger.warning("the clock is not synchronised: NTP replies carry leap indicator 3 and stratum 0, Daytime and Time stay silent; use --clock-source local to serve this clock anyway")
        }

        let ntpCount = addresses(.ntp).count
        let textCount = addresses(.daytime).count + addresses(.time).count
        state.withLockedValue { $0 = .serving }
        SystemdNotifier.notify("READY=1\nSTATUS=serving \(ntpCount) NTP, \(textCount) Daytime/Time addresses; \(clock.isSynchronized ? "synchronised" : "unsynchronised")\nMAINPID=\(getpid())")

        let refresher = ClockStateService(source: configuration.clockSource, cell: clockState, precisionNanoseconds: precisionNanoseconds, logger: logger, now: { SystemClock.now() })
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try? await refresher.run() }
            if let clocks = hardwareClocks, clocks.isActive {
                tasks.addTask { await HardwareClockService(clocks: clocks).run() }
            }
            if let keys = roughtimeKeys {
                let logger = self.logger
                tasks.addTask { await RoughtimeKeyService(keys: keys, logger: logger).run() }
            }
            // Wait for the group's shutdown signal, or for cancellation.
            try? await gracefulShutdown()
            tasks.cancelAll()
        }

        state.withLockedValue { $0 = .stopping }
        logger.info("tockd stopping")
        SystemdNotifier.notify("STOPPING=1")
        for l in datagramListeners { l.stop() }
        hardwareClocks?.stop(logger: logger)
        for c in channels { try? await c.close() }
        try? await group.shutdownGracefully()
        var stopMetadata: Logger.Metadata = [:]
        for service in TockService.allCases where !addresses(service).isEmpty {
            let udp = datagramStatistics(service)
            let tcp = service == .ntsKE ? keStatistics() : streamStatistics(service)
            stopMetadata["\(service)_received"] = "\(udp.received + tcp.connections)"
            stopMetadata["\(service)_replied"] = "\(udp.replied + tcp.replied)"
            stopMetadata["\(service)_dropped"] = "\(udp.dropped + tcp.drops.values.reduce(0, +))"
        }
        logger.info("tockd stopped", metadata: stopMetadata)
    }
}
