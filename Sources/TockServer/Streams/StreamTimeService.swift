import Atomics
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TockProtocol
import TockSockets

/// Daytime or Time over TCP (RFC 867 and RFC 868): on each connection, the core's
/// `TextTimeServer.handle` decides, the reply is written and the connection closed. Input is
/// read and discarded.
///
/// Every connection is bounded by the connection timeout (`ConnectionGuard`, ahead of this
/// handler): a client that never reads its reply or never closes is disconnected then, and
/// because NIO serves all connections on non-blocking event loops, one slow or idle client
/// never delays another.
final class StreamTimeHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let core: TextTimeServer
    let clock: ClockStateCell
    let counters: StreamCounters
    /// The access list and rate limit when this connection was accepted (read once per
    /// connection, so a reload applies to the next one).
    let policy: ServicePolicy
    let limiter: ClientLimiter?
    /// The listener's open connections, and this one's place there.
    let table: ConnectionTable
    let id: UInt64

    init(core: TextTimeServer, clock: ClockStateCell, counters: StreamCounters, policy: ServicePolicy, limiter: ClientLimiter?, table: ConnectionTable, id: UInt64) {
        self.core = core
        self.clock = clock
        self.counters = counters
        self.policy = policy
        self.limiter = limiter
        self.table = table
        self.id = id
    }

    /// The peer as the core sees it, or nil for a peer that is not IPv4 or IPv6.
    static func client(_ remote: NIOCore.SocketAddress?) -> ClientAddress? {
        var storage = sockaddr_storage()
        switch remote {
        case .v4(let a)?:
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a.address, as: sockaddr_in.self) }
        case .v6(let a)?:
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a.address, as: sockaddr_in6.self) }
        default:
            return nil
        }
        return withUnsafePointer(to: &storage) { ClientAddress($0) }
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        // The reply is written at once: nothing of this connection is to be waited for.
        table.advance(id, to: .answering)
        guard let client = Self.client(channel.remoteAddress) else {
            counters.count(.denied)
            context.close(promise: nil)
            return
        }
        let now = SystemClock.now()
        let admission = ClientAdmission(policy: policy, table: limiter, monotonicNanoseconds: SystemClock.monotonicNanoseconds())
        var random = SystemRandomNumberGenerator()
        let zone = core.needsLocalZone ? LocalZone.lookup(at: now) : .utc
        var buffer = context.channel.allocator.buffer(capacity: TextTimeServer.maximumReplyLength)
        var action = TextTimeServer.Action.ignore(.unsynchronized)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: TextTimeServer.maximumReplyLength) { raw in
            action = core.handle(from: client, transport: .stream, now: now, localZone: zone, clock: clock.state, admission: admission, random: random.next(), reply: raw)
            if case .respond(let length) = action { return length }
            return 0
        }
        guard case .respond = action else {
            if case .ignore(let reason) = action { counters.count(reason) }
            context.close(promise: nil)
            return
        }
        counters.replied.wrappingIncrement(ordering: .relaxed)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // RFC 867/868: whatever the client sends is ignored.
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Counters of a TCP listener.
package final class StreamCounters: Sendable {
    package let connections = ManagedAtomic<UInt64>(0)
    package let replied = ManagedAtomic<UInt64>(0)
    /// Connections closed without a reply, by reason.
    private let drops: [ManagedAtomic<UInt64>] = DropReason.allCases.map { _ in ManagedAtomic(0) }
    /// Connections open now.
    package let active = ManagedAtomic<Int>(0)
    /// Connections closed to admit a newcomer, by the cap that was reached
    /// (`ConnectionTable.Pressure`).
    private let evictions: [ManagedAtomic<UInt64>] = DropReason.allCases.map { _ in ManagedAtomic(0) }

    /// Counts a connection closed to admit another.
    package func evict(_ reason: DropReason) {
        evictions[reason.rawValue].wrappingIncrement(ordering: .relaxed)
    }

    /// Connections closed to admit another, because of `reason`.
    package func evictions(_ reason: DropReason) -> UInt64 {
        evictions[reason.rawValue].load(ordering: .relaxed)
    }

    /// Counts a connection closed unanswered.
    package func count(_ reason: DropReason) {
        drops[reason.rawValue].wrappingIncrement(ordering: .relaxed)
    }

    /// Connections closed unanswered for `reason`.
    package func drops(_ reason: DropReason) -> UInt64 {
        drops[reason.rawValue].load(ordering: .relaxed)
    }
}

/// What a TCP listener serves on each connection it accepts.
enum StreamTimeProtocol: Sendable {
    /// Daytime or Time (RFC 867, RFC 868): the reply on connect, input ignored.
    case text(TextTimeServer)
    /// Roughtime (RFC 10049): one framed request, one signed reply.
    case roughtime(RoughtimeKeyCell)

    /// The service, whose counters and policy the listener uses.
    var service: TockService {
        switch self {
        case .text(let core): core.service
        case .roughtime: .roughtime
        }
    }
}

/// A TCP listener for Daytime, Time or Roughtime on a NIO event loop group: binds (or adopts
/// systemd's socket), accepts, and gives each connection the service's handler, its counters,
/// the connection cap and the connection timeout.
final class StreamTimeListener: Sendable {
    /// Whether NIO owns the socket (and closes it); if not, deinit does.
    private let handedOver = ManagedAtomic(false)

    deinit {
        if !handedOver.load(ordering: .relaxed) { close(fd) }
    }

    let address: SocketEndpoint
    let fd: Int32
    /// What each connection is served.
    let serves: StreamTimeProtocol
    /// The service, for statistics and addresses.
    var service: TockService { serves.service }
    let counters = StreamCounters()
    let policy: PolicyCell
    /// The open connections and their caps.
    let table: ConnectionTable

    /// The inherited descriptor, when systemd bound the socket (socket activation).
    let inheritedFD: Int32?
    /// Roughtime's per-event-loop responders, once started.
    private let roughtimeResponders = NIOLockedValueBox<RoughtimeStreamResponders?>(nil)
    /// How many event loops have made a Roughtime responder: at most one each, however many
    /// connections they served.
    var roughtimeResponderCount: Int { roughtimeResponders.withLockedValue { $0?.count ?? 0 } }

    init(address requested: SocketEndpoint, serves: StreamTimeProtocol, policy: PolicyCell, limits: ConnectionTable.Limits) throws(ListenerError) {
        self.policy = policy
        self.table = ConnectionTable(limits: limits, counters: counters)
        let fd = try ListenerSocket.tcp(requested)
        if serves.service == .roughtime { ListenerSocket.deferAccept(fd, seconds: 2) }
        self.fd = fd
        self.address = (try? Sockets.localAddress(fd)) ?? requested
        self.serves = serves
        self.inheritedFD = nil
    }

    /// Serves a TCP socket systemd bound (and usually already listens on); NIO makes it
    /// non-blocking and listens with its own backlog. Owns `socket.fd` from here on.
    init(inherited socket: InheritedSocket, serves: StreamTimeProtocol, policy: PolicyCell, limits: ConnectionTable.Limits) {
        self.policy = policy
        self.table = ConnectionTable(limits: limits, counters: counters)
        if serves.service == .roughtime { ListenerSocket.deferAccept(socket.fd, seconds: 2) }
        self.fd = socket.fd
        self.address = socket.address
        self.serves = serves
        self.inheritedFD = socket.fd
    }

    /// Starts accepting on `group`; the returned channel closes the listener.
    ///
    /// Each accepted connection takes a place in the listener's `ConnectionTable` (closing
    /// the least advanced connection of its address, or of the listener, when a cap is
    /// reached) before any handler exists for it; `ConnectionGuard` then bounds its life by
    /// `connectionTimeout`, and a Roughtime connection's first byte by 2 s (or the timeout).
    func start(group: EventLoopGroup, clock: ClockStateCell, connectionTimeout: TimeAmount) async throws -> Channel {
        let serves = self.serves
        let counters = self.counters
        let cell = self.policy
        let table = self.table
        // One Roughtime responder per event loop, shared by that loop's connections.
        let roughtime: RoughtimeStreamResponders? = if case .roughtime(let keys) = serves {
            RoughtimeStreamResponders(keys: keys, clock: clock, policy: cell)
        } else {
            nil
        }
        roughtimeResponders.withLockedValue { $0 = roughtime }
        let firstByte = min(Self.firstByteLimit, connectionTimeout)
        handedOver.store(true, ordering: .relaxed)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: ListenerSocket.streamBacklog)
            .serverChannelOption(.maxMessagesPerRead, value: 64)
            // Roughtime: a client that sends its request and shuts down its side still gets
            // the reply; the handler closes once it is written.
            .childChannelOption(.allowRemoteHalfClosure, value: serves.service == .roughtime)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    counters.connections.wrappingIncrement(ordering: .relaxed)
                    guard let client = StreamTimeHandler.client(channel.remoteAddress) else {
                        counters.count(.denied)
                        channel.close(promise: nil)
                        return
                    }
                    guard case .admitted(let id) = table.admit(channel, client: client) else {
                        channel.close(promise: nil)
                        return
                    }
                    let sync = channel.pipeline.syncOperations
                    switch serves {
                    case .text(let core):
                        let live = cell.live
                        try sync.addHandler(ConnectionGuard(table: table, id: id, firstByte: nil, lifetime: connectionTimeout))
                        try sync.addHandler(StreamTimeHandler(core: core, clock: clock, counters: counters, policy: live.policy, limiter: live.limiter, table: table, id: id))
                    case .roughtime:
                        try sync.addHandler(ConnectionGuard(table: table, id: id, firstByte: firstByte, lifetime: nil))
                        try sync.addHandler(RoughtimeStreamHandler(responders: roughtime!, policy: cell, counters: counters, timeout: connectionTimeout, table: table, id: id))
                    }
                }
            }
            .withBoundSocket(fd)
            .get()
    }

    /// How long a Roughtime connection may send nothing (a real client sends its request at
    /// once), or the connection timeout if shorter.
    static let firstByteLimit = TimeAmount.seconds(2)
}
