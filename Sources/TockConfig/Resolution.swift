import Logging
import TockCrypto
import TockProtocol
import TockServer
import TockSockets

extension TockdSettings {
    /// This layer with every field `other` sets replaced by `other`'s value.
    package func overridden(by other: TockdSettings) -> TockdSettings {
        var out = self
        for setting in Setting.all where setting.isSet(other) {
            setting.copy(other, &out)
        }
        return out
    }

    /// The settings whose values differ between `self` and `other`.
    package func differences(from other: TockdSettings) -> [Setting] {
        Setting.all.filter { !$0.same(self, other) }
    }

    /// These settings with the reloadable ones, set or not, taken from `other`.
    func takingReloadable(from other: TockdSettings) -> TockdSettings {
        var out = self
        for setting in Setting.all where setting.isReloadable {
            setting.copy(other, &out)
        }
        return out
    }

    /// Whether any listener is given: then only the listeners given run, and the others none.
    package var givesListeners: Bool { Setting.givesListeners(self) }

    /// Checks every field this layer sets, on its own (ranges, addresses, prefixes).
    package func validate() throws(SettingError) {
        for setting in Setting.all {
            if let problem = setting.check(self) {
                throw SettingError(setting, code: problem.code, value: problem.element ?? setting.text(in: self), problem: problem.problem)
            }
        }
    }

    /// The settings with defaults applied, checked as a whole, as the server's configuration.
    ///
    /// Starts from the configuration types' own defaults (`TockServerConfiguration()`,
    /// `ResolvedSettings()`) and applies each setting this layer sets, in table order.
    /// `delegationTime` is when an offline Roughtime delegation must be valid (now, at start);
    /// nil skips that one check, for a reload, where the key cell checks the window itself and
    /// an expired delegation must not hold up a change of access lists.
    package func resolve(delegationTime: UTCInstant? = SystemClock.now()) throws(SettingError) -> ResolvedSettings {
        try validate()
        var resolved = ResolvedSettings()
        for setting in Setting.all {
            try setting.land(setting, self, &resolved)
        }
        resolved.configuration.nts = try resolved.nts.configuration(ntpListeners: resolved.configuration.ntpListeners)
        try resolved.readRoughtimeKeys(now: delegationTime)
        for service in TockService.allCases {
            if let problem = resolved.configuration[keyPath: service.policyPath].rateLimit?.problems.first {
                throw SettingError(.rateLimit, code: .conflict, value: "true", problem: problem)
            }
        }
        return resolved
    }

    /// The access, rate-limit and kiss-o'-death policy of each service: what reload changes.
    package func policies() throws(SettingError) -> ServicePolicies {
        try resolve().policies
    }
}

/// Settings with defaults applied: the server's configuration and what the executable itself
/// does with the rest.
package struct ResolvedSettings: Sendable {
    /// What the server runs with.
    package var configuration: TockServerConfiguration
    /// The user to drop to after binding, if any.
    package var user: String?
    /// How much tockd logs.
    package var logLevel: Logger.Level
    /// Where to serve metrics and status over HTTP, if anywhere.
    package var metricsAddress: SocketEndpoint?
    /// The NTS settings as given, before `resolve()` turns them into the server's
    /// `NTSServerConfiguration` (reading the certificate, private key and key files).
    package var nts = NTSDraft()
    /// The Roughtime key file, read by `resolve()`.
    package var roughtimeKeyFile: String?
    /// The Roughtime delegation file, read and checked by `resolve()`.
    package var roughtimeDelegationFile: String?

    /// Info: starts, stops, reloads and problems, nothing per packet.
    package static let defaultLogLevel = Logger.Level.info

    /// The defaults: the server's own, the user tockd starts as, `defaultLogLevel`, no metrics.
    package init(
        configuration: TockServerConfiguration = TockServerConfiguration(), user: String? = nil,
        logLevel: Logger.Level = ResolvedSettings.defaultLogLevel, metricsAddress: SocketEndpoint? = nil
    ) {
        self.configuration = configuration
        self.user = user
        self.logLevel = logLevel
        self.metricsAddress = metricsAddress
    }

    /// Reads the Roughtime key: exactly one of the long-term seed (the server makes and renews
    /// its online key) and an offline delegation (RFC 10049 §5.2.6), which must verify under its
    /// long-term key and be valid at `now` (unless nil), so a wrong file stops tockd at start,
    /// naming it.
    mutating func readRoughtimeKeys(now: UTCInstant?) throws(SettingError) {
        switch (roughtimeKeyFile, roughtimeDelegationFile) {
        case (let key?, _?):
            throw SettingError(.roughtimeDelegation, code: .conflict, value: roughtimeDelegationFile!, problem: "given with --roughtime-key \(key) (roughtime.key_file): serve either the long-term key or a delegation signed offline, not both", afterMerge: true)
        case (let path?, nil):
            do throws(SecretFile.Problem) {
                configuration.roughtimeKeySeed = try RoughtimeKeyText.readSeed(path: path)
            } catch {
                throw SettingError(.roughtimeKey, code: .unusableFile, value: path, problem: error.description, afterMerge: true)
            }
        case (nil, let path?):
            do throws(RoughtimeDelegation.Problem) {
                let delegation = try RoughtimeDelegation.read(path: path)
                if let now { try delegation.check(atUnixSeconds: now.secondsSinceUnixEpoch, path: path) }
                configuration.roughtimeDelegation = RoughtimeDelegationFile(path: path, delegation: delegation)
            } catch {
                throw SettingError(.roughtimeDelegation, code: .unusableFile, value: path, problem: error.description, afterMerge: true)
            }
        case (nil, nil):
            guard configuration.roughtimeListeners.isEmpty else {
                throw SettingError(.roughtimeKey, code: .missing, value: "(none)", problem: "Roughtime needs a long-term key: make one with tock roughtime keygen FILE and pass --roughtime-key FILE, or serve a delegation signed offline with --roughtime-delegation FILE (tock roughtime delegate)", afterMerge: true)
            }
        }
    }

    /// Each service's policy, as a reload hands them to the server.
    package var policies: ServicePolicies {
        let policy = { (service: TockService) in configuration[keyPath: service.policyPath] }
        return ServicePolicies(ntp: policy(.ntp), daytime: policy(.daytime), time: policy(.time), ntsKE: policy(.ntsKE), roughtime: policy(.roughtime))
    }

    /// What `--check-config` prints: every setting as `key = value`, the value in force (a
    /// valid TOML line), marked where no layer set it. `layer` is what the file and flags set;
    /// `file` names the file, if any.
    package func description(layer: TockdSettings, file: String?) -> String {
        var lines = ["configuration OK\(file.map { " (\($0) and flags)" } ?? " (flags)")"]
        let width = Setting.all.map(\.key.count).max() ?? 0
        for setting in Setting.all {
            let key = setting.key + String(repeating: " ", count: width - setting.key.count)
            let given = setting.isSet(layer) ? "" : "  # default"
            if let value = setting.current(self) {
                lines.append("\(key) = \(value.toml)\(given)")
            } else {
                lines.append("# \(setting.key) is not set: \(setting.defaultText ?? "none")")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// NTS as the settings give it, before the files are read.
package struct NTSDraft: Sendable {
    /// NTS-KE listeners.
    package var keListeners: [SocketEndpoint] = []
    /// The certificate chain's file.
    package var certificatePath: String?
    /// The private key's file.
    package var privateKeyPath: String?
    /// The cookie master secret's file.
    package var keyFile: String?
    /// The NTP server to announce.
    package var ntpServer: String?
    /// The NTP port to announce.
    package var ntpPort: UInt16?
    /// Seconds per cookie key.
    package var keyPeriod = NTSServerConfiguration.defaultKeyPeriodSeconds

    /// The server's NTS configuration, or nil when NTS is off (no NTS-KE listener and no key
    /// file). Reads the certificate and key (checking that others cannot read the key) and the
    /// key file, so a mistake stops tockd at start with the file and the fix named.
    func configuration(ntpListeners: [SocketEndpoint]) throws(SettingError) -> NTSServerConfiguration? {
        guard !keListeners.isEmpty || keyFile != nil else {
            if let certificatePath { throw SettingError(.ntsCertificate, code: .conflict, value: certificatePath, problem: "given without --nts-ke (nts.listen)", afterMerge: true) }
            return nil
        }
        var credentials: NTSCredentials?
        if !keListeners.isEmpty {
            guard let certificatePath else { throw SettingError(.ntsCertificate, code: .missing, value: "(none)", problem: "NTS-KE needs a certificate", afterMerge: true) }
            guard let privateKeyPath else { throw SettingError(.ntsPrivateKey, code: .missing, value: "(none)", problem: "NTS-KE needs a private key", afterMerge: true) }
            do throws(NTSCredentials.LoadError) {
                credentials = try NTSCredentials(certificatePath: certificatePath, privateKeyPath: privateKeyPath)
            } catch {
                let (setting, path) = error.code == .privateKey ? (Setting.ntsPrivateKey, privateKeyPath) : (Setting.ntsCertificate, certificatePath)
                throw SettingError(setting, code: .unusableFile, value: path, problem: error.description, afterMerge: true)
            }
        }
        let keys: NTSCookieKeys
        if let keyFile {
            do {
                keys = NTSCookieKeys(master: try NTSCookieKeys.readMaster(path: keyFile), periodSeconds: keyPeriod)
            } catch {
                throw SettingError(.ntsKeyFile, code: .unusableFile, value: keyFile, problem: error.description, afterMerge: true)
            }
        } else {
            keys = NTSCookieKeys.random(periodSeconds: keyPeriod)
        }
        // Without a port given, the server announces its own NTP port when it is not 123 (it
        // knows the port only once bound, which may be the kernel's choice).
        return NTSServerConfiguration(keListeners: keListeners, credentials: credentials, cookieKeys: keys, ntpServer: ntpServer, ntpPort: ntpPort)
    }
}
