import Atomics
import Glibc
import NIOCore
import NIOPosix
import TockProtocol
import TockSockets

/// Daytime or Time over TCP (RFC 867 and RFC 868): on each connection, write the time and
/// close. Input is read and discarded.
///
/// Every connection is bounded by `connectionTimeout`: a client that never reads its reply or
/// never closes is disconnected then, and because NIO serves all connections on non-blocking
/// event loops, one slow or idle client never delays another.
final class StreamTimeHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let writer: TextTimeReplyWriter
    let clock: ClockStateCell
    let connectionTimeout: TimeAmount
    let counters: StreamCounters
    /// The access list and rate limit when this connection was accepted (read once per
    /// connection, so a reload applies to the next one).
    let policy: ServicePolicy
    let limiter: ClientLimiter?
    let maxConnections: Int
    /// Whether this connection holds one of the `maxConnections` places.
    let holdsPlace = ManagedAtomic(false)

    init(writer: TextTimeReplyWriter, clock: ClockStateCell, connectionTimeout: TimeAmount, counters: StreamCounters, policy: ServicePolicy, limiter: ClientLimiter?, maxConnections: Int) {
        self.writer = writer
        self.clock = clock
        self.connectionTimeout = connectionTimeout
        self.counters = counters
        self.policy = policy
        self.limiter = limiter
        self.maxConnections = maxConnections
    }

    /// Whether the peer passes the access list and its rate limit.
    func admits(_ remote: NIOCore.SocketAddress?) -> Bool {
        guard !policy.access.isOpen || limiter != nil else { return true }
        var storage = sockaddr_storage()
        switch remote {
        case .v4(let a)?:
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a.address, as: sockaddr_in.self) }
        case .v6(let a)?:
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: a.address, as: sockaddr_in6.self) }
        default:
            return false
        }
        return withUnsafePointer(to: &storage) { pointer in
            let source = DatagramSource(address: pointer)
            guard policy.permits(source) else { return false }
            guard let limiter else { return true }
            var random = SystemRandomNumberGenerator()
            return limiter.decide(source, nowNanoseconds: SystemClock.monotonicNanoseconds(), random: random.next()) == .allow
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        counters.connections.wrappingIncrement(ordering: .relaxed)
        let channel = context.channel
        // Past the cap, close at once: the kernel's backlog and NIO's accept loop stay free.
        if counters.active.loadThenWrappingIncrement(ordering: .relaxed) >= maxConnections {
            counters.active.wrappingDecrement(ordering: .relaxed)
            counters.refused.wrappingIncrement(ordering: .relaxed)
            context.close(promise: nil)
            return
        }
        holdsPlace.store(true, ordering: .relaxed)
        guard admits(channel.remoteAddress) else {
            counters.refused.wrappingIncrement(ordering: .relaxed)
            context.close(promise: nil)
            return
        }
        context.eventLoop.scheduleTask(in: connectionTimeout) {
            channel.close(promise: nil)
        }
        let now = SystemClock.now()
        var buffer = context.channel.allocator.buffer(capacity: TextTimeReplyWriter.capacity)
        let written = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: TextTimeReplyWriter.capacity) { raw in
            writer.write(now: now, zone: writer.zoneInfo(at: now), clock: clock.read().state, into: raw)
        }
        guard written > 0 else {
            counters.silent.wrappingIncrement(ordering: .relaxed)
            context.close(promise: nil)
            return
        }
        counters.replied.wrappingIncrement(ordering: .relaxed)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if holdsPlace.exchange(false, ordering: .relaxed) {
            counters.active.wrappingDecrement(ordering: .relaxed)
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // RFC 867/868: whatever the client sends is ignored.
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Counters of a TCP listener.
final class StreamCounters: Sendable {
    let connections = ManagedAtomic<UInt64>(0)
    let replied = ManagedAtomic<UInt64>(0)
    /// Connections closed without a reply because the clock was unsynchronised.
    let silent = ManagedAtomic<UInt64>(0)
    /// Connections closed at once: over the cap, denied, or rate-limited.
    let refused = ManagedAtomic<UInt64>(0)
    /// Connections open now.
    let active = ManagedAtomic<Int>(0)
}


/// A TCP listener for Daytime or Time on a NIO event loop group.
final class StreamTimeListener: Sendable {
    /// Whether NIO owns the socket (and closes it); if not, deinit does.
    private let handedOver = ManagedAtomic(false)

    deinit {
        if !handedOver.load(ordering: .relaxed) { close(fd) }
    }

    let address: SocketEndpoint
    let fd: Int32
    let writer: TextTimeReplyWriter
    let counters = StreamCounters()
    let policy: PolicyCell
    let maxConnections: Int

    /// The inherited descriptor, when systemd bound the socket (socket activation).
    let inheritedFD: Int32?

    init(address requested: SocketEndpoint, writer: TextTimeReplyWriter, policy: PolicyCell, maxConnections: Int) throws(ListenerError) {
        self.policy = policy
        self.maxConnections = maxConnections
        let fd = try ListenerSocket.tcp(requested)
        self.fd = fd
        self.address = (try? Sockets.localAddress(fd)) ?? requested
        self.writer = writer
        self.inheritedFD = nil
    }

    /// Serves a TCP socket systemd bound (and usually already listens on); NIO makes it
    /// non-blocking and listens with its own backlog. Owns `socket.fd` from here on.
    init(inherited socket: InheritedSocket, writer: TextTimeReplyWriter, policy: PolicyCell, maxConnections: Int) {
        self.policy = policy
        self.maxConnections = maxConnections
        self.fd = socket.fd
        self.address = socket.address
        self.writer = writer
        self.inheritedFD = socket.fd
    }

    /// Starts accepting on `group`; the returned channel closes the listener.
    func start(group: EventLoopGroup, clock: ClockStateCell, connectionTimeout: TimeAmount) async throws -> Channel {
        let writer = self.writer
        let counters = self.counters
        let cell = self.policy
        let maxConnections = self.maxConnections
        handedOver.store(true, ordering: .relaxed)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.so_linger), value: 0)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let (policy, limiter, _) = cell.read()
                    try channel.pipeline.syncOperations.addHandler(
                        StreamTimeHandler(writer: writer, clock: clock, connectionTimeout: connectionTimeout, counters: counters, policy: policy, limiter: limiter, maxConnections: maxConnections)
                    )
                }
            }
            .withBoundSocket(fd)
            .get()
    }
}
