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
        let policies = cells
        self.policyCells = cells

        let hardwareClocks = configuration.hardwareTimestamping.isEmpty ? nil : HardwareClocks(names: configuration.hardwareTimestamping)
        self.hardwareClocks = hardwareClocks
        let roughtimeKeys: RoughtimeKeyCell?
        var bound = BoundListeners()
        // Inherited descriptors handed to a listener, which closes them from then on.
        var adopted: Set<Int32> = []
        do throws(ListenerError) {
            roughtimeKeys = try Self.roughtimeKeys(configuration)
            let plans = ServicePlan.all(configuration: configuration, precision: precision, clock: clockState, policies: policies, hardwareClocks: hardwareClocks, roughtimeKeys: roughtimeKeys)
            // Sockets inherited from systemd replace every protocol's own listeners: the service
            // manager chose the addresses.
            let inherited = configuration.inheritedSockets
            for plan in plans {
                if inherited.isEmpty {
                    for address in plan.addresses { try plan.bind(address, into: &bound) }
                } else {
                    for socket in inherited where socket.service == plan.service {
                        adopted.insert(socket.fd)
                        try plan.adopt(socket, into: &bound)
                    }
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
        if !configuration.inheritedSockets.isEmpty, TockService.allCases.contains(where: { !configuration.listeners(of: $0).isEmpty }) {
            logger.debug("binding no listener of its own: serving the sockets inherited from systemd")
        }
        self.datagramListeners = bound.datagram
        self.streamListeners = bound.stream
        self.keListeners = bound.keyEstablishment
        self.roughtimeKeys = roughtimeKeys
    }

    /// The Roughtime keys, when Roughtime is served: from the offline delegation file, or made
    /// from the long-term seed (and renewed).
    private static func roughtimeKeys(_ configuration: TockServerConfiguration) throws(ListenerError) -> RoughtimeKeyCell? {
        let inherited = configuration.inheritedSockets.first { $0.service == .roughtime }
        guard let address = configuration.inheritedSockets.isEmpty ? configuration.roughtimeListeners.first : inherited?.address else { return nil }
        if let file = configuration.roughtimeDelegation { return RoughtimeKeyCell(file: file) }
        if let seed = configuration.roughtimeKeySeed,
           let made = try? RoughtimeKeyCell(longTermSeed: seed, renewal: configuration.roughtimeRenewal, now: SystemClock.now()) {
            return made
        }
        throw ListenerError(transport: "UDP", address: address, errorNumber: ENOKEY)
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
    package func streamStatistics(_ service: TockService) -> StreamStatistics {
        var total = StreamStatistics()
        for l in streamListeners where l.service == service {
            total.connections += l.counters.connections.load(ordering: .relaxed)
            total.replied += l.counters.replied.load(ordering: .relaxed)
            // Daytime and Time read no input over TCP; Roughtime refuses an oversized frame.
            for reason in service.dropReasons where reason != .reflectionPort && (reason != .oversized || service == .roughtime) {
                total.drops[reason, default: 0] += l.counters.drops(reason)
            }
            total.addEvictions(l.counters)
        }
        return total
    }

    /// NTS-KE totals: connections, responses, and connections ended without one, by reason.
    package func keStatistics() -> StreamStatistics {
        var total = StreamStatistics()
        for l in keListeners {
            total.connections += l.counters.connections.load(ordering: .relaxed)
            total.replied += l.counters.replied.load(ordering: .relaxed)
            for reason in TockService.ntsKE.dropReasons {
                total.drops[reason, default: 0] += l.counters.drops(reason)
            }
            total.addEvictions(l.counters)
        }
        return total
    }

    /// TCP totals of a service: connections, replies, connections closed unanswered by reason,
    /// and connections closed to admit another, by the cap reached.
    package struct StreamStatistics: Sendable {
        package var connections: UInt64 = 0
        package var replied: UInt64 = 0
        package var drops: [DropReason: UInt64] = [:]
        package var evicted: [DropReason: UInt64] = [:]

        mutating func addEvictions(_ counters: StreamCounters) {
            for reason in [DropReason.perAddressCap, .connectionLimit] {
                evicted[reason, default: 0] += counters.evictions(reason)
            }
        }
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

        let clock = clockState.state
        var startMetadata: Logger.Metadata = [
            "clock_source": "\(configuration.clockSource)",
            "precision": "\(TimeFigure.precision(precision))",
        ]
        if datagramListeners.contains(where: { $0.service == .ntp }) {
            startMetadata["ntp_workers_per_address"] = "\(configuration.ntpWorkers)"
            startMetadata["cpus"] = "\(CPUBudget.current())"
        }
        if datagramListeners.contains(where: { $0.service == .roughtime }) {
            startMetadata["roughtime_workers_per_address"] = "\(configuration.roughtimeWorkers)"
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
        // Listeners first, then every connection still open, waited for, and only then the
        // event loops: nothing is left to schedule work on a loop that has shut down.
        for c in channels { try? await c.close() }
        let open = streamListeners.flatMap { $0.table.closeAll() } + keListeners.flatMap { $0.table.closeAll() }
        for connection in open { try? await connection.get() }
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
