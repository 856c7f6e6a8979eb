import ArgumentParser
import Logging
import ServiceLifecycle
import TockProtocol
import TockServer
import TockSockets

@main
struct Tockd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tockd",
        abstract: "Serve the time: NTPv4 (RFC 5905), Daytime (RFC 867) and Time (RFC 868) over UDP and TCP.",
        discussion: """
            With no listener flag, tockd serves NTP on UDP port 123, Daytime on port 13 and Time on \
            port 37 (UDP and TCP), on every IPv4 and IPv6 address. Any --ntp, --daytime or --time \
            flag replaces those defaults: only the listeners given run.

            LISTENER is PORT (every address), ADDR:PORT, [IPv6]:PORT, or ADDR (default port). \
            Ports below 1024 need root or CAP_NET_BIND_SERVICE.

            Clock state: with --clock-source kernel (the default), tockd says it is synchronised \
            only when the kernel does (adjtimex: STA_UNSYNC clear and maximum error below 16 s), \
            i.e. when chronyd, ntpd or ptp4l disciplines the clock; otherwise NTP replies carry \
            leap indicator 3 and stratum 0 and Daytime/Time stay silent, so no client follows an \
            undisciplined clock. --clock-source local serves the local clock as authoritative, like \
            chrony's `local stratum N`.

            Examples:
              tockd --ntp 127.0.0.1:1123 --clock-source local
              tockd --daytime 127.0.0.1:8080 --daytime-format hms
              sudo tockd
            """
    )

    @Option(name: .customLong("ntp"), help: ArgumentHelp("Serve NTP on UDP at LISTENER (repeatable).", valueName: "listener"))
    var ntp: [String] = []

    @Option(name: .customLong("daytime"), help: ArgumentHelp("Serve Daytime on UDP and TCP at LISTENER (repeatable).", valueName: "listener"))
    var daytime: [String] = []

    @Option(name: .customLong("time"), help: ArgumentHelp("Serve Time (RFC 868) on UDP and TCP at LISTENER (repeatable).", valueName: "listener"))
    var time: [String] = []

    @Option(help: "Daytime text: rfc867 ('Tuesday, November 24, 2026 18:36:20-UTC'), iso8601 ('2026-11-24T18:36:20Z') or hms ('18:36:20', the seed protocol's format).")
    var daytimeFormat: DaytimeFormat = .rfc867

    @Option(help: "Daytime zone: local (TZ or /etc/localtime) or utc.")
    var daytimeZone: DaytimeZone = .local

    @Option(help: "Where the server's clock state comes from: kernel (adjtimex), local (always synchronised, like chrony's 'local'), or unsynchronized (always leap 3: for tests and draining).")
    var clockSource: ClockSourceName = .kernel

    @Option(help: "Stratum to serve when synchronised, 1-15 (default: 2 for kernel, 10 for local).")
    var stratum: UInt8?

    @Option(help: "NTP worker threads (one SO_REUSEPORT socket each) per NTP address, 1-1024 (default: one per core).")
    var workers: Int = TockServerConfiguration.coreCount

    @Option(help: "Seconds a TCP Daytime/Time connection may stay open, 0.1-300.")
    var tcpTimeout: Double = 5

    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    enum ClockSourceName: String, ExpressibleByArgument, CaseIterable {
        case kernel, local, unsynchronized
    }

    func validate() throws {
        if let stratum, !(1...15).contains(stratum) {
            throw ValidationError("--stratum must be 1-15, got \(stratum)")
        }
        if stratum != nil, clockSource == .unsynchronized {
            throw ValidationError("--stratum has no effect with --clock-source unsynchronized")
        }
        guard (1...1024).contains(workers) else { throw ValidationError("--workers must be 1-1024, got \(workers)") }
        guard tcpTimeout >= 0.1, tcpTimeout <= 300 else { throw ValidationError("--tcp-timeout must be 0.1-300 seconds, got \(tcpTimeout)") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "tockd")

        let configuration = try makeConfiguration()

        let server: TockServer
        do {
            server = try TockServer(configuration: configuration, logger: logger)
        } catch {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
    }

    /// The server configuration the flags describe.
    func makeConfiguration() throws -> TockServerConfiguration {
        let useDefaults = ntp.isEmpty && daytime.isEmpty && time.isEmpty
        func listeners(_ flags: [String], _ port: UInt16, _ flag: String) throws -> [SocketEndpoint] {
            let result = Result { () throws(ListenerFlag.Error) in
                try ListenerFlag.addresses(useDefaults ? ["\(port)"] : flags, defaultPort: port, flag: flag)
            }
            switch result {
            case .success(let addresses): return addresses
            case .failure(let error): throw ValidationError(error.description)
            }
        }
        return TockServerConfiguration(
            ntpListeners: try listeners(ntp, TockServerConfiguration.defaultNTPPort, "--ntp"),
            daytimeListeners: try listeners(daytime, TockServerConfiguration.defaultDaytimePort, "--daytime"),
            timeListeners: try listeners(time, TockServerConfiguration.defaultTimePort, "--time"),
            daytimeFormat: daytimeFormat,
            daytimeZone: daytimeZone,
            clockSource: clockSourceValue,
            ntpWorkers: workers,
            tcpConnectionTimeout: .milliseconds(Int64(tcpTimeout * 1000))
        )
    }

    var clockSourceValue: ClockSource {
        switch clockSource {
        case .kernel: .kernel(stratum: stratum ?? ClockSource.defaultKernelStratum)
        case .local: .local(stratum: stratum ?? ClockSource.defaultLocalStratum)
        case .unsynchronized: .unsynchronized
        }
    }
}

extension DaytimeFormat: ExpressibleByArgument {}
extension DaytimeZone: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
