import ArgumentParser
import Dispatch
import Glibc
import Logging
import Synchronization
import ServiceLifecycle
import TockConfig
import TockProtocol
import TockServer
import TockSockets

@main
struct Tockd: ParsableCommand {
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

            Configuration file: --config PATH reads a TOML file with the same settings (see \
            deploy/tockd.toml for every key); a flag given on the command line overrides the \
            file's value. Unknown keys, wrong types and out-of-range values are errors that name \
            the key, the value and the line. SIGHUP reloads the file: access lists, rate limits, \
            the deny kiss and the log level change live, without closing a socket; other changes \
            are logged as needing a restart; a file that does not check keeps the running \
            configuration. --check-config validates and prints the result.

            Socket activation (sd_listen_fds(3)): started by systemd with sockets (LISTEN_FDS), \
            tockd serves those and binds none itself: --ntp, --daytime, --time and the default \
            listeners are ignored. A socket named ntp, daytime or time (FileDescriptorName=) is \
            for that service; any other goes by its port: 123 NTP, 13 Daytime, 37 Time. NTP \
            takes UDP sockets, Daytime and Time UDP, TCP or both. systemd binds the ports, so \
            tockd needs no privilege at all; see deploy/systemd/tockd.socket.

            Examples:
              tockd --ntp 127.0.0.1:1123 --clock-source local
              tockd --daytime 127.0.0.1:8080 --daytime-format hms
              sudo tockd
              tockd --config /etc/tock/tockd.toml --check-config
              tockd --config /etc/tock/tockd.toml --metrics 127.0.0.1:9123
            """
    )

    @Option(help: ArgumentHelp("Read settings from this TOML file (see deploy/tockd.toml); flags given on the command line override it. SIGHUP reloads it.", valueName: "path"))
    var config: String?

    @Flag(help: "Check the configuration (file and flags), print what it resolves to, and exit: 0 if valid, 1 if not.")
    var checkConfig = false

    /// Internal: how a running tockd reloads. It runs itself with this flag to parse the file in
    /// a short-lived child (see `IsolatedParse`), which prints the file's settings as JSON.
    @Flag(help: .hidden)
    var parseConfig = false

    @Option(name: .customLong("ntp"), help: ArgumentHelp("Serve NTP on UDP at LISTENER (repeatable).", valueName: "listener"))
    var ntp: [String] = []

    @Option(name: .customLong("daytime"), help: ArgumentHelp("Serve Daytime on UDP and TCP at LISTENER (repeatable).", valueName: "listener"))
    var daytime: [String] = []

    @Option(name: .customLong("time"), help: ArgumentHelp("Serve Time (RFC 868) on UDP and TCP at LISTENER (repeatable).", valueName: "listener"))
    var time: [String] = []

    @Option(help: "Daytime text: rfc867 ('Tuesday, November 24, 2026 18:36:20-UTC', the default), iso8601 ('2026-11-24T18:36:20Z') or hms ('18:36:20', the seed protocol's format).")
    var daytimeFormat: DaytimeFormat?

    @Option(help: "Daytime zone: local (TZ or /etc/localtime; the default) or utc.")
    var daytimeZone: DaytimeZone?

    @Option(help: "Where the server's clock state comes from: kernel (adjtimex; the default), local (always synchronised, like chrony's 'local'), or unsynchronized (always leap 3: for tests and draining).")
    var clockSource: ClockSourceName?

    @Option(help: "Stratum to serve when synchronised, 1-15 (default: 2 for kernel, 10 for local).")
    var stratum: Int?

    @Option(help: "NTP worker threads per NTP address, 1-1024 (default: one per core); each binds its own SO_REUSEPORT socket, or all share a socket inherited from systemd.")
    var workers: Int?

    @Option(help: "Seconds a TCP Daytime/Time connection may stay open, 0.1-300 (default: 5).")
    var tcpTimeout: Double?

    @Option(help: "Most open TCP Daytime/Time connections per listener; more are closed at once (1-1000000; default: 1024).")
    var tcpMaxConnections: Int?

    @Option(name: .customLong("allow"), help: ArgumentHelp("Serve only clients in PREFIX (CIDR, e.g. 192.0.2.0/24 or 2001:db8::/32), for every service or, as ntp=PREFIX, daytime=PREFIX or time=PREFIX, for one (repeatable). Default: everyone.", valueName: "[service=]prefix"))
    var allow: [String] = []

    @Option(name: .customLong("deny"), help: ArgumentHelp("Never serve clients in PREFIX, for every service or one (repeatable); deny wins over allow.", valueName: "[service=]prefix"))
    var deny: [String] = []

    @Option(help: "Send denied NTP clients this kiss-o'-death, DENY or RSTR, instead of nothing.")
    var denyKiss: DenyKiss?

    enum DenyKiss: String, ExpressibleByArgument, CaseIterable {
        case DENY, RSTR
        var code: KissCode { self == .DENY ? .deny : .restrict }
    }

    @Flag(inversion: .prefixedNo, help: "Limit responses per client address (token bucket, as chrony's ratelimit); off by default, as in chrony and NTPsec.")
    var rateLimit: Bool?

    @Option(parsing: .unconditional, help: "With --rate-limit: log2 seconds per response a client earns, -19 to 12 (default 3 = one per 8 s; negative values allowed, e.g. -4 for 16 per second).")
    var rateLimitInterval: Int?

    @Option(help: "With --rate-limit: responses a client may take in a burst, 1-255 (default: 8).")
    var rateLimitBurst: Int?

    @Option(help: "With --rate-limit: answer 1 in 2^LEAK limited requests anyway, 0-4 (default: 2), so spoofed floods cannot silence a victim.")
    var rateLimitLeak: Int?

    @Flag(inversion: .prefixedNo, help: "With --rate-limit: send limited NTP clients a RATE kiss-o'-death (at most one per emptied bucket) instead of nothing.")
    var rateLimitKod: Bool?

    @Option(help: "With --rate-limit: IPv4 prefix length that makes one client, 0-32 (default: 32).")
    var rateLimitIpv4Prefix: Int?

    @Option(help: "With --rate-limit: IPv6 prefix length that makes one client, 0-128 (default: 64).")
    var rateLimitIpv6Prefix: Int?

    @Option(help: "With --rate-limit: MiB of memory for each service's client table, fixed at start (1-1024; default 4 MiB, which holds 131,072 clients).")
    var clientTableSize: Int?

    @Option(help: ArgumentHelp("Serve Prometheus metrics (/metrics) and live status (/status, read by 'tock status') over HTTP at ADDR:PORT. Off by default; keep it on 127.0.0.1 or ::1 unless a firewall guards it.", valueName: "addr:port"))
    var metrics: String?

    @Option(help: "After binding every socket as root, drop to this user (no groups, no capabilities). Without it, a non-root tockd needs CAP_NET_BIND_SERVICE for ports below 1024.")
    var user: String?

    @Option(help: "Log level: trace, debug, info (the default), notice, warning, error or critical.")
    var logLevel: Logger.Level?

    /// The command line's settings layer: only what was given.
    var flagSettings: TockdSettings {
        var s = TockdSettings()
        s.ntpListen = ntp.isEmpty ? nil : ntp
        s.daytimeListen = daytime.isEmpty ? nil : daytime
        s.timeListen = time.isEmpty ? nil : time
        s.daytimeFormat = daytimeFormat
        s.daytimeZone = daytimeZone
        s.clockSource = clockSource
        s.stratum = stratum
        s.workers = workers
        s.tcpTimeout = tcpTimeout
        s.tcpMaxConnections = tcpMaxConnections
        s.allow = allow.isEmpty ? nil : allow
        s.deny = deny.isEmpty ? nil : deny
        s.denyKiss = denyKiss?.code
        s.rateLimit = rateLimit
        s.rateLimitInterval = rateLimitInterval
        s.rateLimitBurst = rateLimitBurst
        s.rateLimitLeak = rateLimitLeak
        s.rateLimitKod = rateLimitKod
        s.rateLimitIPv4Prefix = rateLimitIpv4Prefix
        s.rateLimitIPv6Prefix = rateLimitIpv6Prefix
        s.clientTableSize = clientTableSize
        s.user = user
        s.logLevel = logLevel
        s.metrics = metrics
        return s
    }

    func validate() throws {
        if parseConfig, config == nil { throw ValidationError("--parse-config needs --config") }
        do {
            try flagSettings.validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// The file's settings (if any) overridden by the flags, resolved; a problem is printed
    /// and ends the process with status 1.
    func loadSettings() throws -> (merged: TockdSettings, resolved: ResolvedSettings) {
        var merged = flagSettings
        do {
            if let config {
                merged = try ConfigFile.load(path: config).overridden(by: flagSettings)
            }
            return (merged, try merged.resolve())
        } catch {
            printError("tockd: invalid configuration: \(error)")
            throw ExitCode(1)
        }
    }

    /// Binds every socket and drops privileges on the main thread, before any other thread
    /// exists (a uid change made later from one thread does not reach a main thread parked by
    /// the async runtime), then runs the services.
    func run() throws {
        if parseConfig, let config {
            print(IsolatedParse.childOutput(path: config))
            return
        }
        // A reload request that arrives before the reload service listens must not end the
        // process (SIGHUP's default action); the service takes the signal over when it starts.
        signal(SIGHUP, SIG_IGN)
        let (merged, settings) = try loadSettings()
        if checkConfig {
            print(Self.describe(settings, file: config))
            return
        }
        let liveLevel = LiveLogLevel(settings.logLevel)
        LoggingSystem.bootstrap { label in LiveLevelLogHandler(label: label, level: liveLevel) }
        let logger = Logger(label: "tockd")
        if let config { logger.info("configuration loaded", metadata: ["path": "\(config)"]) }

        // Before any other thread exists: this unsets the LISTEN_* variables.
        let inherited: [InheritedSocket]
        do {
            inherited = try SocketActivation.inheritedSockets()
        } catch {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        var configuration = settings.configuration
        if !inherited.isEmpty {
            if merged.ntpListen != nil || merged.daytimeListen != nil || merged.timeListen != nil {
                logger.warning("listeners from flags or the configuration file are ignored: serving the \(inherited.count) socket\(inherited.count == 1 ? "" : "s") inherited from systemd")
            }
            // The service manager chose the addresses.
            configuration.ntpListeners = []
            configuration.daytimeListeners = []
            configuration.timeListeners = []
            configuration.inheritedSockets = inherited
        }

        let server: TockServer
        do {
            server = try TockServer(configuration: configuration, logger: logger)
        } catch {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: server)]
        if let address = settings.metricsAddress {
            do {
                services.append(.init(service: try StatusEndpoint(address: address, server: server, logger: logger)))
            } catch {
                logger.critical("metrics: \(error.description)")
                throw ExitCode(1)
            }
        }
        if let user = settings.user {
            do {
                let capabilities = try Privileges.drop(to: user)
                logger.info("dropped privileges", metadata: ["user": "\(user)", "uid": "\(getuid())", "capabilities": "\(capabilities)"])
            } catch {
                logger.critical("\(error.description)")
                throw ExitCode(1)
            }
        }
        let reload = ReloadService(server: server, path: config, flags: flagSettings, running: merged, logLevel: liveLevel, logger: logger,
                                  load: { (path) throws(ConfigFileError) in try IsolatedParse.load(path: path) })
        let group = ServiceGroup(configuration: .init(
            services: services + [.init(service: reload)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try Tockd.runBlocking { try await group.run() }
    }

    /// What `--check-config` prints: the resolved configuration, one setting per line.
    static func describe(_ settings: ResolvedSettings, file: String?) -> String {
        let c = settings.configuration
        func policy(_ p: ServicePolicy) -> String {
            var parts: [String] = []
            parts.append(p.access.isOpen ? "everyone" : "allow \(p.access.allow.isEmpty ? "all" : p.access.allow.map(\.description).joined(separator: " ")), deny \(p.access.deny.isEmpty ? "none" : p.access.deny.map(\.description).joined(separator: " "))")
            if let r = p.rateLimit {
                parts.append("rate limit interval 2^\(r.intervalLog2) s, burst \(r.burst), leak 1/2^\(r.leakLog2), \(r.kissOfDeath ? "RATE kiss" : "silent"), /\(r.ipv4PrefixLength) /\(r.ipv6PrefixLength)")
            } else {
                parts.append("no rate limit")
            }
            if let k = p.denyKissCode { parts.append("denied get \(k)") }
            return parts.joined(separator: "; ")
        }
        var lines = ["configuration OK\(file.map { " (\($0) and flags)" } ?? " (flags)")"]
        lines.append("ntp          \(c.ntpListeners.map(\.description).joined(separator: " ")) (\(c.ntpWorkers) workers each)")
        lines.append("daytime      \(c.daytimeListeners.map(\.description).joined(separator: " ")) (\(c.daytimeFormat.rawValue), \(c.daytimeZone.rawValue))")
        lines.append("time         \(c.timeListeners.map(\.description).joined(separator: " "))")
        lines.append("clock        \(c.clockSource)")
        lines.append("tcp          timeout \(c.tcpConnectionTimeout), at most \(c.tcpMaxConnections) connections per listener")
        lines.append("ntp policy   \(policy(c.ntpPolicy))")
        lines.append("daytime      \(policy(c.daytimePolicy))")
        lines.append("time policy  \(policy(c.timePolicy))")
        lines.append("client table \(c.clientTableBytes >> 20) MiB per service")
        lines.append("metrics      \(settings.metricsAddress.map { "http://\($0)/metrics" } ?? "off")")
        lines.append("user         \(settings.user ?? "(unchanged)")")
        lines.append("log level    \(settings.logLevel)")
        return lines.joined(separator: "\n")
    }

    func printError(_ text: String) {
        let line = text + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    /// Runs `body` on the concurrency runtime and waits for it on this thread.
    static func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
        let outcome = Mutex<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await body() } catch { outcome.withLock { $0 = error } }
            done.signal()
        }
        done.wait()
        if let error = outcome.withLock({ $0 }) { throw error }
    }
}

extension ClockSourceName: ExpressibleByArgument {}
extension DaytimeFormat: ExpressibleByArgument {}
extension DaytimeZone: ExpressibleByArgument {}
extension Logger.Level: @retroactive ExpressibleByArgument {}
