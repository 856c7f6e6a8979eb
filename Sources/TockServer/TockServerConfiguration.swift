import NIOCore
import NIOPosix
import TockProtocol
import TockSockets

/// Everything tockd's services need, as one immutable value built from flags and the
/// configuration file (`TockdSettings.resolve()` in TockConfig).
package struct TockServerConfiguration: Sendable {
    /// Addresses for NTP (UDP).
    package var ntpListeners: [SocketEndpoint]
    /// Addresses for Daytime (UDP and TCP).
    package var daytimeListeners: [SocketEndpoint]
    /// Addresses for Time (UDP and TCP).
    package var timeListeners: [SocketEndpoint]
    /// Sockets systemd bound and passed (socket activation), served as they are: a UDP socket
    /// by the datagram engine (all `ntpWorkers` share an NTP one), a TCP one by the stream
    /// listener. Served besides the listeners above; tockd leaves those empty when it has any.
    /// The server owns the descriptors: it closes them when it stops. Default: none.
    package var inheritedSockets: [InheritedSocket]
    /// How Daytime writes the time. Default: `defaultDaytimeFormat`.
    package var daytimeFormat: DaytimeFormat
    /// Which zone Daytime writes. Default: `defaultDaytimeZone`.
    package var daytimeZone: DaytimeZone
    /// Where the server's clock state comes from. Default: `defaultClockSource`.
    package var clockSource: ClockSource
    /// NTP worker threads (one socket each) per NTP address, within `workerRange`. Default:
    /// `defaultWorkers`.
    package var ntpWorkers: Int
    /// Roughtime datagram worker threads (one socket each) per Roughtime address, within
    /// `workerRange`: set apart from `ntpWorkers` because a Roughtime reply costs a signature
    /// per batch, not a timestamp, so the two loads size differently. Default: `defaultWorkers`.
    package var roughtimeWorkers: Int
    /// How long a TCP Daytime/Time connection may stay open, and a TCP Roughtime client has to
    /// send its whole request. Default: `defaultTCPConnectionTimeout`.
    package var tcpConnectionTimeout: Duration
    /// Open TCP connections per listener beyond which new ones are closed at once. Default:
    /// `defaultTCPMaxConnections`.
    package var tcpMaxConnections: Int
    /// Open TCP connections per client address (IPv6: per /64), for every TCP service (NTS-KE
    /// included). Default: `defaultTCPMaxConnectionsPerAddress`.
    package var tcpMaxConnectionsPerAddress: Int
    /// Access list, rate limit and kiss-o'-death choices for NTP.
    package var ntpPolicy: ServicePolicy
    /// The same for Daytime (UDP and TCP).
    package var daytimePolicy: ServicePolicy
    /// The same for Time (UDP and TCP).
    package var timePolicy: ServicePolicy
    /// The same for NTS-KE (the NTP policy unless set apart).
    package var ntsKEPolicy: ServicePolicy
    /// The same for Roughtime (the NTP policy unless set apart).
    package var roughtimePolicy: ServicePolicy
    /// Roughtime (RFC 10049) addresses, UDP and TCP on the same port. Default: none.
    package var roughtimeListeners: [SocketEndpoint] = []
    /// The Roughtime long-term key's 32-byte Ed25519 seed: the server makes its online key and
    /// renews it. Roughtime needs this or `roughtimeDelegation`. Default: nil.
    package var roughtimeKeySeed: [UInt8]? = nil
    /// A Roughtime delegation signed offline (`tock roughtime delegate`), served instead of an
    /// online key made from `roughtimeKeySeed`, so the long-term key stays off the server; a
    /// reload reads its file again. Default: nil.
    package var roughtimeDelegation: RoughtimeDelegationFile? = nil
    /// How the online key made from `roughtimeKeySeed` is delegated and renewed. Default: valid
    /// from 6 h before to 18 h after it is made, renewed when under 3 h remain.
    package var roughtimeRenewal = RoughtimeRenewal()
    /// NTS-KE listeners: kept in `nts`; this view lets per-service code treat them alike.
    package var ntsKEListeners: [SocketEndpoint] {
        get { nts?.keListeners ?? [] }
        set { nts?.keListeners = newValue }
    }
    /// Memory for each service's rate-limit table (fixed at start). Default:
    /// `defaultClientTableBytes`.
    package var clientTableBytes: Int
    /// NTS (RFC 8915): key establishment and NTS-protected NTP. Default: nil, no NTS.
    package var nts: NTSServerConfiguration? = nil
    /// Whether NTP answers in the interleaved client/server mode (RFC 9769) clients that ask
    /// for it (chrony's `xleave`), with kernel transmit timestamps and a per-address log of
    /// `clientTableBytes` per NTP listener. Default: `defaultNTPInterleaved`.
    package var ntpInterleaved = TockServerConfiguration.defaultNTPInterleaved
    /// Interfaces whose network cards timestamp NTP packets (chrony's `hwtimestamp`), `*` for
    /// every interface that can; empty: software timestamps only.
    package var hardwareTimestamping: [String] = []

    /// The default ports, from `TockService.wellKnownPort`.
    package static let defaultNTPPort = TockService.ntp.wellKnownPort
    /// Daytime's well-known port (RFC 867).
    package static let defaultDaytimePort = TockService.daytime.wellKnownPort
    /// Time's well-known port (RFC 868).
    package static let defaultTimePort = TockService.time.wellKnownPort

    // MARK: Defaults, each stated once: the initialiser, the settings table and `--help` read them

    /// RFC 867's example style, which clients written against the RFC parse.
    package static let defaultDaytimeFormat = DaytimeFormat.rfc867
    /// Local time, as RFC 867's example and the seed do.
    package static let defaultDaytimeZone = DaytimeZone.local
    /// The kernel's clock state: synchronised only when a daemon disciplines the clock.
    package static let defaultClockSource = ClockSource.kernel(stratum: ClockSource.defaultKernelStratum)
    /// The worker threads per address a setting may ask for: beyond a thread per core a
    /// machine could have, more threads only share the same cores.
    package static let workerRange = 1...1024
    /// 5 s: long enough for a TCP client across the world, short enough that idle connections
    /// do not pile up against `defaultTCPMaxConnections`.
    package static let defaultTCPConnectionTimeout = Duration.seconds(5)
    /// 1024 open TCP connections per listener: bounds the memory a connection flood can take.
    package static let defaultTCPMaxConnections = 1024
    /// 8 open TCP connections per client address (IPv6: per /64): a client's exchange takes
    /// milliseconds, so even a host behind a NAT rarely has more at once; past it, that
    /// address's least advanced connection gives way (`ConnectionTable`).
    package static let defaultTCPMaxConnectionsPerAddress = 8
    /// 4 MiB: 131,072 clients per service at `ClientLimiter.bytesPerClient` (32) bytes each.
    package static let defaultClientTableBytes = 4 << 20
    /// Interleaved mode on, as in chrony: only clients that ask for it get it.
    package static let defaultNTPInterleaved = true

    /// The access, rate-limit and kiss-o'-death policy of every service.
    package var policies: ServicePolicies {
        ServicePolicies(ntp: ntpPolicy, daytime: daytimePolicy, time: timePolicy, ntsKE: ntsKEPolicy, roughtime: roughtimePolicy)
    }

    package init(
        ntpListeners: [SocketEndpoint] = [],
        daytimeListeners: [SocketEndpoint] = [],
        timeListeners: [SocketEndpoint] = [],
        inheritedSockets: [InheritedSocket] = [],
        daytimeFormat: DaytimeFormat = TockServerConfiguration.defaultDaytimeFormat,
        daytimeZone: DaytimeZone = TockServerConfiguration.defaultDaytimeZone,
        clockSource: ClockSource = TockServerConfiguration.defaultClockSource,
        ntpWorkers: Int = TockServerConfiguration.defaultWorkers,
        tcpConnectionTimeout: Duration = TockServerConfiguration.defaultTCPConnectionTimeout,
        tcpMaxConnections: Int = TockServerConfiguration.defaultTCPMaxConnections,
        policy: ServicePolicy = ServicePolicy(),
        daytimePolicy: ServicePolicy? = nil,
        timePolicy: ServicePolicy? = nil,
        clientTableBytes: Int = TockServerConfiguration.defaultClientTableBytes,
        roughtimeWorkers: Int = TockServerConfiguration.defaultWorkers,
        tcpMaxConnectionsPerAddress: Int = TockServerConfiguration.defaultTCPMaxConnectionsPerAddress
    ) {
        self.tcpMaxConnections = tcpMaxConnections
        self.tcpMaxConnectionsPerAddress = tcpMaxConnectionsPerAddress
        self.ntpPolicy = policy
        self.daytimePolicy = daytimePolicy ?? policy
        self.timePolicy = timePolicy ?? policy
        self.ntsKEPolicy = policy
        self.roughtimePolicy = policy
        self.clientTableBytes = clientTableBytes
        self.ntpListeners = ntpListeners
        self.daytimeListeners = daytimeListeners
        self.timeListeners = timeListeners
        self.inheritedSockets = inheritedSockets
        self.daytimeFormat = daytimeFormat
        self.daytimeZone = daytimeZone
        self.clockSource = clockSource
        self.ntpWorkers = ntpWorkers
        self.roughtimeWorkers = roughtimeWorkers
        self.tcpConnectionTimeout = tcpConnectionTimeout
    }

    /// The number of CPUs this process may use (`CPUBudget`): its affinity mask, capped by its
    /// cgroup's CPU quota.
    package static var coreCount: Int {
        CPUBudget.current().cpus
    }

    /// The default number of NTP workers, and of Roughtime workers, per address: one per two
    /// CPUs this process may use, rounded up (`CPUBudget.defaultWorkers`).
    package static var defaultWorkers: Int {
        CPUBudget.current().defaultWorkers
    }
}

/// NTS (RFC 8915) as one host serves it: NTS-KE listeners (none on a host that only serves
/// NTS-protected NTP with a fleet's cookie keys), the TLS credentials, the cookie keys, and
/// where to send clients for NTP.
package struct NTSServerConfiguration: Sendable {
    /// NTS-KE addresses (TCP, TLS 1.3). Default port 4460.
    package var keListeners: [SocketEndpoint]
    /// The certificate chain and key NTS-KE presents; nil when `keListeners` is empty.
    package var credentials: NTSCredentials?
    /// The cookie keys: from the key file a fleet shares, or random for one server.
    package var cookieKeys: NTSCookieKeys
    /// The NTP server NTS-KE announces, when another host serves NTP (RFC 8915 §4.1.7).
    package var ntpServer: String?
    /// The NTP port NTS-KE announces, when not 123 (RFC 8915 §4.1.8).
    package var ntpPort: UInt16?
    /// Open NTS-KE connections per listener beyond which new ones are closed at once. Default:
    /// `defaultConnectionLimit`.
    package var connectionLimit: Int
    /// How long an NTS-KE connection may send nothing (and twice that, live at all). Default:
    /// `defaultTimeout`.
    package var timeout: Duration

    /// NTS-KE is a TCP service too: the same connection cap as the others.
    package static let defaultConnectionLimit = TockServerConfiguration.defaultTCPMaxConnections
    /// The same timeout as the other TCP services.
    package static let defaultTimeout = TockServerConfiguration.defaultTCPConnectionTimeout
    /// Seconds each cookie key is current: a day, as chrony rotates.
    package static let defaultKeyPeriodSeconds: Int64 = 86_400
    /// Periods before the current one whose cookies still open: 7, so a client that slept a
    /// week keeps its cookies.
    package static let defaultKeptKeyPeriods = 7

    /// NTS on `keListeners` with `credentials` and `cookieKeys`.
    package init(
        keListeners: [SocketEndpoint], credentials: NTSCredentials?, cookieKeys: NTSCookieKeys, ntpServer: String? = nil, ntpPort: UInt16? = nil,
        connectionLimit: Int = NTSServerConfiguration.defaultConnectionLimit, timeout: Duration = NTSServerConfiguration.defaultTimeout
    ) {
        self.keListeners = keListeners
        self.credentials = credentials
        self.cookieKeys = cookieKeys
        self.ntpServer = ntpServer
        self.ntpPort = ntpPort
        self.connectionLimit = connectionLimit
        self.timeout = timeout
    }
}
