import Logging
import TockProtocol
import TockServer
import TockSockets

/// tockd's settings as one layer: every field optional, so that a layer of flags can override a
/// configuration file's layer field by field. `resolve()` applies the defaults and builds the
/// server's immutable configuration.
///
/// Each field is described by its entry in `Setting.all` below: adding a setting is a field
/// here, an entry there (and its name in `all`), and the code that uses the resolved value.
/// Everything else (file, flags, reload, `--help`, `--check-config`) follows from the entry.
package struct TockdSettings: Sendable, Equatable {
    /// `Setting.ntpListen`.
    package var ntpListen: [String]?
    /// `Setting.daytimeListen`.
    package var daytimeListen: [String]?
    /// `Setting.timeListen`.
    package var timeListen: [String]?
    /// `Setting.daytimeFormat`.
    package var daytimeFormat: DaytimeFormat?
    /// `Setting.daytimeZone`.
    package var daytimeZone: DaytimeZone?
    /// `Setting.clockSource`.
    package var clockSource: ClockSourceName?
    /// `Setting.stratum`.
    package var stratum: Int?
    /// `Setting.workers`.
    package var workers: Int?
    /// `Setting.tcpTimeout`, in seconds.
    package var tcpTimeout: Double?
    /// `Setting.tcpMaxConnections`.
    package var tcpMaxConnections: Int?
    /// `Setting.tcpMaxConnectionsPerAddress`.
    package var tcpMaxConnectionsPerAddress: Int?
    /// `Setting.allow`: access-list prefixes as `[service=]PREFIX`.
    package var allow: [String]?
    /// `Setting.deny`: access-list prefixes as `[service=]PREFIX`.
    package var deny: [String]?
    /// `Setting.denyKiss`.
    package var denyKiss: KissCode?
    /// `Setting.rateLimit`.
    package var rateLimit: Bool?
    /// `Setting.rateLimitInterval`.
    package var rateLimitInterval: Int?
    /// `Setting.rateLimitBurst`.
    package var rateLimitBurst: Int?
    /// `Setting.rateLimitLeak`.
    package var rateLimitLeak: Int?
    /// `Setting.rateLimitKod`.
    package var rateLimitKod: Bool?
    /// `Setting.rateLimitIPv4Prefix`.
    package var rateLimitIPv4Prefix: Int?
    /// `Setting.rateLimitIPv6Prefix`.
    package var rateLimitIPv6Prefix: Int?
    /// `Setting.clientTableSize`, in MiB.
    package var clientTableSize: Int?
    /// `Setting.interleaved`.
    package var interleaved: Bool?
    /// `Setting.hardwareTimestamping`: interface names, or `*`.
    package var hardwareTimestamping: [String]?
    /// `Setting.user`.
    package var user: String?
    /// `Setting.logLevel`.
    package var logLevel: Logger.Level?
    /// `Setting.metrics`: where to serve metrics over HTTP; nil (the default) for nowhere.
    package var metrics: String?

    /// `Setting.ntsKE`: NTS-KE listeners.
    package var ntsKE: [String]?
    /// `Setting.ntsCertificate`.
    package var ntsCertificate: String?
    /// `Setting.ntsPrivateKey`.
    package var ntsPrivateKey: String?
    /// `Setting.ntsKeyFile`.
    package var ntsKeyFile: String?
    /// `Setting.ntsNTPServer`.
    package var ntsNTPServer: String?
    /// `Setting.ntsNTPPort`.
    package var ntsNTPPort: Int?
    /// `Setting.ntsKeyPeriod`, in seconds.
    package var ntsKeyPeriod: Int?

    /// `Setting.roughtime`: Roughtime listeners.
    package var roughtime: [String]?
    /// `Setting.roughtimeKey`.
    package var roughtimeKey: String?
    /// `Setting.roughtimeDelegation`.
    package var roughtimeDelegation: String?
    /// `Setting.roughtimeWorkers`.
    package var roughtimeWorkers: Int?

    /// A layer that sets nothing.
    package init() {}
}

// MARK: - The table

extension Setting {
    /// Every setting, in the order `--help` and `--check-config` list them and `resolve()`
    /// applies them: a clock's source before its stratum, the rate-limit switch before the
    /// limit's values.
    package static let all: [Setting] = [
        ntpListen, daytimeListen, timeListen, daytimeFormat, daytimeZone,
        clockSource, stratum, workers, tcpTimeout, tcpMaxConnections, tcpMaxConnectionsPerAddress,
        allow, deny, denyKiss,
        rateLimit, rateLimitInterval, rateLimitBurst, rateLimitLeak, rateLimitKod,
        rateLimitIPv4Prefix, rateLimitIPv6Prefix, clientTableSize, interleaved, hardwareTimestamping,
        metrics, user, logLevel,
        ntsKE, ntsCertificate, ntsPrivateKey, ntsKeyFile, ntsNTPServer, ntsNTPPort, ntsKeyPeriod,
        roughtime, roughtimeKey, roughtimeDelegation, roughtimeWorkers,
    ]

    /// Where Roughtime answers (RFC 10049); off without it. Like NTS-KE, not a listener that
    /// turns the NTP defaults off.
    package static let roughtime = Setting(
        key: "roughtime.listen", flag: "--roughtime", reloadable: false,
        help: "Serve Roughtime (RFC 10049) on UDP and TCP at LISTENER (repeatable; port \(TockService.roughtime.wellKnownPort) if none given); needs --roughtime-key or --roughtime-delegation",
        valueName: "listener", field: \.roughtime,
        format: .list(allowed: "PORT, ADDR:PORT, [IPv6]:PORT or ADDR (numeric addresses)") { text in
            problem { () throws(ValueProblem) in _ = try listeners([text], flag: "", defaultPort: 0) }
        },
        lands: Landing(
            apply: { (value, setting, _, resolved) throws(SettingError) in
                guard let value else { return }
                resolved.configuration.roughtimeListeners = try setting.checked(value.count == 1 ? value[0] : value.description) { () throws(ValueProblem) in
                    try listeners(value, flag: setting.flag, defaultPort: TockService.roughtime.wellKnownPort)
                }
            },
            current: { $0.configuration.roughtimeListeners.isEmpty ? nil : $0.configuration.roughtimeListeners.map(\.description) }
        ),
        defaultText: "off", example: ["\(TockService.roughtime.wellKnownPort)"]
    )
    /// The Roughtime long-term key.
    package static let roughtimeKey = Setting(
        key: "roughtime.key_file", flag: "--roughtime-key", reloadable: false,
        help: "Roughtime long-term Ed25519 seed (32 bytes raw, 64 hex digits or 44 base64 characters; readable by its owner only; make one with: tock roughtime keygen FILE); the online key is made at start and renewed daily. Or keep the long-term key off the server with --roughtime-delegation",
        valueName: "file", field: \.roughtimeKey, format: .text(allowed: "a 32-byte seed file, mode 600") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.roughtimeKeyFile, to: { $0 }, back: { $0 }),
        example: "/etc/tock/roughtime.key"
    )
    /// A Roughtime delegation signed offline, served instead of the long-term key.
    package static let roughtimeDelegation = Setting(
        key: "roughtime.delegation_file", flag: "--roughtime-delegation", reloadable: false,
        help: "Serve Roughtime with a delegation signed offline (tock roughtime delegate --key SEED --out FILE: the online key and its certificate, readable by its owner only) instead of --roughtime-key, so the long-term key never sits on the server; refused if its signature fails or it is not valid now; SIGHUP reads the file again; once it expires Roughtime stays silent",
        valueName: "file", field: \.roughtimeDelegation, format: .text(allowed: "a file written by tock roughtime delegate, mode 600") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.roughtimeDelegationFile, to: { $0 }, back: { $0 }),
        defaultText: "none (the online key is made from --roughtime-key)", example: "/etc/tock/roughtime.delegation"
    )
    /// Roughtime datagram worker threads per address, apart from NTP's: a Roughtime reply
    /// costs a signature per batch, so its load sizes differently.
    package static let roughtimeWorkers = Setting(
        key: TockService.roughtime.key("workers"), flag: "--roughtime-workers", reloadable: false,
        help: "Roughtime worker threads per Roughtime address (UDP); each binds its own SO_REUSEPORT socket, or all share a socket inherited from systemd",
        field: \.roughtimeWorkers, format: .integer(TockServerConfiguration.workerRange), lands: .at(\.configuration.roughtimeWorkers),
        defaultText: workersDefaultText, example: 2
    )

    /// Where NTS-KE answers (RFC 8915 §4); NTS is off without it (or a key file).
    package static let ntsKE = Setting(
        key: "nts.listen", flag: "--nts-ke", reloadable: false,
        help: "Serve NTS key establishment (RFC 8915, TLS 1.3) on TCP at LISTENER (repeatable; port \(TockService.ntsKE.wellKnownPort) if none given), and NTS-protected NTP on every NTP listener; needs --nts-certificate and --nts-private-key",
        valueName: "listener", field: \.ntsKE,
        format: .list(allowed: "PORT, ADDR:PORT, [IPv6]:PORT or ADDR (numeric addresses)") { text in
            problem { () throws(ValueProblem) in _ = try listeners([text], flag: "", defaultPort: 0) }
        },
        lands: Landing(
            apply: { (value, setting, _, resolved) throws(SettingError) in
                guard let value else { return }
                resolved.nts.keListeners = try setting.checked(value.count == 1 ? value[0] : value.description) { () throws(ValueProblem) in
                    try listeners(value, flag: setting.flag, defaultPort: TockService.ntsKE.wellKnownPort)
                }
            },
            current: { $0.nts.keListeners.isEmpty ? nil : $0.nts.keListeners.map(\.description) }
        ),
        defaultText: "off", example: ["\(TockService.ntsKE.wellKnownPort)"]
    )
    /// The TLS certificate chain NTS-KE presents.
    package static let ntsCertificate = Setting(
        key: "nts.certificate", flag: "--nts-certificate", reloadable: false,
        help: "PEM certificate chain for NTS-KE; SIGHUP reads the file again, so a renewed certificate applies without a restart (a new path needs one)",
        valueName: "file", field: \.ntsCertificate, format: .text(allowed: "a PEM file") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.nts.certificatePath, to: { $0 }, back: { $0 }),
        example: "/etc/tock/nts/fullchain.pem"
    )
    /// The TLS private key.
    package static let ntsPrivateKey = Setting(
        key: "nts.private_key", flag: "--nts-private-key", reloadable: false,
        help: "PEM private key for NTS-KE; refused if others can read it; SIGHUP reads the file again",
        valueName: "file", field: \.ntsPrivateKey, format: .text(allowed: "a PEM file readable by its owner only") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.nts.privateKeyPath, to: { $0 }, back: { $0 }),
        example: "/etc/tock/nts/privkey.pem"
    )
    /// The master secret of the cookie keys.
    package static let ntsKeyFile = Setting(
        key: "nts.key_file", flag: "--nts-key-file", reloadable: false,
        help: "Master secret for NTS cookie keys (at least 32 random bytes, readable by its owner only): servers sharing it accept each other's cookies, so a fleet behind anycast or DNS shares one; given without --nts-ke, this host serves NTS-protected NTP for cookies another host's NTS-KE hands out",
        valueName: "file", field: \.ntsKeyFile, format: .text(allowed: "a file of at least 32 random bytes, mode 600") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.nts.keyFile, to: { $0 }, back: { $0 }),
        defaultText: "a random secret per start (cookies die with the process)", example: "/etc/tock/nts/cookie.key"
    )
    /// The NTP host NTS-KE announces.
    package static let ntsNTPServer = Setting(
        key: "nts.ntp_server", flag: "--nts-ntp-server", reloadable: false,
        help: "Tell NTS-KE clients to use this NTP server (a name or address: RFC 8915 §4.1.7) instead of this host",
        valueName: "host", field: \.ntsNTPServer, format: .text(allowed: "a host name or address") { $0.isEmpty || $0.utf8.count > 255 ? "empty or too long" : nil },
        lands: .at(\.nts.ntpServer, to: { $0 }, back: { $0 }),
        defaultText: "this host", example: "ntp1.example.net"
    )
    /// The NTP port NTS-KE announces.
    package static let ntsNTPPort = Setting(
        key: "nts.ntp_port", flag: "--nts-ntp-port", reloadable: false,
        help: "Tell NTS-KE clients to use this NTP port (RFC 8915 §4.1.8); default: the first NTP listener's port when it is not \(TockService.ntp.wellKnownPort)",
        field: \.ntsNTPPort, format: .integer(1...65535),
        lands: .at(\.nts.ntpPort, to: { UInt16($0) }, back: { $0.map(Int.init) }),
        defaultText: "\(TockService.ntp.wellKnownPort), or the NTP listener's port", example: Int(TockService.ntp.wellKnownPort)
    )
    /// The cookie-key period.
    package static let ntsKeyPeriod = Setting(
        key: "nts.key_period", flag: "--nts-key-period", reloadable: false,
        help: "Seconds each NTS cookie key is current; cookies of the \(NTSServerConfiguration.defaultKeptKeyPeriods) periods before stay valid",
        field: \.ntsKeyPeriod, format: .integer(60...31_536_000, unit: "seconds"),
        lands: .at(\.nts.keyPeriod, to: { Int64($0) }, back: { Int($0) })
    )

    /// Where NTP answers.
    package static let ntpListen = listen(.ntp, \.ntpListen, "Serve NTP on UDP at LISTENER (repeatable); any listener given replaces the defaults")
    /// Where Daytime answers.
    package static let daytimeListen = listen(.daytime, \.daytimeListen, "Serve Daytime on UDP and TCP at LISTENER (repeatable)")
    /// Where Time answers.
    package static let timeListen = listen(.time, \.timeListen, "Serve Time (RFC 868) on UDP and TCP at LISTENER (repeatable)")

    /// How Daytime writes the time.
    package static let daytimeFormat = Setting(
        key: TockService.daytime.key("format"), flag: "--daytime-format", reloadable: false,
        help: "Daytime text: rfc867 ('Tuesday, November 24, 2026 18:36:20-UTC'), iso8601 ('2026-11-24T18:36:20Z') or hms ('18:36:20', the seed protocol's format)",
        field: \.daytimeFormat, format: .choice, lands: .at(\.configuration.daytimeFormat)
    )
    /// Which zone Daytime writes.
    package static let daytimeZone = Setting(
        key: TockService.daytime.key("zone"), flag: "--daytime-zone", reloadable: false,
        help: "Daytime zone: local (TZ or /etc/localtime) or utc",
        field: \.daytimeZone, format: .choice, lands: .at(\.configuration.daytimeZone)
    )

    /// Where the clock state comes from.
    package static let clockSource = Setting(
        key: "clock.source", flag: "--clock-source", reloadable: false,
        help: "Where the server's clock state comes from: kernel (adjtimex), local (always synchronised, like chrony's 'local'), or unsynchronized (always leap 3: for tests and draining)",
        field: \.clockSource, format: .choice,
        lands: .at(\.configuration.clockSource, to: { $0.clockSource }, back: { ClockSourceName($0) })
    )
    /// The stratum served when synchronised; applied after the source, whose default it replaces.
    package static let stratum = Setting(
        key: "clock.stratum", flag: "--stratum", reloadable: false,
        help: "Stratum to serve when synchronised",
        field: \.stratum, format: .integer(1...15),
        lands: Landing(
            apply: { (value, setting, _, resolved) throws(SettingError) in
                guard let value else { return }
                switch resolved.configuration.clockSource {
                case .kernel: resolved.configuration.clockSource = .kernel(stratum: UInt8(value))
                case .local: resolved.configuration.clockSource = .local(stratum: UInt8(value))
                case .unsynchronized, .external:
                    throw SettingError(setting, code: .conflict, value: "\(value)", problem: "has no effect with clock source unsynchronized", afterMerge: true)
                }
            },
            current: { resolved in
                switch resolved.configuration.clockSource {
                case .kernel(let stratum), .local(let stratum): Int(stratum)
                case .unsynchronized, .external: nil
                }
            }
        ),
        defaultText: "\(ClockSource.defaultKernelStratum) for kernel, \(ClockSource.defaultLocalStratum) for local",
        example: Int(ClockSource.defaultKernelStratum)
    )

    /// NTP worker threads per address.
    package static let workers = Setting(
        key: TockService.ntp.key("workers"), flag: "--workers", reloadable: false,
        help: "NTP worker threads per NTP address; each binds its own SO_REUSEPORT socket, or all share a socket inherited from systemd",
        field: \.workers, format: .integer(TockServerConfiguration.workerRange), lands: .at(\.configuration.ntpWorkers),
        defaultText: workersDefaultText, example: 2
    )
    /// `TockServerConfiguration.defaultWorkers` in words: the count depends on the machine.
    static let workersDefaultText = "one per two CPUs this process may use, rounded up (its affinity mask, capped by its cgroup CPU quota)"
    /// How long a TCP connection may stay open.
    package static let tcpTimeout = Setting(
        key: "tcp.timeout", flag: "--tcp-timeout", reloadable: false,
        help: "Seconds a TCP Daytime/Time connection may stay open, and a TCP Roughtime client has to send its whole request",
        field: \.tcpTimeout, format: .number(0.1...300, unit: "seconds"),
        lands: .at(\.configuration.tcpConnectionTimeout, to: { .milliseconds(Int64($0 * 1000)) }, back: { $0.seconds })
    )
    /// Open TCP connections per listener.
    package static let tcpMaxConnections = Setting(
        key: "tcp.max_connections", flag: "--tcp-max-connections", reloadable: false,
        help: "Most open TCP Daytime, Time or Roughtime connections per listener; more are closed at once",
        field: \.tcpMaxConnections, format: .integer(1...1_000_000), lands: .at(\.configuration.tcpMaxConnections)
    )
    /// Open TCP connections per client address.
    package static let tcpMaxConnectionsPerAddress = Setting(
        key: "tcp.max_connections_per_address", flag: "--tcp-max-connections-per-address", reloadable: false,
        help: "Most open TCP connections (NTS-KE, Roughtime, Daytime, Time) per client address, per /64 for IPv6; past it, that address's least advanced connection is closed to admit the new one",
        field: \.tcpMaxConnectionsPerAddress, format: .integer(1...1_000_000), lands: .at(\.configuration.tcpMaxConnectionsPerAddress)
    )

    /// Who is served.
    package static let allow = accessList(
        "allow", \.allow, \.allow,
        help: "Serve only clients in PREFIX, for every service or, as SERVICE=PREFIX, for one (repeatable)",
        defaultText: "everyone", example: ["10.0.0.0/8", "2001:db8::/32"]
    )
    /// Who is never served.
    package static let deny = accessList(
        "deny", \.deny, \.deny,
        help: "Never serve clients in PREFIX, for every service or, as SERVICE=PREFIX, for one (repeatable); deny wins over allow",
        defaultText: "no one", example: ["10.66.0.0/16"]
    )
    /// What a denied NTP client is sent.
    package static let denyKiss = Setting(
        key: TockService.ntp.key("deny_kiss"), flag: "--deny-kiss", reloadable: true,
        help: "Send denied NTP clients this kiss-o'-death instead of nothing",
        field: \.denyKiss,
        format: .choice([KissCode.deny, .restrict], name: { $0.description }, allowed: "DENY or RSTR", problem: "not a denial kiss code"),
        lands: .everyService(\.denyKissCode, to: { $0 }, back: { $0 }),
        defaultText: "none", example: .deny
    )

    /// Whether responses per client are limited.
    package static let rateLimit = Setting(
        key: "rate_limit.enabled", flag: "--rate-limit", reloadable: true,
        help: "Limit responses per client address (token bucket, as chrony's ratelimit; off unless given, as in chrony and NTPsec)",
        field: \.rateLimit, format: .boolean,
        lands: .everyService(\.rateLimit, to: { $0 ? RateLimitPolicy() : nil }, back: { $0 != nil })
    )
    /// The rate limit's interval.
    package static let rateLimitInterval = rateLimitValue(
        "interval", "--rate-limit-interval", \.rateLimitInterval, \.intervalLog2, .integer(RateLimitPolicy.intervalRange, unit: "log2 seconds"),
        help: "With --rate-limit: log2 seconds per response a client earns (3 is one per 8 s, -4 sixteen per second)"
    )
    /// The rate limit's burst.
    package static let rateLimitBurst = rateLimitValue(
        "burst", "--rate-limit-burst", \.rateLimitBurst, \.burst, .integer(RateLimitPolicy.burstRange),
        help: "With --rate-limit: responses a client may take in a burst"
    )
    /// The rate limit's leak.
    package static let rateLimitLeak = rateLimitValue(
        "leak", "--rate-limit-leak", \.rateLimitLeak, \.leakLog2, .integer(RateLimitPolicy.leakRange),
        help: "With --rate-limit: answer 1 in 2^LEAK limited requests anyway, so spoofed floods cannot silence a victim"
    )
    /// Whether a limited NTP client is sent a RATE kiss.
    package static let rateLimitKod = rateLimitValue(
        "kiss_of_death", "--rate-limit-kod", \.rateLimitKod, \.kissOfDeath, .boolean,
        help: "With --rate-limit: send limited NTP clients a RATE kiss-o'-death (at most one per emptied bucket) instead of nothing"
    )
    /// The IPv4 prefix length that makes one client.
    package static let rateLimitIPv4Prefix = rateLimitValue(
        "ipv4_prefix", "--rate-limit-ipv4-prefix", \.rateLimitIPv4Prefix, \.ipv4PrefixLength, .integer(0...32),
        help: "With --rate-limit: IPv4 prefix length that makes one client"
    )
    /// The IPv6 prefix length that makes one client.
    package static let rateLimitIPv6Prefix = rateLimitValue(
        "ipv6_prefix", "--rate-limit-ipv6-prefix", \.rateLimitIPv6Prefix, \.ipv6PrefixLength, .integer(0...128),
        help: "With --rate-limit: IPv6 prefix length that makes one client"
    )
    /// Memory for each service's client table.
    package static let clientTableSize = Setting(
        key: "rate_limit.table_size_mib", flag: "--client-table-size", reloadable: false,
        help: "MiB of memory for each service's rate-limit client table (with --rate-limit) and for each NTP address's interleaved-mode log, fixed at start",
        field: \.clientTableSize, format: .integer(1...1024, unit: "MiB"),
        lands: .at(\.configuration.clientTableBytes, to: { $0 << 20 }, back: { $0 >> 20 })
    )

    /// Whether NTP answers interleaved requests (RFC 9769).
    package static let interleaved = Setting(
        key: TockService.ntp.key("interleaved"), flag: "--interleaved", reloadable: false,
        help: "Answer NTP clients in interleaved mode (RFC 9769, chrony's xleave) when they ask: the transmit timestamp the kernel took as the previous reply left; --no-interleaved answers every request in basic mode",
        field: \.interleaved, format: .boolean, lands: .at(\.configuration.ntpInterleaved)
    )

    /// Interfaces whose network cards timestamp NTP packets.
    package static let hardwareTimestamping = Setting(
        key: TockService.ntp.key("hw_timestamping"), flag: "--hw-timestamping", reloadable: false,
        help: "Have the network card of INTERFACE timestamp NTP packets, as chrony's hwtimestamp (repeatable; * for every interface that can): T2 and interleaved replies' T3 from its PTP hardware clock, converted to system time. Needs CAP_NET_ADMIN at start (tockd binds as root); an interface that cannot (no PTP clock, as lo and veth) keeps software timestamps with a warning",
        valueName: "interface", field: \.hardwareTimestamping,
        format: .list(allowed: "an interface name (as ip link lists it) or *") { text in
            interfaceNameProblem(text)
        },
        lands: Landing(
            apply: { (value, _, _, resolved) throws(SettingError) in
                if let value { resolved.configuration.hardwareTimestamping = value }
            },
            current: { $0.configuration.hardwareTimestamping.isEmpty ? nil : $0.configuration.hardwareTimestamping }
        ),
        defaultText: "none (software timestamps)", example: ["eth0"]
    )

    /// Why `text` cannot name a network interface (Linux: 1 to 15 bytes, no '/', ':' or
    /// whitespace), or nil; `*` stands for every interface.
    static func interfaceNameProblem(_ text: String) -> String? {
        if text == "*" { return nil }
        if text.isEmpty { return "empty" }
        if text.utf8.count > 15 { return "longer than 15 bytes" }
        if text.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) || text == "." || text == ".." { return "not an interface name" }
        return nil
    }

    /// Where metrics and status are served.
    package static let metrics = Setting(
        key: "metrics.listen", flag: "--metrics", reloadable: false,
        help: "Serve Prometheus metrics (/metrics) and live status (/status, read by 'tock status') over HTTP at ADDR:PORT; keep it on 127.0.0.1 or ::1 unless a firewall guards it",
        valueName: "addr:port", field: \.metrics,
        format: .text(allowed: "ADDR:PORT or [IPv6]:PORT (numeric address; 127.0.0.1 or ::1 keeps it local)") { text in
            problem { () throws(ValueProblem) in _ = try metricsAddress(text) }
        },
        lands: Landing(
            apply: { (value, setting, _, resolved) throws(SettingError) in
                if let value { resolved.metricsAddress = try setting.checked(value) { () throws(ValueProblem) in try metricsAddress(value) } }
            },
            current: { $0.metricsAddress?.description }
        ),
        defaultText: "off", example: "127.0.0.1:9123"
    )
    /// The user to drop to.
    package static let user = Setting(
        key: "server.user", flag: "--user", reloadable: false,
        help: "After binding every socket as root, drop to this user (no groups, no capabilities); without it, a non-root tockd needs CAP_NET_BIND_SERVICE for ports below 1024",
        field: \.user, format: .text(allowed: "a user name from the password database") { $0.isEmpty ? "empty" : nil },
        lands: .at(\.user, to: { $0 }, back: { $0 }),
        defaultText: "none (the user tockd starts as)", example: "tockd"
    )
    /// How much tockd logs.
    package static let logLevel = Setting(
        key: "server.log_level", flag: "--log-level", reloadable: true,
        help: "Log level",
        field: \.logLevel, format: .choice, lands: .at(\.logLevel)
    )

    // MARK: Entries that share a shape

    /// A service's listeners: key `SERVICE.listen`, flag `--SERVICE`. Unset, a service listens
    /// on its well-known port on every address, unless another service's listeners are given.
    static func listen(_ service: TockService, _ field: WritableKeyPath<TockdSettings, [String]?> & Sendable, _ help: String) -> Setting {
        let endpoints = service.listenersPath
        return Setting(
            key: service.key("listen"), flag: "--\(service)", reloadable: false, help: help, valueName: "listener",
            field: field,
            format: .list(allowed: "PORT, ADDR:PORT, [IPv6]:PORT or ADDR (numeric addresses)") { text in
                problem { () throws(ValueProblem) in _ = try listeners([text], flag: "", defaultPort: 0) }
            },
            lands: Landing(
                apply: { (value, setting, layer, resolved) throws(SettingError) in
                    let texts = value ?? (Setting.givesListeners(layer) ? [] : ["\(service.wellKnownPort)"])
                    resolved.configuration[keyPath: endpoints] = try setting.checked(texts.count == 1 ? texts[0] : texts.description) { () throws(ValueProblem) in
                        try listeners(texts, flag: setting.flag, defaultPort: service.wellKnownPort)
                    }
                },
                current: { $0.configuration[keyPath: endpoints].map(\.description) }
            ),
            defaultText: "\(service.wellKnownPort) (every address)", example: ["\(service.wellKnownPort)"],
            isListener: true
        )
    }

    /// An access list: key `access.NAME`, and `SERVICE.NAME` in each service's table for that
    /// service alone; flag `--NAME`, with `SERVICE=PREFIX` for one service.
    static func accessList(
        _ name: String, _ field: WritableKeyPath<TockdSettings, [String]?> & Sendable, _ list: WritableKeyPath<AccessList, [AddressPrefix]> & Sendable,
        help: String, defaultText: String, example: [String]
    ) -> Setting {
        let services = TockService.allCases.map { "\($0)=" }
        let allowed = "CIDR prefixes such as 192.0.2.0/24 or 2001:db8::/32, optionally as "
            + services.dropLast().joined(separator: ", ") + " or \(services.last!)PREFIX"
        return Setting(
            key: "access.\(name)", flag: "--\(name)", reloadable: true, help: help, valueName: "[service=]prefix",
            field: field,
            format: .list(allowed: allowed) { text in
                problem { () throws(ValueProblem) in _ = try accessEntry(text) }
            },
            lands: Landing(
                apply: { (value, setting, _, resolved) throws(SettingError) in
                    for text in value ?? [] {
                        let entry = try setting.checked(text) { () throws(ValueProblem) in try accessEntry(text) }
                        for service in entry.service.map({ [$0] }) ?? TockService.allCases {
                            resolved.configuration[keyPath: service.policyPath].access[keyPath: list].append(entry.prefix)
                        }
                    }
                },
                current: { resolved in
                    // A prefix every service has is written once, plainly; the others with their service.
                    let lists = TockService.allCases.map { ($0, resolved.configuration[keyPath: $0.policyPath].access[keyPath: list]) }
                    var texts: [String] = []
                    for (service, prefixes) in lists {
                        for prefix in prefixes {
                            let text = lists.allSatisfy { $0.1.contains(prefix) } ? prefix.description : "\(service)=\(prefix)"
                            if !texts.contains(text) { texts.append(text) }
                        }
                    }
                    return texts
                }
            ),
            defaultText: defaultText, example: example,
            serviceScope: { (value, service) throws(ValueProblem) in
                guard case .strings(let texts) = value else { return value }
                if let scoped = texts.first(where: { $0.contains("=") }) {
                    throw ValueProblem(
                        .invalidValue, "a service prefix inside [\(service)]", element: scoped,
                        allowed: "plain prefixes here; SERVICE=PREFIX only in [access]"
                    )
                }
                return .strings(texts.map { "\(service)=\($0)" })
            }
        )
    }

    /// One value of the rate limit: key `rate_limit.NAME`; lands in every service's limit when
    /// the limit is on, and defaults to `RateLimitPolicy()`'s.
    static func rateLimitValue<Value: Sendable & Equatable>(
        _ name: String, _ flag: String, _ field: WritableKeyPath<TockdSettings, Value?> & Sendable,
        _ policyField: WritableKeyPath<RateLimitPolicy, Value> & Sendable, _ format: ValueFormat<Value>, help: String
    ) -> Setting {
        Setting(
            key: "rate_limit.\(name)", flag: flag, reloadable: true, help: help,
            field: field, format: format,
            lands: Landing(
                apply: { value, _, _, resolved in
                    guard let value else { return }
                    for service in TockService.allCases {
                        resolved.configuration[keyPath: service.policyPath].rateLimit?[keyPath: policyField] = value
                    }
                },
                current: { ($0.configuration[keyPath: TockService.ntp.policyPath].rateLimit ?? RateLimitPolicy())[keyPath: policyField] }
            )
        )
    }
}

extension Landing {
    /// The same value in every service's policy, at `path`; read back from NTP's.
    static func everyService<Target>(
        _ path: WritableKeyPath<ServicePolicy, Target> & Sendable,
        to convert: @escaping @Sendable (Value) -> Target, back: @escaping @Sendable (Target) -> Value?
    ) -> Self {
        Self(
            apply: { value, _, _, resolved in
                guard let value else { return }
                for service in TockService.allCases {
                    resolved.configuration[keyPath: service.policyPath][keyPath: path] = convert(value)
                }
            },
            current: { back($0.configuration[keyPath: TockService.ntp.policyPath][keyPath: path]) }
        )
    }
}

// MARK: - Values that need more than a range

extension Setting {
    /// Listener texts to addresses; a bare port means every address.
    static func listeners(_ values: [String], flag: String, defaultPort: UInt16) throws(ValueProblem) -> [SocketEndpoint] {
        do {
            return try ListenerFlag.addresses(values, defaultPort: defaultPort, flag: flag)
        } catch {
            throw ValueProblem(.invalidValue, "not a listener address")
        }
    }

    /// One access-list entry, `[service=]PREFIX`: the service it is limited to (nil for all)
    /// and the prefix.
    static func accessEntry(_ value: String) throws(ValueProblem) -> (service: TockService?, prefix: AddressPrefix) {
        var text = Substring(value)
        var service: TockService?
        if let eq = value.firstIndex(of: "=") {
            let name = String(value[..<eq])
            guard let named = TockService(rawValue: name) else {
                throw ValueProblem(.invalidValue, "unknown service '\(name)'")
            }
            service = named
            text = value[value.index(after: eq)...]
        }
        do {
            return (service, try AddressPrefix(parsing: String(text), parseAddress: ListenerFlag.addressBytes))
        } catch {
            throw ValueProblem(.invalidValue, error.reason)
        }
    }

    /// The metrics listener: one numeric address with a port.
    static func metricsAddress(_ value: String) throws(ValueProblem) -> SocketEndpoint {
        guard let parsed = try? HostAndPort(parsing: value, bareNumberIsPort: true), let port = parsed.port else {
            throw ValueProblem(.invalidValue, "not an address with a port")
        }
        let host = parsed.host ?? "127.0.0.1"
        guard let address = SocketEndpoint(ip: host == "localhost" ? "127.0.0.1" : host, port: port) else {
            throw ValueProblem(.invalidValue, "'\(host)' is not a numeric IPv4 or IPv6 address")
        }
        return address
    }

    /// Runs `body`, naming this setting and `value` in the error it may throw.
    func checked<T>(_ value: String, _ body: () throws(ValueProblem) -> T) throws(SettingError) -> T {
        do {
            return try body()
        } catch {
            throw SettingError(self, code: error.code, value: value, problem: error.problem)
        }
    }

    /// The problem `body` reports, if any: for a format's check.
    static func problem(_ body: () throws(ValueProblem) -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return error.problem
        }
    }
}

/// Where the clock state comes from, by name.
package enum ClockSourceName: String, Sendable, CaseIterable {
    /// `ClockSource.kernel`: synchronised when the kernel says so.
    case kernel
    /// `ClockSource.local`: always synchronised.
    case local
    /// `ClockSource.unsynchronized`: never synchronised.
    case unsynchronized

    /// The name of `source`; nil for one only a program can choose (external).
    init?(_ source: ClockSource) {
        switch source {
        case .kernel: self = .kernel
        case .local: self = .local
        case .unsynchronized: self = .unsynchronized
        case .external: return nil
        }
    }

    /// The source, at its default stratum.
    var clockSource: ClockSource {
        switch self {
        case .kernel: .kernel(stratum: ClockSource.defaultKernelStratum)
        case .local: .local(stratum: ClockSource.defaultLocalStratum)
        case .unsynchronized: .unsynchronized
        }
    }
}

extension TockService {
    /// A key in this service's table of the configuration file.
    func key(_ name: String) -> String { "\(rawValue).\(name)" }

    /// This service's listeners in the server's configuration.
    var listenersPath: WritableKeyPath<TockServerConfiguration, [SocketEndpoint]> & Sendable {
        switch self {
        case .ntp: \.ntpListeners
        case .daytime: \.daytimeListeners
        case .time: \.timeListeners
        case .ntsKE: \.ntsKEListeners
        case .roughtime: \.roughtimeListeners
        }
    }

    /// This service's policy in the server's configuration.
    var policyPath: WritableKeyPath<TockServerConfiguration, ServicePolicy> & Sendable {
        switch self {
        case .ntp: \.ntpPolicy
        case .daytime: \.daytimePolicy
        case .time: \.timePolicy
        case .ntsKE: \.ntsKEPolicy
        case .roughtime: \.roughtimePolicy
        }
    }
}

extension Duration {
    /// The duration in seconds, as the configuration writes it.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
