import Atomics
import Glibc
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TockProtocol
import TockSockets

/// tockd's services: NTP, Daytime and Time on every configured address, and the clock-state
/// refresher, run as one swift-service-lifecycle `Service`.
///
/// Creating it binds every socket, and takes over the sockets inherited from systemd (socket
/// activation), so a bind failure is reported before anything runs; `run` starts the workers
/// and keeps them until graceful shutdown (or cancellation), then stops them: UDP workers
/// finish their batch and join, then their sockets close; TCP listeners close.
public final class TockServer: Service, @unchecked Sendable {
    public let configuration: TockServerConfiguration
    /// The clock state every reply carries.
    public let clockState: ClockStateCell
    /// log2 seconds of the clock's measured resolution.
    public let precision: Int8
    private let logger: Logger
    private let ntp: [DatagramListener]
    private let datagramTime: [(TextTimeProtocol, DatagramListener)]
    private let streamTime: [(TextTimeProtocol, StreamTimeListener)]
    private let precisionNanoseconds: Int64
    /// When the server was created, on CLOCK_MONOTONIC.
    let startedAtMonotonicNanoseconds = SystemClock.monotonicNanoseconds()
    /// Live policies by service name ("ntp", "daytime", "time"); `reload` replaces them.
    public let policies: [String: PolicyCell]
    /// Rate-limit tables by service name, for the services that limit rates now.
    public var limiters: [String: ClientLimiter] { policies.compactMapValues(\.limiter) }

    /// Binds every listener in `configuration` and adopts its inherited sockets, which it owns
    /// from then on (closing them on failure too).
    public init(configuration: TockServerConfiguration, logger: Logger) throws(ListenerError) {
        self.configuration = configuration
        self.logger = logger
        let resolution = SystemClock.measuredResolutionNanoseconds()
        self.precisionNanoseconds = resolution
        let precision = NTPResponder.precision(resolutionNanoseconds: resolution)
        self.precision = precision
        let clockState = ClockStateCell(configuration.clockSource.currentState(now: SystemClock.now(), precisionNanoseconds: resolution))
        self.clockState = clockState

        var ntp: [DatagramListener] = []
        var datagramTime: [(TextTimeProtocol, DatagramListener)] = []
        var streamTime: [(TextTimeProtocol, StreamTimeListener)] = []
        // One policy and rate-limit table per service, shared by its listeners and workers, so
        // a client's limit holds across addresses, workers and source ports.
        let policies = [
            "ntp": PolicyCell(configuration.ntpPolicy, tableBytes: configuration.clientTableBytes),
            "daytime": PolicyCell(configuration.daytimePolicy, tableBytes: configuration.clientTableBytes),
            "time": PolicyCell(configuration.timePolicy, tableBytes: configuration.clientTableBytes),
        ]
        self.policies = policies
        // Inherited descriptors handed to a listener, which closes them from then on.
        var adopted: Set<Int32> = []
        do throws(ListenerError) {
            func ntpResponder() -> NTPDatagramResponder {
                NTPDatagramResponder(precision: precision, clock: clockState, policy: policies["ntp"]!)
            }
            for address in configuration.ntpListeners {
                ntp.append(try DatagramListener(name: "ntp", address: address, workers: configuration.ntpWorkers, makeResponder: ntpResponder))
            }
            // Daytime and Time: a writer per service.
            var writers: [TextTimeProtocol: TextTimeReplyWriter] = [:]
            for kind in [TextTimeProtocol.daytime, .time] {
                writers[kind] = TextTimeReplyWriter(kind: kind, format: configuration.daytimeFormat, zone: configuration.daytimeZone)
            }
            func textResponder(_ kind: TextTimeProtocol) -> TextTimeDatagramResponder {
                TextTimeDatagramResponder(writer: writers[kind]!, clock: clockState, policy: policies[kind.rawValue]!)
            }
            let services: [(TextTimeProtocol, [SocketEndpoint])] = [(.daytime, configuration.daytimeListeners), (.time, configuration.timeListeners)]
            for (kind, addresses) in services {
                for var address in addresses {
                    if address.port == 0 {
                        // UDP and TCP share the port, so choose one free for both.
                        address.port = try ListenerSocket.freePort(on: address, alsoTCP: true)
                    }
                    let udp = try DatagramListener(name: kind.rawValue, address: address, workers: 1) { textResponder(kind) }
                    datagramTime.append((kind, udp))
                    // TCP takes the same port as UDP (which may have been chosen by the kernel).
                    streamTime.append((kind, try StreamTimeListener(address: udp.address, writer: writers[kind]!, policy: policies[kind.rawValue]!, maxConnections: configuration.tcpMaxConnections)))
                }
            }
            for socket in configuration.inheritedSockets {
                adopted.insert(socket.fd)
                switch (socket.service, socket.transport) {
                case (.ntp, .udp):
                    ntp.append(try DatagramListener(name: "ntp", inherited: socket, workers: configuration.ntpWorkers, makeResponder: ntpResponder))
                case (.ntp, .tcp):
                    close(socket.fd)
                    throw ListenerError(transport: "TCP", address: socket.address, errorNumber: EPROTONOSUPPORT, inheritedFD: socket.fd)
                case (.daytime, .udp), (.time, .udp):
                    let kind: TextTimeProtocol = socket.service == .daytime ? .daytime : .time
                    datagramTime.append((kind, try DatagramListener(name: kind.rawValue, inherited: socket, workers: 1) { textResponder(kind) }))
                case (.daytime, .tcp), (.time, .tcp):
                    let kind: TextTimeProtocol = socket.service == .daytime ? .daytime : .time
                    streamTime.append((kind, StreamTimeListener(inherited: socket, writer: writers[kind]!, policy: policies[kind.rawValue]!, maxConnections: configuration.tcpMaxConnections)))
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
        self.ntp = ntp
        self.datagramTime = datagramTime
        self.streamTime = streamTime
    }

    /// The bound NTP addresses (ports resolved).
    public var ntpAddresses: [SocketEndpoint] { ntp.map(\.address) }
    /// The Daytime addresses, over UDP, TCP or both: listeners from addresses take both, an
    /// inherited socket one.
    public var daytimeAddresses: [SocketEndpoint] { textAddresses(.daytime) }
    /// The Time addresses, likewise.
    public var timeAddresses: [SocketEndpoint] { textAddresses(.time) }

    private func textAddresses(_ kind: TextTimeProtocol) -> [SocketEndpoint] {
        var seen: Set<SocketEndpoint> = []
        let all = datagramTime.filter { $0.0 == kind }.map(\.1.address) + streamTime.filter { $0.0 == kind }.map(\.1.address)
        return all.filter { seen.insert($0).inserted }
    }

    /// Every UDP listener with its service name.
    var datagramListeners: [(String, DatagramListener)] {
        ntp.map { ("ntp", $0) } + datagramTime.map { ($0.0.rawValue, $0.1) }
    }

    /// NTP totals over every address and worker.
    public var ntpStatistics: DatagramStatistics {
        var total = DatagramStatistics()
        for l in ntp { total.add(l.statistics) }
        return total
    }

    /// Daytime or Time UDP totals.
    public func datagramStatistics(_ kind: TextTimeProtocol) -> DatagramStatistics {
        var total = DatagramStatistics()
        for (k, l) in datagramTime where k == kind { total.add(l.statistics) }
        return total
    }

    /// TCP totals for Daytime or Time: connections, replies, and connections closed unanswered
    /// by reason.
    public func streamStatistics(_ kind: TextTimeProtocol) -> (connections: UInt64, replied: UInt64, silent: UInt64, refused: UInt64) {
        var total: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        for (k, l) in streamTime where k == kind {
            total.0 += l.counters.connections.load(ordering: .relaxed)
            total.1 += l.counters.replied.load(ordering: .relaxed)
            total.2 += l.counters.silent.load(ordering: .relaxed)
            total.3 += l.counters.refused.load(ordering: .relaxed)
        }
        return total
    }

    /// The running access, rate-limit and kiss-o'-death policies.
    public var currentPolicies: ServicePolicies {
        ServicePolicies(ntp: policies["ntp"]!.policy, daytime: policies["daytime"]!.policy, time: policies["time"]!.policy)
    }

    /// Replaces the access, rate-limit and kiss-o'-death policies while the server runs, without
    /// closing a socket: workers pick them up at their next batch, TCP at the next connection.
    /// A service whose rate limit is unchanged keeps its clients' buckets. Returns the services
    /// whose policy changed.
    @discardableResult
    public func updatePolicies(_ new: ServicePolicies) -> [String] {
        ["ntp", "daytime", "time"].filter { policies[$0]!.publish(new[$0]) }
    }

    /// Runs until graceful shutdown or cancellation.
    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: min(2, TockServerConfiguration.coreCount))
        var channels: [Channel] = []
        let timeout = TimeAmount.nanoseconds(Int64(configuration.tcpConnectionTimeout.components.seconds) * 1_000_000_000 + configuration.tcpConnectionTimeout.components.attoseconds / 1_000_000_000)
        do {
            for (_, listener) in streamTime {
                channels.append(try await listener.start(group: group, clock: clockState, connectionTimeout: timeout))
            }
        } catch {
            for c in channels { try? await c.close() }
            try? await group.shutdownGracefully()
            throw error
        }
        for l in ntp { l.run() }
        for (_, l) in datagramTime { l.run() }

        let state = clockState.read().state
        logger.info("tockd started", metadata: [
            "clock_source": "\(configuration.clockSource)",
            "precision": "\(precision) (\(precisionNanoseconds) ns)",
            "ntp_workers_per_address": "\(configuration.ntpWorkers)",
        ].merging(ClockStateService.metadata(state)) { a, _ in a })
        for l in ntp where l.inheritedFD == nil {
            logger.info("listening", metadata: ["service": "ntp", "transport": "udp", "address": "\(l.address)"])
        }
        for (kind, l) in datagramTime where l.inheritedFD == nil {
            logger.info("listening", metadata: ["service": "\(kind.rawValue)", "transport": "udp+tcp", "address": "\(l.address)"])
        }
        for socket in configuration.inheritedSockets {
            var metadata: Logger.Metadata = ["service": "\(socket.service.rawValue)", "transport": "\(socket.transport.rawValue)", "address": "\(socket.address)", "fd": "\(socket.fd)"]
            if let name = socket.name { metadata["fd_name"] = "\(name)" }
            logger.info("listening on a socket inherited from systemd", metadata: metadata)
        }
        if !state.isSynchronized {
            logger.warning("the clock is not synchronised: NTP replies carry leap indicator 3 and stratum 0, Daytime and Time stay silent; use --clock-source local to serve this clock anyway")
        }

        SystemdNotifier.notify("READY=1\nSTATUS=serving \(ntp.count) NTP, \(daytimeAddresses.count + timeAddresses.count) Daytime/Time addresses; \(state.isSynchronized ? "synchronised" : "unsynchronised")\nMAINPID=\(getpid())")

        let refresher = ClockStateService(source: configuration.clockSource, cell: clockState, precisionNanoseconds: precisionNanoseconds, logger: logger, now: { SystemClock.now() })
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try? await refresher.run() }
            // Wait for the group's shutdown signal, or for cancellation.
            try? await gracefulShutdown()
            tasks.cancelAll()
        }

        logger.info("tockd stopping")
        SystemdNotifier.notify("STOPPING=1")
        for l in ntp { l.stop() }
        for (_, l) in datagramTime { l.stop() }
        for c in channels { try? await c.close() }
        try? await group.shutdownGracefully()
        let stats = ntpStatistics
        logger.info("tockd stopped", metadata: ["ntp_received": "\(stats.received)", "ntp_replied": "\(stats.replied)", "ntp_dropped": "\(stats.dropped)"])
    }
}
