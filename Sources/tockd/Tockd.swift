import ArgumentParser
import Dispatch
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import TockConfig
import TockServer
import TockSockets
import UnixSignals

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
            docs/configuration.md for every key, and deploy/tockd.toml for a commented file to \
            start from); a flag given on the command line overrides the \
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
            tockd needs no privilege at all; see deploy/systemd/tockd.socket. A TCP socket named \
            nts-ke, or on port 4460, serves NTS-KE in place of --nts-ke's addresses.

            NTS (RFC 8915): --nts-ke serves key establishment over TLS 1.3 (ALPN ntske/1) with \
            --nts-certificate and --nts-private-key (readable by its owner only; SIGHUP reads \
            both again), and answers NTS-protected NTP on every NTP listener; --nts-key-file \
            shares the cookie key's master secret across a fleet. See docs/nts.md.

            Roughtime (RFC 10049): --roughtime serves signed time on UDP with either \
            --roughtime-key (the long-term seed: tockd makes its online key and renews it) or \
            --roughtime-delegation (a delegation signed offline by tock roughtime delegate, so \
            the long-term key never sits on the server; SIGHUP reads it again, and once it \
            expires Roughtime stays silent). See docs/roughtime.md.

            Daytime and Time stay silent while the clock is unsynchronised: on a host no daemon \
            disciplines, --clock-source local is what makes the examples below answer.

            Examples:
              tockd --ntp 127.0.0.1:1123 --clock-source local
              tockd --daytime 127.0.0.1:8080 --daytime-format hms --clock-source local
              tockd --ntp 127.0.0.1:1123 --nts-ke 127.0.0.1:4460 --nts-certificate cert.pem --nts-private-key key.pem --clock-source local
              sudo tockd
              tockd --config /etc/tock/tockd.toml --check-config
              tockd --config /etc/tock/tockd.toml --metrics 127.0.0.1:9123
            """
    )

    @Option(help: ArgumentHelp("Read settings from this TOML file (see docs/configuration.md); flags given on the command line override it. SIGHUP reloads it.", valueName: "path"))
    var config: String?

    @Flag(help: "Check the configuration (file and flags), print what it resolves to, and exit: 0 if valid, 1 if not.")
    var checkConfig = false

    /// Internal: how a running tockd reloads. It runs itself with this flag to parse the file in
    /// a short-lived child (see `IsolatedParse`), which prints the file's settings as JSON.
    @Flag(help: .hidden)
    var parseConfig = false

    /// Internal: prints the configuration reference the settings table makes (markdown:
    /// docs/configuration.md, toml: deploy/tockd.toml) and exits; scripts/generate-reference
    /// writes the files with it and scripts/check-docs compares them.
    @Option(help: .hidden)
    var printReference: String?

    /// Every setting's flag, from the settings table.
    @OptionGroup var settings: SettingFlags

    /// The command line's settings layer: only what was given.
    var flagSettings: TockdSettings {
        get throws(SettingError) { try settings.layer() }
    }

    /// Rejects flag values that are wrong on their own, naming the flag, before anything runs.
    func validate() throws {
        if parseConfig, config == nil { throw ValidationError("--parse-config needs --config") }
        if let printReference, SettingsReference.Format(rawValue: printReference) == nil {
            let formats = SettingsReference.Format.allCases.map(\.rawValue).joined(separator: " or ")
            throw ValidationError("--print-reference \(printReference): not a format; allowed: \(formats)")
        }
        do {
            _ = try flagSettings
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// The flags' layer, the file's settings (if any) overridden by the flags, and those
    /// resolved; a problem (every mistake in the file) is printed and ends the process with
    /// status 1.
    func loadSettings() throws -> (flags: TockdSettings, merged: TockdSettings, resolved: ResolvedSettings) {
        do {
            let flags = try flagSettings
            var merged = flags
            if let config {
                // In a short-lived child, as reloads are: the TOML library asserts on some
                // malformed files, which must be a clear error, not an abort of tockd.
                merged = try IsolatedParse.load(path: config).overridden(by: flags)
            }
            return (flags, merged, try merged.resolve())
        } catch let errors as ConfigFileErrors where errors.all.count > 1 {
            printError("tockd: invalid configuration, \(errors.all.count) mistakes:\n\(errors)")
            throw ExitCode(1)
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
        if let format = printReference.flatMap(SettingsReference.Format.init(rawValue:)) {
            print(SettingsReference.text(format), terminator: "")
            return
        }
        // A reload request that arrives before the reload service listens must not end the
        // process (SIGHUP's default action); the service takes the signal over when it starts.
        signal(SIGHUP, SIG_IGN)
        let (flags, merged, settings) = try loadSettings()
        if checkConfig {
            print(settings.description(layer: merged, file: config))
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
            // NTS-KE and Roughtime have no default addresses: any they have was asked for.
            if merged.givesListeners || !configuration.listeners(of: .ntsKE).isEmpty || !configuration.listeners(of: .roughtime).isEmpty {
                logger.warning("listeners from flags or the configuration file are ignored: serving the \(inherited.count) socket\(inherited.count == 1 ? "" : "s") inherited from systemd")
            }
            // The service manager chose the addresses: no protocol binds its own.
            configuration.serveInherited(inherited)
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
        let config = self.config
        let running = services
        try Tockd.runBlocking {
            // SIGHUP is trapped before the services start, so one a service manager sends as
            // soon as the server says READY=1 reaches the reload service instead of being lost.
            let signals = await UnixSignalsSequence(trapping: .sighup)
            let reload = ReloadService(server: server, path: config, flags: flags, running: merged, logLevel: liveLevel, logger: logger,
                                      load: { (path) throws(ConfigFileErrors) in try IsolatedParse.load(path: path) }, signals: signals)
            let group = ServiceGroup(configuration: .init(
                services: running + [.init(service: reload)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
            try await group.run()
        }
    }

    func printError(_ text: String) {
        let line = text + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    /// Runs `body` on the concurrency runtime and waits for it on this thread.
    static func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
        final class Outcome: Sendable {
            let error = Mutex<(any Error)?>(nil)
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await body() } catch { outcome.error.withLock { $0 = error } }
            done.signal()
        }
        done.wait()
        if let error = outcome.error.withLock({ $0 }) { throw error }
    }
}
