import Atomics
import Foundation
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import TockProtocol
import TockSockets

/// The HTTP endpoint for operators: `/metrics` (Prometheus text format) and `/status` (the
/// `ServerStatus` JSON that `tock status` shows). Off unless configured; it serves figures
/// only, accepts GET and HEAD, and reads no request body.
///
/// The socket is bound when this is created, so a bad address fails start-up like any other
/// listener.
///
/// Bounded like the Daytime/Time TCP services, so that idle or dribbling connections cannot
/// exhaust tockd's file descriptors (and with them its TCP services): at most
/// `connectionLimit` open at once (more are closed at once), a connection that sends nothing
/// for `idleTimeout` is closed, and none stays open longer than `connectionLifetime`, however
/// slowly it sends.
package final class StatusEndpoint: Service, Sendable {
    /// The address actually bound.
    package let address: SocketEndpoint
    private let fd: Int32
    private let server: TockServer
    private let exporter: MetricsExporter
    private let logger: Logger
    /// Where the endpoint is in its life: `bound` (this object owns the socket and deinit
    /// closes it), `running` (NIO owns it), `stopped`. It runs once.
    private let state = NIOLockedValueBox(State.bound)

    /// The endpoint's life.
    package enum State: Sendable, Hashable {
        /// Socket bound, not serving.
        case bound
        /// Serving.
        case running
        /// Closed.
        case stopped
    }

    /// The current state.
    package var currentState: State { state.withLockedValue { $0 } }
    /// Most connections open at once; more are closed at once.
    package let connectionLimit: Int
    /// How long a connection may send nothing before it is closed.
    package let idleTimeout: TimeAmount
    /// How long any connection may stay open.
    package let connectionLifetime: TimeAmount
    /// Connections open now, and those closed at once for being over the cap.
    package let counters = StreamCounters()

    package init(
        address requested: SocketEndpoint, server: TockServer, logger: Logger,
        connectionLimit: Int = 64, idleTimeout: TimeAmount = .seconds(10), connectionLifetime: TimeAmount = .seconds(60)
    ) throws(ListenerError) {
        let fd = try ListenerSocket.tcp(requested, backlog: 64)
        self.fd = fd
        self.address = (try? Sockets.localAddress(fd)) ?? requested
        self.server = server
        self.exporter = MetricsExporter(server: server)
        self.logger = logger
        self.connectionLimit = connectionLimit
        self.idleTimeout = idleTimeout
        self.connectionLifetime = connectionLifetime
    }

    deinit {
        if state.withLockedValue({ $0 }) == .bound { close(fd) }
    }

    package func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let exporter = self.exporter
        let server = self.server
        let counters = self.counters
        let (connectionLimit, idleTimeout, lifetime) = (self.connectionLimit, self.idleTimeout, self.connectionLifetime)
        let starting = state.withLockedValue { state -> Bool in
            guard state == .bound else { return false }
            state = .running
            return true
        }
        guard starting else { return }
        defer { state.withLockedValue { $0 = .stopped } }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // The idle handler first: its event travels towards the tail, through the limit.
                    try sync.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try sync.addHandler(ConnectionLimitHandler(counters: counters, connectionLimit: connectionLimit, lifetime: lifetime))
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(StatusHTTPHandler(exporter: exporter, server: server))
                }
            }
            .withBoundSocket(fd)
            .get()
        logger.info("listening", metadata: ["service": "metrics", "transport": "tcp", "address": "\(address)", "paths": "/metrics /status"])
        try? await gracefulShutdown()
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

/// Holds a connection to the endpoint's limits: closes it at once past the connection cap, when
/// it has been idle for the read timeout (`IdleStateHandler` fires the event), and when its
/// lifetime is up.
final class ConnectionLimitHandler: ChannelDuplexHandler, Sendable {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    let counters: StreamCounters
    let connectionLimit: Int
    let lifetime: TimeAmount?
    /// Whether this connection holds one of the `connectionLimit` places.
    let holdsPlace = ManagedAtomic(false)

    /// Whether the idle event closes the connection here (else a later handler acts on it).
    let closesIdle: Bool

    init(counters: StreamCounters, connectionLimit: Int, lifetime: TimeAmount?, closesIdle: Bool = true) {
        self.closesIdle = closesIdle
        self.counters = counters
        self.connectionLimit = connectionLimit
        self.lifetime = lifetime
    }

    func channelActive(context: ChannelHandlerContext) {
        counters.connections.wrappingIncrement(ordering: .relaxed)
        if counters.active.loadThenWrappingIncrement(ordering: .relaxed) >= connectionLimit {
            counters.active.wrappingDecrement(ordering: .relaxed)
            counters.count(.connectionLimit)
            context.close(promise: nil)
            return
        }
        holdsPlace.store(true, ordering: .relaxed)
        let channel = context.channel
        if let lifetime { context.eventLoop.scheduleTask(in: lifetime) { channel.close(promise: nil) } }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if holdsPlace.exchange(false, ordering: .relaxed) {
            counters.active.wrappingDecrement(ordering: .relaxed)
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if closesIdle, event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Answers one HTTP request per head: `/metrics`, `/status[?clients=N]`, or 404.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class StatusHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let exporter: MetricsExporter
    let server: TockServer
    private var head: HTTPRequestHead?

    init(exporter: MetricsExporter, server: TockServer) {
        self.exporter = exporter
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            respond(context: context, to: head)
        }
    }

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let (status, contentType, body) = route(head)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Cache-Control", value: "no-store")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }

    private func route(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, [UInt8]) {
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, "text/plain", Array("GET or HEAD only\n".utf8))
        }
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? "/"
        switch path {
        case "/metrics":
            return (.ok, "text/plain; version=0.0.4; charset=utf-8", exporter.scrape())
        case "/status":
            var clients = 10
            if parts.count == 2 {
                for item in parts[1].split(separator: "&") where item.hasPrefix("clients=") {
                    clients = min(1000, max(0, Int(item.dropFirst("clients=".count)) ?? 10))
                }
            }
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.sortedKeys]
            let body = (try? encoder.encode(server.status(busiestClients: clients))).map(Array.init) ?? []
            return (.ok, "application/json", body + [0x0A])
        default:
            return (.notFound, "text/plain", Array("not found; try /metrics or /status\n".utf8))
        }
    }
}
