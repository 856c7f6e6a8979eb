import Atomics
import Logging
import ServiceLifecycle
import Synchronization
import TockCrypto
import TockProtocol
import TockServer
import TockSockets
import UnixSignals

/// Reloads the configuration file on SIGHUP, as chronyd and ntpd-rs operators expect.
///
/// What can change live (access lists, rate limits, kiss-o'-death choices and the log level)
/// is applied without closing a socket or dropping a request in flight; what cannot (listeners,
/// workers, clock source, ...) is reported as needing a restart and keeps its running value.
/// A file that does not load or check keeps the whole running configuration, and says why.
package final class ReloadService: Service, Sendable {
    /// What one reload did.
    package enum Outcome: Sendable, Equatable {
        /// Applied: the services whose policy changed, the log level, and the changed settings
        /// that need a restart (and were not applied).
        case applied(changedServices: [TockService], logLevel: Logger.Level, needRestart: [Setting])
        /// Nothing applied: why.
        case rejected(String)
    }

    private let server: TockServer
    private let path: String?
    private let flags: TockdSettings
    private let logLevel: LiveLogLevel
    private let logger: Logger
    /// Reads the file into a settings layer: in a child process for a running tockd.
    private let load: @Sendable (String) throws(ConfigFileErrors) -> TockdSettings
    /// The settings in force. Held for a whole reload, so reloads run one at a time.
    private let running: Mutex<TockdSettings>

    /// - Parameters:
    ///   - path: the configuration file, or nil when tockd runs on flags alone.
    ///   - flags: the command line's layer, which keeps overriding the file on every reload.
    ///   - running: the settings the server was started with (file overridden by flags).
    ///   - load: how to read the file; tockd parses it in a child process (`IsolatedParse`).
    ///   - signals: SIGHUP, trapped before the services start (tockd does so before the
    ///     server says READY=1, so a reload a service manager sends right after is not lost);
    ///     nil to trap it when this service runs.
    package init(
        server: TockServer, path: String?, flags: TockdSettings, running: TockdSettings, logLevel: LiveLogLevel, logger: Logger,
        load: @escaping @Sendable (String) throws(ConfigFileErrors) -> TockdSettings = { (path) throws(ConfigFileErrors) in try ConfigFile.load(path: path) },
        signals: UnixSignalsSequence? = nil
    ) {
        self.signals = signals
        self.load = load
        self.server = server
        self.path = path
        self.flags = flags
        self.running = Mutex(running)
        self.logLevel = logLevel
        self.logger = logger
    }

    /// SIGHUP, when trapped before this service started.
    private let signals: UnixSignalsSequence?

    /// Reloads on every SIGHUP until graceful shutdown.
    package func run() async throws {
        let trapped: UnixSignalsSequence
        if let signals { trapped = signals } else { trapped = await UnixSignalsSequence(trapping: .sighup) }
        for await _ in trapped.cancelOnGracefulShutdown() {
            _ = reload()
        }
    }

    /// Reads the file again and applies what can change live.
    package func reload() -> Outcome {
        guard let path else {
            logger.notice("reload requested, but tockd runs without --config: no settings to reload; key files named by flags are read again")
            reloadKeyFiles()
            return .rejected("no configuration file")
        }
        return running.withLock { running in reload(path: path, running: &running) }
    }

    private func reload(path: String, running: inout TockdSettings) -> Outcome {
        let next: TockdSettings
        let resolved: ResolvedSettings
        do throws(ConfigFileErrors) {
            next = try load(path).overridden(by: flags)
        } catch {
            // One line per mistake, so the log shows all of them.
            for mistake in error.all {
                logger.error("reload failed; keeping the running configuration", metadata: ["error": "\(mistake)"])
            }
            return .rejected("\(error)")
        }
        do throws(SettingError) {
            // The Roughtime delegation's window is checked where it is reloaded
            // (`reloadKeyFiles`): an expired delegation keeps only itself from reloading.
            resolved = try next.resolve(delegationTime: nil)
        } catch {
            logger.error("reload failed; keeping the running configuration", metadata: ["error": "\(error)"])
            return .rejected("\(error)")
        }
        let changed = next.differences(from: running)
        let needRestart = changed.filter { !$0.isReloadable }
        if !needRestart.isEmpty {
            logger.warning("reload: these settings changed but apply only at restart; keeping their running values", metadata: [
                "settings": "\(needRestart.map(\.key).joined(separator: ", "))",
            ])
        }
        let services = server.updatePolicies(resolved.policies)
        reloadKeyFiles()
        logLevel.level = resolved.logLevel
        running = running.takingReloadable(from: next)
        logger.notice("configuration reloaded", metadata: [
            "path": "\(path)",
            "changed": "\(changed.filter(\.isReloadable).map(\.key).joined(separator: ", "))",
            "policies_replaced": "\(services.map(\.rawValue).joined(separator: ", "))",
            "log_level": "\(resolved.logLevel)",
        ])
        return .applied(changedServices: services, logLevel: resolved.logLevel, needRestart: needRestart)
    }
}

extension ReloadService {
    /// Reads the files holding keys again, as an operator replaces them while tockd runs: a
    /// renewed NTS certificate (ACME) applies to new connections, a new Roughtime delegation
    /// (RFC 10049 §5.2.6) to the workers' next batch. A file that does not load keeps what runs,
    /// and the log says why.
    func reloadKeyFiles() {
        if let problem = server.reloadNTSCredentials() {
            logger.error("NTS certificate reload failed; keeping the running certificate", metadata: ["error": "\(problem)"])
        }
        switch server.reloadRoughtimeDelegation() {
        case nil:
            break
        case .success?:
            // Under 3 days left, the key service warns at its next look.
            logger.notice("Roughtime delegation reloaded", metadata: server.roughtimeKeys?.metadata(now: SystemClock.now()) ?? [:])
        case .failure(let error)?:
            logger.error("Roughtime delegation reload failed; keeping the running delegation", metadata: ["error": "\(error)"])
        }
    }
}

/// The log level every logger of the process follows, changeable at run time (on reload).
package final class LiveLogLevel: Sendable {
    private let index: ManagedAtomic<Int>

    /// Starts at `level`.
    package init(_ level: Logger.Level) {
        index = ManagedAtomic(Logger.Level.allCases.firstIndex(of: level)!)
    }

    /// The level now in force.
    package var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }
}

/// swift-log's stream handler with its level read from a `LiveLogLevel`, so a reload changes
/// the level of every logger already handed out.
package struct LiveLevelLogHandler: LogHandler {
    private var inner: StreamLogHandler
    private let live: LiveLogLevel

    /// Writes to standard error.
    package init(label: String, level: LiveLogLevel) {
        self.inner = StreamLogHandler.standardError(label: label)
        self.live = level
    }

    /// The shared live level: setting it changes every logger's.
    package var logLevel: Logger.Level {
        get { live.level }
        set { live.level = newValue }
    }

    /// This handler's own metadata.
    package var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    /// One item of this handler's metadata.
    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    /// Writes the event; `Logger` has already checked its level against the live one.
    package func log(event: LogEvent) {
        inner.log(event: event)
    }
}
