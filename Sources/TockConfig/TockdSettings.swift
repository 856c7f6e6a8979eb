import Logging
import TockProtocol
import TockServer
import TockSockets

/// One of tockd's settings, by its configuration-file key and its flag, with what it accepts.
package enum Setting: String, Sendable, CaseIterable {
    case ntpListen, daytimeListen, timeListen, daytimeFormat, daytimeZone
    case clockSource, stratum, workers, tcpTimeout, tcpMaxConnections
    case allow, deny, denyKiss
    case rateLimit, rateLimitInterval, rateLimitBurst, rateLimitLeak, rateLimitKod
    case rateLimitIPv4Prefix, rateLimitIPv6Prefix, clientTableSize
    case user, logLevel, metrics

    /// The key in the configuration file, as `table.key`.
    package var key: String {
        switch self {
        case .ntpListen: "ntp.listen"
        case .daytimeListen: "daytime.listen"
        case .timeListen: "time.listen"
        case .daytimeFormat: "daytime.format"
        case .daytimeZone: "daytime.zone"
        case .clockSource: "clock.source"
        case .stratum: "clock.stratum"
        case .workers: "ntp.workers"
        case .tcpTimeout: "tcp.timeout"
        case .tcpMaxConnections: "tcp.max_connections"
        case .allow: "access.allow"
        case .deny: "access.deny"
        case .denyKiss: "ntp.deny_kiss"
        case .rateLimit: "rate_limit.enabled"
        case .rateLimitInterval: "rate_limit.interval"
        case .rateLimitBurst: "rate_limit.burst"
        case .rateLimitLeak: "rate_limit.leak"
        case .rateLimitKod: "rate_limit.kiss_of_death"
        case .rateLimitIPv4Prefix: "rate_limit.ipv4_prefix"
        case .rateLimitIPv6Prefix: "rate_limit.ipv6_prefix"
        case .clientTableSize: "rate_limit.table_size_mib"
        case .user: "server.user"
        case .logLevel: "server.log_level"
        case .metrics: "metrics.listen"
        }
    }

    /// The command-line flag.
    package var flag: String {
        switch self {
        case .ntpListen: "--ntp"
        case .daytimeListen: "--daytime"
        case .timeListen: "--time"
        case .daytimeFormat: "--daytime-format"
        case .daytimeZone: "--daytime-zone"
        case .clockSource: "--clock-source"
        case .stratum: "--stratum"
        case .workers: "--workers"
        case .tcpTimeout: "--tcp-timeout"
        case .tcpMaxConnections: "--tcp-max-connections"
        case .allow: "--allow"
        case .deny: "--deny"
        case .denyKiss: "--deny-kiss"
        case .rateLimit: "--rate-limit"
        case .rateLimitInterval: "--rate-limit-interval"
        case .rateLimitBurst: "--rate-limit-burst"
        case .rateLimitLeak: "--rate-limit-leak"
        case .rateLimitKod: "--rate-limit-kod"
        case .rateLimitIPv4Prefix: "--rate-limit-ipv4-prefix"
        case .rateLimitIPv6Prefix: "--rate-limit-ipv6-prefix"
        case .clientTableSize: "--client-table-size"
        case .user: "--user"
        case .logLevel: "--log-level"
        case .metrics: "--metrics"
        }
    }

    /// What the setting accepts, for error messages.
    package var allowed: String {
        switch self {
        case .ntpListen, .daytimeListen, .timeListen: "PORT, ADDR:PORT, [IPv6]:PORT or ADDR (numeric addresses)"
        case .daytimeFormat: DaytimeFormat.allCases.map(\.rawValue).joined(separator: ", ")
        case .daytimeZone: DaytimeZone.allCases.map(\.rawValue).joined(separator: ", ")
        case .clockSource: ClockSourceName.allCases.map(\.rawValue).joined(separator: ", ")
        case .stratum: "1-15"
        case .workers: "1-1024"
        case .tcpTimeout: "0.1-300 (seconds)"
        case .tcpMaxConnections: "1-1000000"
        case .allow, .deny: "CIDR prefixes such as 192.0.2.0/24 or 2001:db8::/32, optionally as ntp=, daytime= or time=PREFIX"
        case .denyKiss: "DENY or RSTR"
        case .rateLimit, .rateLimitKod: "true or false"
        case .rateLimitInterval: "\(RateLimitPolicy.intervalRange.lowerBound)-\(RateLimitPolicy.intervalRange.upperBound) (log2 seconds)"
        case .rateLimitBurst: "\(RateLimitPolicy.burstRange.lowerBound)-\(RateLimitPolicy.burstRange.upperBound)"
        case .rateLimitLeak: "\(RateLimitPolicy.leakRange.lowerBound)-\(RateLimitPolicy.leakRange.upperBound)"
        case .rateLimitIPv4Prefix: "0-32"
        case .rateLimitIPv6Prefix: "0-128"
        case .clientTableSize: "1-1024 (MiB)"
        case .user: "a user name from the password database"
        case .logLevel: Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
        case .metrics: "ADDR:PORT or [IPv6]:PORT (numeric address; 127.0.0.1 or ::1 keeps it local)"
        }
    }

    /// Whether a running tockd applies a new value on reload (SIGHUP); the others need a restart.
    package var isReloadable: Bool {
        switch self {
        case .allow, .deny, .denyKiss, .rateLimit, .rateLimitInterval, .rateLimitBurst, .rateLimitLeak,
             .rateLimitKod, .rateLimitIPv4Prefix, .rateLimitIPv6Prefix, .logLevel:
            true
        default:
            false
        }
    }
}

/// Where the clock state comes from, by name.
package enum ClockSourceName: String, Sendable, CaseIterable {
    case kernel, local, unsynchronized
}

/// A setting's value is not acceptable: names the setting, the value and what is allowed.
package struct SettingError: Error, Sendable, Equatable, CustomStringConvertible {
    package var setting: Setting
    /// The offending value as the user wrote it.
    package var value: String
    /// What is wrong with it.
    package var problem: String
    /// Whether the value may have come from the file or the flags (a check across settings,
    /// made after the two are merged).
    package var afterMerge: Bool

    package init(_ setting: Setting, value: String, problem: String, afterMerge: Bool = false) {
        self.setting = setting
        self.value = value
        self.problem = problem
        self.afterMerge = afterMerge
    }

    package var description: String {
        let name = afterMerge ? "\(setting.flag) (\(setting.key) in the file)" : setting.flag
        return "\(name) \(value): \(problem); allowed: \(setting.allowed)"
    }
}

/// tockd's settings as one layer: every field optional, so that a layer of flags can override a
/// configuration file's layer field by field. `resolve()` applies the defaults and builds the
/// server's immutable configuration.
package struct TockdSettings: Sendable, Equatable {
    package var ntpListen: [String]?
    package var daytimeListen: [String]?
    package var timeListen: [String]?
    package var daytimeFormat: DaytimeFormat?
    package var daytimeZone: DaytimeZone?
    package var clockSource: ClockSourceName?
    package var stratum: Int?
    package var workers: Int?
    package var tcpTimeout: Double?
    package var tcpMaxConnections: Int?
    /// Access-list prefixes as `[service=]PREFIX`.
    package var allow: [String]?
    package var deny: [String]?
    package var denyKiss: KissCode?
    package var rateLimit: Bool?
    package var rateLimitInterval: Int?
    package var rateLimitBurst: Int?
    package var rateLimitLeak: Int?
    package var rateLimitKod: Bool?
    package var rateLimitIPv4Prefix: Int?
    package var rateLimitIPv6Prefix: Int?
    package var clientTableSize: Int?
    package var user: String?
    package var logLevel: Logger.Level?
    /// Where to serve metrics over HTTP; nil (the default) for nowhere.
    package var metrics: String?

    package init() {}

    /// This layer with every field `other` sets replaced by `other`'s value.
    package func overridden(by other: TockdSettings) -> TockdSettings {
        var out = self
        func take<T>(_ path: WritableKeyPath<TockdSettings, T?>) {
            if let value = other[keyPath: path] { out[keyPath: path] = value }
        }
        take(\.ntpListen); take(\.daytimeListen); take(\.timeListen)
        take(\.daytimeFormat); take(\.daytimeZone); take(\.clockSource); take(\.stratum)
        take(\.workers); take(\.tcpTimeout); take(\.tcpMaxConnections)
        take(\.allow); take(\.deny); take(\.denyKiss)
        take(\.rateLimit); take(\.rateLimitInterval); take(\.rateLimitBurst); take(\.rateLimitLeak)
        take(\.rateLimitKod); take(\.rateLimitIPv4Prefix); take(\.rateLimitIPv6Prefix); take(\.clientTableSize)
        take(\.user); take(\.logLevel); take(\.metrics)
        return out
    }

    // MARK: Checks, one setting at a time

    /// Checks every field this layer sets, on its own (ranges, addresses, prefixes).
    package func validate() throws(SettingError) {
        try Self.check(.stratum, stratum, in: 1...15)
        try Self.check(.workers, workers, in: 1...1024)
        if let tcpTimeout, !(tcpTimeout >= 0.1 && tcpTimeout <= 300) {
            throw SettingError(.tcpTimeout, value: "\(tcpTimeout)", problem: "out of range")
        }
        try Self.check(.tcpMaxConnections, tcpMaxConnections, in: 1...1_000_000)
        try Self.check(.rateLimitInterval, rateLimitInterval, in: RateLimitPolicy.intervalRange)
        try Self.check(.rateLimitBurst, rateLimitBurst, in: RateLimitPolicy.burstRange)
        try Self.check(.rateLimitLeak, rateLimitLeak, in: RateLimitPolicy.leakRange)
        try Self.check(.rateLimitIPv4Prefix, rateLimitIPv4Prefix, in: 0...32)
        try Self.check(.rateLimitIPv6Prefix, rateLimitIPv6Prefix, in: 0...128)
        try Self.check(.clientTableSize, clientTableSize, in: 1...1024)
        if let denyKiss, denyKiss != .deny, denyKiss != .restrict {
            throw SettingError(.denyKiss, value: denyKiss.description, problem: "not a denial kiss code")
        }
        if let user, user.isEmpty {
            throw SettingError(.user, value: "\"\"", problem: "empty")
        }
        for (setting, values) in [(Setting.ntpListen, ntpListen), (.daytimeListen, daytimeListen), (.timeListen, timeListen)] {
            for value in values ?? [] { _ = try Self.listeners([value], setting: setting, defaultPort: 0) }
        }
        for value in allow ?? [] { _ = try Self.accessEntry(value, setting: .allow) }
        for value in deny ?? [] { _ = try Self.accessEntry(value, setting: .deny) }
        if let metrics { _ = try Self.metricsAddress(metrics) }
    }

    static func check(_ setting: Setting, _ value: Int?, in range: ClosedRange<Int>) throws(SettingError) {
        if let value, !range.contains(value) {
            throw SettingError(setting, value: "\(value)", problem: "out of range")
        }
    }

    /// Listener texts to addresses; a bare port means every address.
    static func listeners(_ values: [String], setting: Setting, defaultPort: UInt16) throws(SettingError) -> [SocketEndpoint] {
        do {
            return try ListenerFlag.addresses(values, defaultPort: defaultPort, flag: setting.flag)
        } catch {
            throw SettingError(setting, value: values.count == 1 ? values[0] : values.description, problem: "not a listener address")
        }
    }

    /// One access-list entry, `[service=]PREFIX`: the service it is limited to (nil for all)
    /// and the prefix.
    static func accessEntry(_ value: String, setting: Setting) throws(SettingError) -> (service: String?, prefix: AddressPrefix) {
        var text = Substring(value)
        var service: String?
        if let eq = value.firstIndex(of: "=") {
            let name = String(value[..<eq])
            guard ["ntp", "daytime", "time"].contains(name) else {
                throw SettingError(setting, value: value, problem: "unknown service '\(name)'")
            }
            service = name
            text = value[value.index(after: eq)...]
        }
        do {
            return (service, try AddressPrefix(parsing: String(text), parseAddress: ListenerFlag.addressBytes))
        } catch {
            throw SettingError(setting, value: value, problem: error.reason)
        }
    }

    /// The metrics listener: one numeric address with a port.
    static func metricsAddress(_ value: String) throws(SettingError) -> SocketEndpoint {
        guard let parsed = try? HostAndPort(parsing: value, bareNumberIsPort: true), let port = parsed.port else {
            throw SettingError(.metrics, value: value, problem: "not an address with a port")
        }
        let host = parsed.host ?? "127.0.0.1"
        guard let address = SocketEndpoint(ip: host == "localhost" ? "127.0.0.1" : host, port: port) else {
            throw SettingError(.metrics, value: value, problem: "'\(host)' is not a numeric IPv4 or IPv6 address")
        }
        return address
    }

    // MARK: Resolving

    /// The settings with defaults applied, checked as a whole, as the server's configuration.
    package func resolve() throws(SettingError) -> ResolvedSettings {
        try validate()
        let source = clockSource ?? .kernel
        if let stratum, source == .unsynchronized {
            throw SettingError(.stratum, value: "\(stratum)", problem: "has no effect with clock source unsynchronized", afterMerge: true)
        }
        let useDefaults = ntpListen == nil && daytimeListen == nil && timeListen == nil
        func addresses(_ values: [String]?, _ setting: Setting, _ port: UInt16) throws(SettingError) -> [SocketEndpoint] {
            try Self.listeners(useDefaults ? ["\(port)"] : (values ?? []), setting: setting, defaultPort: port)
        }
        let clock: ClockSource = switch source {
        case .kernel: .kernel(stratum: UInt8(stratum ?? Int(ClockSource.defaultKernelStratum)))
        case .local: .local(stratum: UInt8(stratum ?? Int(ClockSource.defaultLocalStratum)))
        case .unsynchronized: .unsynchronized
        }
        let timeout = tcpTimeout ?? 5
        let configuration = TockServerConfiguration(
            ntpListeners: try addresses(ntpListen, .ntpListen, TockServerConfiguration.defaultNTPPort),
            daytimeListeners: try addresses(daytimeListen, .daytimeListen, TockServerConfiguration.defaultDaytimePort),
            timeListeners: try addresses(timeListen, .timeListen, TockServerConfiguration.defaultTimePort),
            daytimeFormat: daytimeFormat ?? .rfc867,
            daytimeZone: daytimeZone ?? .local,
            clockSource: clock,
            ntpWorkers: workers ?? TockServerConfiguration.coreCount,
            tcpConnectionTimeout: .milliseconds(Int64(timeout * 1000)),
            tcpMaxConnections: tcpMaxConnections ?? 1024,
            policy: try policies()[.ntp],
            daytimePolicy: try policies()[.daytime],
            timePolicy: try policies()[.time],
            clientTableBytes: (clientTableSize ?? 4) << 20
        )
        return ResolvedSettings(
            configuration: configuration,
            user: user,
            logLevel: logLevel ?? .info,
            metricsAddress: try metrics.map { (m) throws(SettingError) in try Self.metricsAddress(m) }
        )
    }

    /// The access, rate-limit and kiss-o'-death policy of each service: what reload changes.
    package func policies() throws(SettingError) -> ServicePolicies {
        let rateLimitPolicy = RateLimitPolicy(
            intervalLog2: rateLimitInterval ?? 3,
            burst: rateLimitBurst ?? 8,
            leakLog2: rateLimitLeak ?? 2,
            kissOfDeath: rateLimitKod ?? false,
            ipv4PrefixLength: rateLimitIPv4Prefix ?? 32,
            ipv6PrefixLength: rateLimitIPv6Prefix ?? 64
        )
        if let problem = rateLimitPolicy.problems.first {
            throw SettingError(.rateLimit, value: "true", problem: problem)
        }
        func policy(_ service: String) throws(SettingError) -> ServicePolicy {
            var allowed: [AddressPrefix] = []
            var denied: [AddressPrefix] = []
            for value in allow ?? [] {
                let entry = try Self.accessEntry(value, setting: .allow)
                if entry.service == nil || entry.service == service { allowed.append(entry.prefix) }
            }
            for value in deny ?? [] {
                let entry = try Self.accessEntry(value, setting: .deny)
                if entry.service == nil || entry.service == service { denied.append(entry.prefix) }
            }
            return ServicePolicy(
                access: AccessList(allow: allowed, deny: denied),
                rateLimit: rateLimit == true ? rateLimitPolicy : nil,
                denyKissCode: denyKiss
            )
        }
        return ServicePolicies(ntp: try policy("ntp"), daytime: try policy("daytime"), time: try policy("time"))
    }

    /// The settings whose values differ between `self` and `other`.
    package func differences(from other: TockdSettings) -> [Setting] {
        var out: [Setting] = []
        func compare<T: Equatable>(_ setting: Setting, _ path: KeyPath<TockdSettings, T?>) {
            if self[keyPath: path] != other[keyPath: path] { out.append(setting) }
        }
        compare(.ntpListen, \.ntpListen); compare(.daytimeListen, \.daytimeListen); compare(.timeListen, \.timeListen)
        compare(.daytimeFormat, \.daytimeFormat); compare(.daytimeZone, \.daytimeZone)
        compare(.clockSource, \.clockSource); compare(.stratum, \.stratum); compare(.workers, \.workers)
        compare(.tcpTimeout, \.tcpTimeout); compare(.tcpMaxConnections, \.tcpMaxConnections)
        compare(.allow, \.allow); compare(.deny, \.deny); compare(.denyKiss, \.denyKiss)
        compare(.rateLimit, \.rateLimit); compare(.rateLimitInterval, \.rateLimitInterval)
        compare(.rateLimitBurst, \.rateLimitBurst); compare(.rateLimitLeak, \.rateLimitLeak)
        compare(.rateLimitKod, \.rateLimitKod); compare(.rateLimitIPv4Prefix, \.rateLimitIPv4Prefix)
        compare(.rateLimitIPv6Prefix, \.rateLimitIPv6Prefix); compare(.clientTableSize, \.clientTableSize)
        compare(.user, \.user); compare(.logLevel, \.logLevel); compare(.metrics, \.metrics)
        return out
    }
}

/// Settings with defaults applied: the server's configuration and what the executable itself
/// does with the rest.
package struct ResolvedSettings: Sendable {
    package var configuration: TockServerConfiguration
    /// The user to drop to after binding, if any.
    package var user: String?
    package var logLevel: Logger.Level
    /// Where to serve metrics and status over HTTP, if anywhere.
    package var metricsAddress: SocketEndpoint?
}
