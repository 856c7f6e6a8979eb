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
/// Creating it binds every socket, so a bind failure is reported before anything runs; `run`
/// starts the workers and keeps them until graceful shutdown (or cancellation), then stops
/// them: UDP workers finish their batch and join, TCP listeners close.
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

    /// Binds every listener in `configuration`.
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
        do throws(ListenerError) {
            for address in configuration.ntpListeners {
                ntp.append(try DatagramListener(name: "ntp", address: address, workers: configuration.ntpWorkers) {
                    NTPDatagramResponder(precision: precision, clock: clockState, policy: policies["ntp"]!)
                })
            }
            let services: [(TextTimeProtocol, [SocketEndpoint])] = [(.daytime, configuration.daytimeListeners), (.time, configuration.timeListeners)]
            for (kind, addresses) in services {
                let writer = TextTimeReplyWriter(kind: kind, format: configuration.daytimeFormat, zone: configuration.daytimeZone)
                let policy = policies[kind.rawValue]!
                for var address in addresses {
                    if address.port == 0 {
                        // UDP and TCP share the port, so choose one free for both.
                        address.port = try ListenerSocket.freePort(on: address, alsoTCP: true)
                    }
                    let udp = try DatagramListener(name: kind.rawValue, address: address, workers: 1) {
                        TextTimeDatagramResponder(writer: writer, clock: clockState, policy: policy)
                    }
                    datagramTime.append((kind, udp))
                    // TCP takes the same port as UDP (which may have been chosen by the kernel).
                    streamTime.append((kind, try StreamTimeListener(address: udp.address, writer: writer, policy: policy, maxConnections: configuration.tcpMaxConnections)))
                }
            }
        } catch {
            // Listeners close their sockets when released.
            throw error
        }
        self.ntp = ntp
        self.datagramTime = datagramTime
        self.streamTime = streamTime
    }

    /// The bound NTP addresses (ports resolved).
    public var ntpAddresses: [SocketEndpoint] { ntp.map(\.address) }
    /// The bound Daytime addresses (UDP and TCP share each).
    public var daytimeAddresses: [SocketEndpoint] { datagramTime.filter { $0.0 == .daytime }.map(\.1.address) }
    /// The bound Time addresses (UDP and TCP share each).
    public var timeAddresses: [SocketEndpoint] { datagramTime.filter { $0.0 == .time }.map(\.1.address) }

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
        for l in ntp { logger.info("listening", metadata: ["service": "ntp", "transport": "udp", "address": "\(l.address)"]) }
        for (kind, l) in datagramTime { logger.info("listening", metadata: ["service": "\(kind.rawValue)", "transport": "udp+tcp", "address": "\(l.address)"]) }
        if !state.isSynchronized {
            logger.warning("the clock is not synchronised: NTP replies carry leap indicator 3 and stratum 0, Daytime and Time stay silent; use --clock-source local to serve this clock anyway")
        }

        SystemdNotifier.notify("READY=1\nSTATUS=serving \(ntp.count) NTP, \(datagramTime.count) Daytime/Time addresses; \(state.isSynchronized ? "synchronised" : "unsynchronised")\nMAINPID=\(getpid())")

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
