import Atomics
import Logging
import ServiceLifecycle
import TockProtocol
import TockServer
import UnixSignals

/// Reloads the configuration file on SIGHUP, as chronyd and ntpd-rs operators expect.
///
/// What can change live (access lists, rate limits, kiss-o'-death choices and the log level)
/// is applied without closing a socket or dropping a request in flight; what cannot (listeners,
/// workers, clock source, ...) is reported as needing a restart and keeps its running value.
/// A file that does not load or check keeps the whole running configuration, and says why.
package final class ReloadService: Service, @unchecked Sendable {
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
    private let load: @Sendable (String) throws(ConfigFileError) -> TockdSettings
    /// The settings in force: touched only by `reload`, which runs one at a time.
    private var running: TockdSettings

    /// - Parameters:
    ///   - path: the configuration file, or nil when tockd runs on flags alone.
    ///   - flags: the command line's layer, which keeps overriding the file on every reload.
    ///   - running: the settings the server was started with (file overridden by flags).
    ///   - load: how to read the file; tockd parses it in a child process (`IsolatedParse`).
    package init(
        server: TockServer, path: String?, flags: TockdSettings, running: TockdSettings, logLevel: LiveLogLevel, logger: Logger,
        load: @escaping @Sendable (String) throws(ConfigFileError) -> TockdSettings = { (path) throws(ConfigFileError) in try ConfigFile.load(path: path) }
    ) {
        self.load = load
        self.server = server
        self.path = path
        self.flags = flags
        self.running = running
        self.logLevel = logLevel
        self.logger = logger
    }

    package func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            _ = reload()
        }
    }

    /// Reads the file again and applies what can change live.
    package func reload() -> Outcome {
        guard let path else {
            logger.notice("reload requested, but tockd runs without --config: nothing to reload")
            return .rejected("no configuration file")
        }
        let next: TockdSettings
        let policies: ServicePolicies
        do {
            next = try load(path).overridden(by: flags)
            _ = try next.resolve()
            policies = try next.policies()
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
        let services = server.updatePolicies(policies)
        let level = next.logLevel ?? .info
        logLevel.level = level
        running = running.takingReloadable(from: next)
        logger.notice("configuration reloaded", metadata: [
            "path": "\(path)",
            "changed": "\(changed.filter(\.isReloadable).map(\.key).joined(separator: ", "))",
            "policies_replaced": "\(services.map(\.rawValue).joined(separator: ", "))",
            "log_level": "\(level)",
        ])
        return .applied(changedServices: services, logLevel: level, needRestart: needRestart)
    }
}

extension TockdSettings {
    /// These settings with the reloadable ones taken from `other`.
    func takingReloadable(from other: TockdSettings) -> TockdSettings {
        var out = self
        out.allow = other.allow
        out.deny = other.deny
        out.denyKiss = other.denyKiss
        out.rateLimit = other.rateLimit
        out.rateLimitInterval = other.rateLimitInterval
        out.rateLimitBurst = other.rateLimitBurst
        out.rateLimitLeak = other.rateLimitLeak
        out.rateLimitKod = other.rateLimitKod
        out.rateLimitIPv4Prefix = other.rateLimitIPv4Prefix
        out.rateLimitIPv6Prefix = other.rateLimitIPv6Prefix
        out.logLevel = other.logLevel
        return out
    }
}

/// The log level every logger of the process follows, changeable at run time (on reload).
package final class LiveLogLevel: Sendable {
    private let index: ManagedAtomic<Int>

    package init(_ level: Logger.Level) {
        index = ManagedAtomic(Logger.Level.allCases.firstIndex(of: level)!)
    }

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

    package var logLevel: Logger.Level {
        get { live.level }
        set { live.level = newValue }
    }

    package var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    package func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        inner.log(level: level, message: message, metadata: metadata, source: source, file: file, function: function, line: line)
    }
}
