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
    /// NTP worker threads (one socket each) per NTP address. Default: one per core.
    package var ntpWorkers: Int
    /// How long a TCP Daytime/Time connection may stay open. Default: 5 s.
    package var tcpConnectionTimeout: Duration
    /// Open TCP connections per listener beyond which new ones are closed at once. Default: 1024.
    package var tcpMaxConnections: Int
    /// Access list, rate limit and kiss-o'-death choices for NTP.
    package var ntpPolicy: ServicePolicy
    /// The same for Daytime (UDP and TCP).
    package var daytimePolicy: ServicePolicy
    /// The same for Time (UDP and TCP).
    package var timePolicy: ServicePolicy
    /// Memory for each service's rate-limit table (fixed at start). Default: 4 MiB, 131,072
    /// clients per service at `ClientLimiter.bytesPerClient` (32) bytes each.
    package var clientTableBytes: Int

    /// The default ports, from `TockService.wellKnownPort`.
    package static let defaultNTPPort = TockService.ntp.wellKnownPort
    package static let defaultDaytimePort = TockService.daytime.wellKnownPort
    package static let defaultTimePort = TockService.time.wellKnownPort

    /// The access, rate-limit and kiss-o'-death policy of every service.
    package var policies: ServicePolicies {
        ServicePolicies(ntp: ntpPolicy, daytime: daytimePolicy, time: timePolicy)
    }

    package init(
        ntpListeners: [SocketEndpoint] = [],
        daytimeListeners: [SocketEndpoint] = [],
        timeListeners: [SocketEndpoint] = [],
        inheritedSockets: [InheritedSocket] = [],
        daytimeFormat: DaytimeFormat = .rfc867,
        daytimeZone: DaytimeZone = .local,
        clockSource: ClockSource = .kernel(stratum: ClockSource.defaultKernelStratum),
        ntpWorkers: Int = TockServerConfiguration.coreCount,
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

    /// The number of cores this process may run on.
    package static var coreCount: Int {
        System.coreCount
    }
}
