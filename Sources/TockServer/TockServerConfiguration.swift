import NIOCore
import NIOPosix
import TockProtocol
import TockSockets

/// Everything tockd's services need, as one immutable value built by the executable from flags
/// (and later a configuration file).
public struct TockServerConfiguration: Sendable {
    /// Addresses for NTP (UDP).
    public var ntpListeners: [SocketEndpoint]
    /// Addresses for Daytime (UDP and TCP).
    public var daytimeListeners: [SocketEndpoint]
    /// Addresses for Time (UDP and TCP).
    public var timeListeners: [SocketEndpoint]
    /// Sockets systemd bound and passed (socket activation), served as they are: a UDP socket
    /// by the datagram engine (all `ntpWorkers` share an NTP one), a TCP one by the stream
    /// listener. Served besides the listeners above; tockd leaves those empty when it has any.
    /// The server owns the descriptors: it closes them when it stops. Default: none.
    public var inheritedSockets: [InheritedSocket]
    /// How Daytime writes the time. Default: RFC 867's example style.
    public var daytimeFormat: DaytimeFormat
    /// Which zone Daytime writes. Default: local time, as RFC 867's example and the seed do.
    public var daytimeZone: DaytimeZone
    /// Where the server's clock state comes from. Default: the kernel.
    public var clockSource: ClockSource
    /// NTP worker threads (one socket each) per NTP address. Default: one per core.
    public var ntpWorkers: Int
    /// How long a TCP Daytime/Time connection may stay open. Default: 5 s.
    public var tcpConnectionTimeout: Duration
    /// Open TCP connections per listener beyond which new ones are closed at once. Default: 1024.
    public var tcpMaxConnections: Int
    /// Access list, rate limit and kiss-o'-death choices for NTP.
    public var ntpPolicy: ServicePolicy
    /// The same for Daytime (UDP and TCP).
    public var daytimePolicy: ServicePolicy
    /// The same for Time (UDP and TCP).
    public var timePolicy: ServicePolicy
    /// Memory for each service's rate-limit table (fixed at start). Default: 4 MiB, 524,288
    /// clients per service.
    public var clientTableBytes: Int

    /// The default ports: NTP 123, Daytime 13, Time 37.
    public static let defaultNTPPort: UInt16 = 123
    public static let defaultDaytimePort: UInt16 = 13
    public static let defaultTimePort: UInt16 = 37

    public init(
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
    public static var coreCount: Int {
        System.coreCount
    }
}
