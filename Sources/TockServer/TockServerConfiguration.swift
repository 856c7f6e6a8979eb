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
    /// How Daytime writes the time. Default: RFC 867's example style.
    package var daytimeFormat: DaytimeFormat
    /// Which zone Daytime writes. Default: local time, as RFC 867's example and the seed do.
    package var daytimeZone: DaytimeZone
    /// Where the server's clock state comes from. Default: the kernel.
    package var clockSource: ClockSource
    /// NTP worker threads (one socket each) per NTP address. Default: one per two CPUs this
    /// process may use (`CPUBudget.defaultWorkers`).
    package var ntpWorkers: Int
    /// How long a TCP Daytime/Time connection may stay open, and a TCP Roughtime client has to
    /// send its whole request. Default: 5 s.
    package var tcpConnectionTimeout: Duration
    /// Open TCP connections per listener beyond which new ones are closed at once. Default: 1024.
    package var tcpMaxConnections: Int
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
    /// Memory for each service's rate-limit table (fixed at start). Default: 4 MiB, 131,072
    /// clients per service at `ClientLimiter.bytesPerClient` (32) bytes each.
    package var clientTableBytes: Int
    /// NTS (RFC 8915): key establishment and NTS-protected NTP. Default: nil, no NTS.
    package var nts: NTSServerConfiguration? = nil
    /// Whether NTP answers in the interleaved client/server mode (RFC 9769) clients that ask
    /// for it (chrony's `xleave`), with kernel transmit timestamps and a per-address log of
    /// `clientTableBytes` per NTP listener. Default: on, as in chrony.
    package var ntpInterleaved = true
    /// Interfaces whose network cards timestamp NTP packets (chrony's `hwtimestamp`), `*` for
    /// every interface that can; empty: software timestamps only.
    package var hardwareTimestamping: [String] = []

    /// The default ports, from `TockService.wellKnownPort`.
    package static let defaultNTPPort = TockService.ntp.wellKnownPort
    package static let defaultDaytimePort = TockService.daytime.wellKnownPort
    package static let defaultTimePort = TockService.time.wellKnownPort

    /// The access, rate-limit and kiss-o'-death policy of every service.
    package var policies: ServicePolicies {
        ServicePolicies(ntp: ntpPolicy, daytime: daytimePolicy, time: timePolicy, ntsKE: ntsKEPolicy, roughtime: roughtimePolicy)
    }

    package init(
        ntpListeners: [SocketEndpoint] = [],
        daytimeListeners: [SocketEndpoint] = [],
        timeListeners: [SocketEndpoint] = [],
        inheritedSockets: [InheritedSocket] = [],
        daytimeFormat: DaytimeFormat = .rfc867,
        daytimeZone: DaytimeZone = .local,
        clockSource: ClockSource = .kernel(stratum: ClockSource.defaultKernelStratum),
        ntpWorkers: Int = TockServerConfiguration.defaultWorkers,
        tcpConnectionTimeout: Duration = .seconds(5),
        tcpMaxConnections: Int = 1024,
        policy: ServicePolicy = ServicePolicy(),
        daytimePolicy: ServicePolicy? = nil,
        timePolicy: ServicePolicy? = nil,
        clientTableBytes: Int = 4 << 20
    ) {
        self.tcpMaxConnections = tcpMaxConnections
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
        self.tcpConnectionTimeout = tcpConnectionTimeout
    }

    /// The number of CPUs this process may use (`CPUBudget`): its affinity mask, capped by its
    /// cgroup's CPU quota.
    package static var coreCount: Int {
        CPUBudget.current().cpus
    }

    /// The default number of NTP workers per address: one per two CPUs this process may use
    /// (`CPUBudget.defaultWorkers`).
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
    /// Open NTS-KE connections per listener beyond which new ones are closed at once.
    package var connectionLimit: Int
    /// How long an NTS-KE connection may send nothing (and twice that, live at all).
    package var timeout: Duration

    /// NTS on `keListeners` with `credentials` and `cookieKeys`.
    package init(keListeners: [SocketEndpoint], credentials: NTSCredentials?, cookieKeys: NTSCookieKeys, ntpServer: String? = nil, ntpPort: UInt16? = nil, connectionLimit: Int = 1024, timeout: Duration = .seconds(5)) {
        self.keListeners = keListeners
        self.credentials = credentials
        self.cookieKeys = cookieKeys
        self.ntpServer = ntpServer
        self.ntpPort = ntpPort
        self.connectionLimit = connectionLimit
        self.timeout = timeout
    }
}
