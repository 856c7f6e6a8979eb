import Glibc
import NIOCore
import TockCrypto
import TockProtocol
import TockSockets

extension TockServerConfiguration {
    /// The addresses configured for `service` (NTS-KE's are in `nts`).
    package func listeners(of service: TockService) -> [SocketEndpoint] {
        self[keyPath: Self.listenerKeyPath(service)]
    }

    /// Where each service's addresses are kept.
    package static func listenerKeyPath(_ service: TockService) -> WritableKeyPath<TockServerConfiguration, [SocketEndpoint]> {
        switch service {
        case .ntp: \.ntpListeners
        case .daytime: \.daytimeListeners
        case .time: \.timeListeners
        case .ntsKE: \.ntsKEListeners
        case .roughtime: \.roughtimeListeners
        }
    }

    /// The connection caps of a Daytime, Time or Roughtime TCP listener.
    var streamLimits: ConnectionTable.Limits {
        ConnectionTable.Limits(total: tcpMaxConnections, perAddress: tcpMaxConnectionsPerAddress)
    }

    /// Serves `sockets` (inherited from systemd) instead of every service's own addresses: the
    /// service manager chose them, so nothing else is bound.
    package mutating func serveInherited(_ sockets: [InheritedSocket]) {
        for service in TockService.allCases { self[keyPath: Self.listenerKeyPath(service)] = [] }
        inheritedSockets = sockets
    }
}

/// A TCP listener of any service: Daytime, Time and Roughtime on the stream transport, or
/// NTS key establishment over TLS.
enum TCPListener {
    case stream(StreamTimeListener)
    case keyEstablishment(NTSKEListener)
}

/// The listeners a server has bound, by kind.
struct BoundListeners {
    var datagram: [DatagramListener] = []
    var stream: [StreamTimeListener] = []
    var keyEstablishment: [NTSKEListener] = []

    mutating func append(_ listener: TCPListener) {
        switch listener {
        case .stream(let l): stream.append(l)
        case .keyEstablishment(let l): keyEstablishment.append(l)
        }
    }
}

/// How tockd serves one protocol: its configured addresses, and how each of its transports is
/// bound on an address or served on a socket inherited from systemd. `TockServer.init` walks
/// the table (`all`) and does the same for every protocol; a new protocol is one more entry.
struct ServicePlan {
    let service: TockService
    /// The configured addresses, each served on every transport the protocol has.
    let addresses: [SocketEndpoint]
    /// The UDP listener on an address or inherited socket, if the protocol has UDP.
    let udp: ((ListenerSource) throws(ListenerError) -> DatagramListener)?
    /// The TCP listener on an address or inherited socket, if the protocol has TCP; it may look
    /// at what is bound already (NTS-KE announces the NTP port).
    let tcp: ((ListenerSource, BoundListeners) throws(ListenerError) -> TCPListener)?

    /// Where a listener's socket comes from.
    enum ListenerSource {
        /// Bound here.
        case address(SocketEndpoint)
        /// Bound by systemd and passed (socket activation).
        case inherited(InheritedSocket)
    }

    /// Binds the protocol on `address`: UDP and TCP on the same port when it has both (for
    /// port 0, one free for both, chosen again if either bind finds it taken meanwhile).
    func bind(_ address: SocketEndpoint, into bound: inout BoundListeners) throws(ListenerError) {
        switch (udp, tcp) {
        case (let udp?, let tcp?):
            let snapshot = bound
            let (datagram, stream) = try ListenerSocket.bindingPort(address, alsoTCP: true) { (address) throws(ListenerError) in
                let datagram = try udp(.address(address))
                return (datagram, try tcp(.address(datagram.address), snapshot))
            }
            bound.datagram.append(datagram)
            bound.append(stream)
        case (let udp?, nil):
            bound.datagram.append(try udp(.address(address)))
        case (nil, let tcp?):
            bound.append(try tcp(.address(address), bound))
        case (nil, nil):
            break
        }
    }

    /// Serves `socket`, which systemd bound for this protocol; a transport the protocol does not
    /// have is refused (and the socket closed).
    func adopt(_ socket: InheritedSocket, into bound: inout BoundListeners) throws(ListenerError) {
        switch socket.transport {
        case .udp:
            guard let udp else {
                close(socket.fd)
                throw ListenerError(transport: "UDP", address: socket.address, errorNumber: EPROTONOSUPPORT, inheritedFD: socket.fd)
            }
            bound.datagram.append(try udp(.inherited(socket)))
        case .tcp:
            guard let tcp else {
                close(socket.fd)
                throw ListenerError(transport: "TCP", address: socket.address, errorNumber: EPROTONOSUPPORT, inheritedFD: socket.fd)
            }
            bound.append(try tcp(.inherited(socket), bound))
        }
    }

    /// The table: NTP first (NTS-KE announces its port), then Daytime, Time, NTS-KE and
    /// Roughtime, each with its responder factories over the shared clock state and its own
    /// live policy.
    static func all(
        configuration: TockServerConfiguration, precision: Int8, clock: ClockStateCell, policies: [TockService: PolicyCell],
        hardwareClocks: HardwareClocks?, roughtimeKeys: RoughtimeKeyCell?
    ) -> [ServicePlan] {
        TockService.allCases.map { service in
            let policy = policies[service]!
            let addresses = configuration.listeners(of: service)
            switch service {
            case .ntp:
                return ServicePlan(service: service, addresses: addresses, udp: { (source) throws(ListenerError) in
                    try ntpListener(source, configuration: configuration, precision: precision, clock: clock, policy: policy, hardwareClocks: hardwareClocks)
                }, tcp: nil)
            case .daytime, .time:
                let core = TextTimeServer(service: service, format: configuration.daytimeFormat, zone: configuration.daytimeZone)
                return ServicePlan(service: service, addresses: addresses, udp: { (source) throws(ListenerError) in
                    try DatagramListener(service: service, source: source, workers: 1) { _ in
                        TextTimeDatagramResponder(core: core, clock: clock, policy: policy)
                    }
                }, tcp: { (source, _) throws(ListenerError) in
                    .stream(try StreamTimeListener(source: source, serves: .text(core), policy: policy, limits: configuration.streamLimits))
                })
            case .ntsKE:
                return ServicePlan(service: service, addresses: addresses, udp: nil, tcp: { (source, bound) throws(ListenerError) in
                    .keyEstablishment(try keyEstablishmentListener(source, configuration: configuration, policy: policy, bound: bound))
                })
            case .roughtime:
                guard let keys = roughtimeKeys else { return ServicePlan(service: service, addresses: [], udp: nil, tcp: nil) }
                // UDP and TCP share the port (RFC 10049 §5: the same packet over either).
                return ServicePlan(service: service, addresses: addresses, udp: { (source) throws(ListenerError) in
                    try DatagramListener(service: service, source: source, workers: configuration.roughtimeWorkers) { _ in
                        RoughtimeDatagramResponder(keys: keys, clock: clock, policy: policy)
                    }
                }, tcp: { (source, _) throws(ListenerError) in
                    .stream(try StreamTimeListener(source: source, serves: .roughtime(keys), policy: policy, limits: configuration.streamLimits))
                })
            }
        }
    }

    /// An NTP listener: `ntpWorkers` workers, kernel transmit timestamps, and one interleaved-
    /// mode client log shared by its workers. A systemd socket shared by several workers gets no
    /// transmit timestamps (the kernel numbers a socket's datagrams; the workers could not tell
    /// whose a number is), so no log either.
    private static func ntpListener(
        _ source: ListenerSource, configuration: TockServerConfiguration, precision: Int8, clock: ClockStateCell, policy: PolicyCell,
        hardwareClocks: HardwareClocks?
    ) throws(ListenerError) -> DatagramListener {
        var shared = false
        if case .inherited = source { shared = configuration.ntpWorkers > 1 }
        let log = configuration.ntpInterleaved && !shared ? InterleavedClientLog(memoryBytes: configuration.clientTableBytes) : nil
        return try DatagramListener(service: .ntp, source: source, workers: configuration.ntpWorkers, transmitTimestamps: true, hardwareClocks: hardwareClocks) { socket in
            // Each worker its own NTS contexts, confined to its thread.
            let nts = configuration.nts.map { NTSPacketCrypto(keys: $0.cookieKeys, now: SystemClock.now().secondsSinceUnixEpoch) }
            return NTPDatagramResponder(precision: precision, clock: clock, policy: policy, socket: socket, nts: nts, interleaved: log)
        }
    }

    /// An NTS-KE listener. Announces this host's NTP port when it is not 123 and no other host
    /// is named, so clients find it (RFC 8915 §4.1.8). Needs the TLS credentials.
    private static func keyEstablishmentListener(
        _ source: ListenerSource, configuration: TockServerConfiguration, policy: PolicyCell, bound: BoundListeners
    ) throws(ListenerError) -> NTSKEListener {
        guard let nts = configuration.nts, let credentials = nts.credentials else {
            switch source {
            case .address(let address):
                throw ListenerError(transport: "TCP", address: address, errorNumber: ENOKEY)
            case .inherited(let socket):
                close(socket.fd)
                throw ListenerError(transport: "TCP", address: socket.address, errorNumber: ENOKEY, inheritedFD: socket.fd)
            }
        }
        var port = nts.ntpPort
        if port == nil, nts.ntpServer == nil, let first = bound.datagram.first(where: { $0.service == .ntp }), first.address.port != 123 {
            port = first.address.port
        }
        let core = NTSKEServer(ntpServer: nts.ntpServer, ntpPort: port)
        let cookies = NTSCookieMaker(keys: nts.cookieKeys)
        let timeout = TimeAmount.nanoseconds(Int64(nts.timeout.components.seconds) * 1_000_000_000 + nts.timeout.components.attoseconds / 1_000_000_000)
        switch source {
        case .address(let address):
            return try NTSKEListener(address: address, credentials: credentials, cookies: cookies, server: core, policy: policy, connectionLimit: nts.connectionLimit, perAddress: configuration.tcpMaxConnectionsPerAddress, timeout: timeout)
        case .inherited(let socket):
            return NTSKEListener(inherited: socket, credentials: credentials, cookies: cookies, server: core, policy: policy, connectionLimit: nts.connectionLimit, perAddress: configuration.tcpMaxConnectionsPerAddress, timeout: timeout)
        }
    }
}

extension DatagramListener {
    /// A listener on an address it binds, or on a socket systemd passed.
    convenience init<R: DatagramResponder>(
        service: TockService, source: ServicePlan.ListenerSource, workers: Int, transmitTimestamps: Bool = false, hardwareClocks: HardwareClocks? = nil,
        makeResponder: (DatagramSocket) -> R
    ) throws(ListenerError) {
        switch source {
        case .address(let address):
            try self.init(service: service, address: address, workers: workers, transmitTimestamps: transmitTimestamps, hardwareClocks: hardwareClocks, makeResponder: makeResponder)
        case .inherited(let socket):
            try self.init(service: service, inherited: socket, workers: workers, transmitTimestamps: transmitTimestamps, hardwareClocks: hardwareClocks, makeResponder: makeResponder)
        }
    }
}

extension StreamTimeListener {
    /// A listener on an address it binds, or on a socket systemd passed.
    convenience init(source: ServicePlan.ListenerSource, serves: StreamTimeProtocol, policy: PolicyCell, limits: ConnectionTable.Limits) throws(ListenerError) {
        switch source {
        case .address(let address):
            try self.init(address: address, serves: serves, policy: policy, limits: limits)
        case .inherited(let socket):
            self.init(inherited: socket, serves: serves, policy: policy, limits: limits)
        }
    }
}
