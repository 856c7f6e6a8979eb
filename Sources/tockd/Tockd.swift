import ArgumentParser
import Dispatch
import Glibc
import Logging
import ServiceLifecycle
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

    @Option(help: "NTP worker threads per NTP address, 1-1024 (default: one per core); each binds its own SO_REUSEPORT socket, or all share a socket inherited from systemd.")
    var workers: Int = TockServerConfiguration.coreCount

    @Option(help: "Seconds a TCP Daytime/Time connection may stay open, 0.1-300.")
    var tcpTimeout: Double = 5

    @Option(help: "Most open TCP Daytime/Time connections per listener; more are closed at once (1-1000000).")
    var tcpMaxConnections: Int = 1024

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

    @Flag(help: "Limit responses per client address (token bucket, as chrony's ratelimit); off by default, as in chrony and NTPsec.")
    var rateLimit = false

    @Option(parsing: .unconditional, help: "With --rate-limit: log2 seconds per response a client earns, -19 to 12 (3 = one per 8 s; negative values allowed, e.g. -4 for 16 per second).")
    var rateLimitInterval: Int = 3

    @Option(help: "With --rate-limit: responses a client may take in a burst, 1-255.")
    var rateLimitBurst: Int = 8

    @Option(help: "With --rate-limit: answer 1 in 2^LEAK limited requests anyway, 0-4, so spoofed floods cannot silence a victim.")
    var rateLimitLeak: Int = 2

    @Flag(help: "With --rate-limit: send limited NTP clients a RATE kiss-o'-death (at most one per emptied bucket) instead of nothing.")
    var rateLimitKod = false

    @Option(help: "With --rate-limit: IPv4 prefix length that makes one client, 0-32.")
    var rateLimitIpv4Prefix: Int = 32

    @Option(help: "With --rate-limit: IPv6 prefix length that makes one client, 0-128.")
    var rateLimitIpv6Prefix: Int = 64

    @Option(help: "With --rate-limit: MiB of memory for each service's client table, fixed at start (1-1024; 4 MiB holds 524,288 clients).")
    var clientTableSize: Int = 4

    @Option(help: "After binding every socket as root, drop to this user (no groups, no capabilities). Without it, a non-root tockd needs CAP_NET_BIND_SERVICE for ports below 1024.")
    var user: String?

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
        guard (1...1_000_000).contains(tcpMaxConnections) else { throw ValidationError("--tcp-max-connections must be 1-1000000, got \(tcpMaxConnections)") }
        guard (1...1024).contains(clientTableSize) else { throw ValidationError("--client-table-size must be 1-1024 MiB, got \(clientTableSize)") }
        if let problem = rateLimitPolicy.problems.first { throw ValidationError("--rate-limit: \(problem)") }
        for service in ["ntp", "daytime", "time"] { _ = try accessList(for: service) }
    }

    /// Binds every socket and drops privileges on the main thread, before any other thread
    /// exists (a uid change made later from one thread does not reach a main thread parked by
    /// the async runtime), then runs the services.
    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "tockd")

        // Before any other thread exists: this unsets the LISTEN_* variables.
        let inherited: [InheritedSocket]
        do {
            inherited = try SocketActivation.inheritedSockets()
        } catch {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        if !inherited.isEmpty, !(ntp.isEmpty && daytime.isEmpty && time.isEmpty) {
            logger.warning("--ntp, --daytime and --time are ignored: serving the \(inherited.count) socket\(inherited.count == 1 ? "" : "s") inherited from systemd")
        }
        let configuration = try makeConfiguration(inherited: inherited)

        let server: TockServer
        do {
            server = try TockServer(configuration: configuration, logger: logger)
        } catch {
            logger.critical("\(error.description)")
            throw ExitCode(1)
        }
        if let user {
            do {
                let capabilities = try Privileges.drop(to: user)
                logger.info("dropped privileges", metadata: ["user": "\(user)", "uid": "\(getuid())", "capabilities": "\(capabilities)"])
            } catch {
                logger.critical("\(error.description)")
                throw ExitCode(1)
            }
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try Tockd.runBlocking { try await group.run() }
    }

    /// Runs `body` on the concurrency runtime and waits for it on this thread.
    static func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
        final class Outcome: @unchecked Sendable {
            var error: Error?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await body() } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    /// The server configuration the flags describe. Sockets inherited from systemd replace
    /// the listeners of the flags (and the defaults): the service manager chose the addresses.
    func makeConfiguration(inherited: [InheritedSocket] = []) throws -> TockServerConfiguration {
        let useDefaults = ntp.isEmpty && daytime.isEmpty && time.isEmpty
        func listeners(_ flags: [String], _ port: UInt16, _ flag: String) throws -> [SocketEndpoint] {
            guard inherited.isEmpty else { return [] }
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
            inheritedSockets: inherited,
            daytimeFormat: daytimeFormat,
            daytimeZone: daytimeZone,
            clockSource: clockSourceValue,
            ntpWorkers: workers,
            tcpConnectionTimeout: .milliseconds(Int64(tcpTimeout * 1000)),
            tcpMaxConnections: tcpMaxConnections,
            policy: try servicePolicy("ntp"),
            daytimePolicy: try servicePolicy("daytime"),
            timePolicy: try servicePolicy("time"),
            clientTableBytes: clientTableSize << 20
        )
    }

    var rateLimitPolicy: RateLimitPolicy {
        RateLimitPolicy(
            intervalLog2: rateLimitInterval,
            burst: rateLimitBurst,
            leakLog2: rateLimitLeak,
            kissOfDeath: rateLimitKod,
            ipv4PrefixLength: rateLimitIpv4Prefix,
            ipv6PrefixLength: rateLimitIpv6Prefix
        )
    }

    func servicePolicy(_ service: String) throws -> ServicePolicy {
        ServicePolicy(access: try accessList(for: service), rateLimit: rateLimit ? rateLimitPolicy : nil, denyKissCode: denyKiss?.code)
    }

    /// The access list for `service`: flag values without a `service=` part apply to all.
    func accessList(for service: String) throws -> AccessList {
        func parse(_ values: [String], _ flag: String) throws -> [AddressPrefix] {
            var prefixes: [AddressPrefix] = []
            for value in values {
                var text = value
                if let eq = value.firstIndex(of: "=") {
                    let name = String(value[..<eq])
                    guard ["ntp", "daytime", "time"].contains(name) else {
                        throw ValidationError("\(flag) \(value): unknown service '\(name)'; use ntp, daytime or time")
                    }
                    guard name == service else { continue }
                    text = String(value[value.index(after: eq)...])
                }
                do {
                    prefixes.append(try AddressPrefix(parsing: text, parseAddress: ListenerFlag.addressBytes))
                } catch {
                    throw ValidationError("\(flag) \(error.description)")
                }
            }
            return prefixes
        }
        return AccessList(allow: try parse(allow, "--allow"), deny: try parse(deny, "--deny"))
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
