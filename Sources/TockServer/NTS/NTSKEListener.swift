import Atomics
import Glibc
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import TockCrypto
import TockProtocol
import TockSockets

/// The TLS certificate chain and private key NTS-KE serves, replaceable while it runs: an ACME
/// client renews certificates every few weeks, and a reload (SIGHUP) reads the files again
/// without closing a socket. Each new connection takes the pair current when it is accepted.
package final class NTSCredentials: Sendable {
    /// Where the chain and key come from.
    package let certificatePath: String
    /// The private key's file.
    package let privateKeyPath: String
    private let loaded: NIOLockedValueBox<(generation: UInt64, pair: (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey))>

    /// Why credentials cannot be loaded: which file is at fault (`code`, what callers compare
    /// on) and what is wrong with it.
    package struct LoadError: Error, Sendable, CustomStringConvertible {
        /// Which of the two files cannot be used.
        package struct Code: Hashable, Sendable, CustomStringConvertible {
            private enum Backing: String { case certificate, privateKey }
            private let backing: Backing

            /// The certificate chain cannot be read, or holds no certificate.
            package static let certificate = Code(backing: .certificate)
            /// The private key cannot be read, is readable by others, or is not a PEM key.
            package static let privateKey = Code(backing: .privateKey)

            /// The code's name, for logs.
            package var description: String { backing.rawValue }
        }

        /// Which file is at fault.
        package var code: Code
        /// What is wrong and what to do.
        package var description: String
    }

    /// Loads both files; fails with a message naming the file and the fix.
    package init(certificatePath: String, privateKeyPath: String) throws(LoadError) {
        self.certificatePath = certificatePath
        self.privateKeyPath = privateKeyPath
        loaded = NIOLockedValueBox((1, try Self.load(certificatePath: certificatePath, privateKeyPath: privateKeyPath)))
    }

    /// Reads the files again; on failure the running pair stays.
    package func reload() throws(LoadError) {
        let fresh = try Self.load(certificatePath: certificatePath, privateKeyPath: privateKeyPath)
        loaded.withLockedValue { $0 = ($0.generation &+ 1, fresh) }
    }

    /// The current pair, and how many loads it took to get it (a TLS context made for one
    /// generation serves until the next).
    var current: (generation: UInt64, pair: (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey)) { loaded.withLockedValue { $0 } }

    /// The current pair.
    var pair: (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) { current.pair }

    static func load(certificatePath: String, privateKeyPath: String) throws(LoadError) -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey) {
        // A private key others can read is no secret: refuse it, as roughtimed does.
        let keyBytes: [UInt8]
        do { keyBytes = try SecretFile.read(privateKeyPath, name: "NTS private key", limit: 1 << 20) } catch { throw LoadError(code: .privateKey, description: error.description) }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw LoadError(code: .certificate, description: "NTS certificate \(certificatePath): not a readable PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw LoadError(code: .certificate, description: "NTS certificate \(certificatePath): no certificate in the file") }
        do {
            return (chain, try NIOSSLPrivateKey(bytes: keyBytes, format: .pem))
        } catch {
            throw LoadError(code: .privateKey, description: "NTS private key \(privateKeyPath): not a readable PEM private key (\(error))")
        }
    }
}

/// Makes the NTS-KE cookies (off the packet path): one `NTSPacketCrypto` shared by every
/// connection under a lock, re-keyed when a period begins.
package final class NTSCookieMaker: Sendable {
    private let crypto: NIOLockedValueBox<NTSPacketCrypto>

    /// A maker for `keys`.
    package init(keys: NTSCookieKeys) {
        crypto = NIOLockedValueBox(NTSPacketCrypto(keys: keys, now: SystemClock.now().secondsSinceUnixEpoch))
    }

    /// `count` new cookies holding `c2s` and `s2c`.
    package func cookies(_ count: Int, algorithm: NTSAEADAlgorithm, c2s: [UInt8], s2c: [UInt8]) -> [[UInt8]] {
        crypto.withLockedValue { crypto in
            crypto.refresh(unixSeconds: SystemClock.now().secondsSinceUnixEpoch)
            return (0..<count).map { _ in crypto.makeCookie(algorithm: algorithm, c2s: c2s, s2c: s2c) }
        }
    }
}

/// One NTS-KE connection: waits for TLS to finish with ALPN `ntske/1`, reads the request
/// (which may arrive a byte at a time), has the core decide, derives the keys from the TLS
/// exporter (RFC 8915 §5.1), writes the response and closes (RFC 8915 §4: one request per
/// connection). Everything else ends the connection and is counted by reason, once.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class NTSKEHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let server: NTSKEServer
    let cookies: NTSCookieMaker
    let counters: StreamCounters
    let logger: Logger
    let tls: NTSKETLS
    let table: ConnectionTable
    let id: UInt64
    /// How long the TLS handshake may take from the connection's start: a real client's takes
    /// a round trip or two, and a slot held by one that never finishes costs its holder as
    /// much as it costs the server.
    let handshakeDeadline: TimeAmount
    /// The connection's ClientHello random (`ClientHelloReader`): the key of its exporter secret.
    var clientRandom: NTSKETLS.ClientRandom?
    private var reader = NTSKEMessageReader()
    private var negotiated = false
    private var finished = false
    private var deadline: Scheduled<Void>?

    init(server: NTSKEServer, cookies: NTSCookieMaker, counters: StreamCounters, tls: NTSKETLS, table: ConnectionTable, id: UInt64, handshakeDeadline: TimeAmount, logger: Logger) {
        self.server = server
        self.cookies = cookies
        self.counters = counters
        self.tls = tls
        self.table = table
        self.id = id
        self.handshakeDeadline = handshakeDeadline
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: handshakeDeadline) {
            let (handler, context) = loopBound.value
            if !handler.negotiated { handler.fail(context, .handshakeTimeout) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        if let clientRandom { tls.forget(clientRandom) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The peer went away before a whole request: counted, as a broken request.
        if !finished {
            finished = true
            counters.count(negotiated ? .ntsKEBadRequest : .ntsKEHandshake)
        }
        context.fireChannelInactive()
    }

    /// What came first was not a TLS ClientHello (or repeated another connection's random).
    func handshakeFailed(_ context: ChannelHandlerContext) {
        fail(context, .ntsKEHandshake)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            // swift-nio-ssl completes a handshake without ALPN when the client offers none;
            // RFC 8915 §4 requires `ntske/1`.
            guard alpn == NTSKEServer.alpn else {
                fail(context, .ntsKEALPN)
                return
            }
            negotiated = true
            deadline?.cancel()
            table.advance(id, to: .handshaken)
        } else if let expired = event as? ConnectionExpired {
            if let reason = expired.reason { fail(context, reason) } else { finished = true }
            return
        } else if event is IdleStateHandler.IdleStateEvent {
            fail(context, .streamTimeout)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard negotiated, !finished else { return }
        let buffer = unwrapInboundIn(data)
        switch reader.append(buffer.readableBytesView) {
        case .incomplete:
            return
        case .invalid(let why):
            respond(context, server.response(for: .error(.badRequest, reason: why), cookies: []), failure: .ntsKEBadRequest)
        case .complete(let records):
            let decision = server.decide(records)
            switch decision {
            case .negotiated(let algorithm):
                guard let random = clientRandom, let exporter = tls.exporter(random) else {
                    respond(context, server.response(for: .error(.internalServerError, reason: "no TLS exporter secret"), cookies: []), failure: .ntsKEInternal)
                    return
                }
                let keys = exporter.ntsKeys(aead: algorithm.rawValue)
                let made = cookies.cookies(NTSKEServer.cookiesPerResponse, algorithm: algorithm, c2s: keys.c2s, s2c: keys.s2c)
                respond(context, server.response(for: decision, cookies: made), failure: nil)
            case .error:
                respond(context, server.response(for: decision, cookies: []), failure: .ntsKEBadRequest)
            case .noCommonProtocol, .noCommonAlgorithm:
                respond(context, server.response(for: decision, cookies: []), failure: nil)
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ records: [NTSKERecord], failure: DropReason?) {
        finished = true
        table.advance(id, to: .answering)
        if let failure { counters.count(failure) } else { counters.replied.wrappingIncrement(ordering: .relaxed) }
        let bytes = NTSKERecord.encode(records)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: DropReason) {
        guard !finished else { return }
        finished = true
        counters.count(reason)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // TLS errors (garbage, TLS 1.2, a bad record) end here.
        if !finished {
            finished = true
            counters.count(negotiated ? .ntsKEBadRequest : .ntsKEHandshake)
            logger.debug("NTS-KE connection failed", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }
}

/// The NTS-KE listener (RFC 8915 §4): TLS 1.3 only, ALPN `ntske/1`, a connection cap, an
/// idle timeout and a lifetime (so a client that dribbles bytes cannot hold a connection),
/// and the service's access list and per-address rate limit on every connection.
package final class NTSKEListener: Sendable {
    /// The address served.
    package let address: SocketEndpoint
    let fd: Int32
    /// Whether NIO owns the socket (and closes it); if not, deinit does.
    private let handedOver = ManagedAtomic(false)
    /// Connections, responses and failures by reason.
    package let counters = StreamCounters()
    let credentials: NTSCredentials
    let cookies: NTSCookieMaker
    let server: NTSKEServer
    let policy: PolicyCell
    let connectionLimit: Int
    let idleTimeout: TimeAmount
    let lifetime: TimeAmount
    /// How long a connection may take to send its ClientHello, and to complete its handshake:
    /// 2 s, as chronyd gives a whole NTS-KE session, or the configured timeout if shorter.
    let handshakeDeadline: TimeAmount
    /// The open connections and their caps.
    let table: ConnectionTable
    /// The TLS context and the connections' exporter secrets.
    let tls: NTSKETLS

    /// How long a handshake may take at most (`handshakeDeadline`).
    static let handshakeLimit = TimeAmount.seconds(2)

    /// Binds `address` now, so a bind failure is reported at start.
    package init(address requested: SocketEndpoint, credentials: NTSCredentials, cookies: NTSCookieMaker, server: NTSKEServer, policy: PolicyCell, connectionLimit: Int, perAddress: Int, timeout: TimeAmount) throws(ListenerError) {
        let fd = try ListenerSocket.tcp(requested)
        ListenerSocket.deferAccept(fd, seconds: 2)
        self.fd = fd
        self.address = (try? Sockets.localAddress(fd)) ?? requested
        self.credentials = credentials
        self.cookies = cookies
        self.server = server
        self.policy = policy
        self.connectionLimit = connectionLimit
        self.idleTimeout = timeout
        self.lifetime = timeout * 2
        self.handshakeDeadline = min(Self.handshakeLimit, timeout)
        self.table = ConnectionTable(limits: .init(total: connectionLimit, perAddress: perAddress), counters: counters)
        self.tls = NTSKETLS(credentials: credentials)
    }

    /// Serves a TCP socket systemd bound; owns `socket.fd` from here on.
    package init(inherited socket: InheritedSocket, credentials: NTSCredentials, cookies: NTSCookieMaker, server: NTSKEServer, policy: PolicyCell, connectionLimit: Int, perAddress: Int, timeout: TimeAmount) {
        ListenerSocket.deferAccept(socket.fd, seconds: 2)
        self.fd = socket.fd
        self.address = socket.address
        self.credentials = credentials
        self.cookies = cookies
        self.server = server
        self.policy = policy
        self.connectionLimit = connectionLimit
        self.idleTimeout = timeout
        self.lifetime = timeout * 2
        self.handshakeDeadline = min(Self.handshakeLimit, timeout)
        self.table = ConnectionTable(limits: .init(total: connectionLimit, perAddress: perAddress), counters: counters)
        self.tls = NTSKETLS(credentials: credentials)
    }

    deinit {
        if !handedOver.load(ordering: .relaxed) { close(fd) }
    }

    /// Starts accepting on `group`; the returned channel closes the listener.
    ///
    /// Each accepted connection passes the access list and rate limit, then takes a place in
    /// the listener's `ConnectionTable` (closing the least advanced connection of its address,
    /// or of the listener, when a cap is reached), all before any TLS state exists for it. Its
    /// pipeline: `ConnectionGuard` (first-byte and lifetime deadlines), `IdleStateHandler`,
    /// `ClientHelloReader` (which puts the TLS handler, on the listener's one context, in its
    /// place), `NTSKEHandler`.
    package func start(group: EventLoopGroup, logger: Logger) async throws -> Channel {
        let (cookies, server, cell, counters, table, tls) = (self.cookies, self.server, self.policy, self.counters, self.table, self.tls)
        let (idle, lifetime, handshake) = (idleTimeout, self.lifetime, self.handshakeDeadline)
        // Made now, so a certificate the context cannot take fails the start, not a client.
        _ = try tls.currentContext()
        handedOver.store(true, ordering: .relaxed)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: Int32(clamping: ListenerSocket.streamBacklog))
            .serverChannelOption(.maxMessagesPerRead, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    counters.connections.wrappingIncrement(ordering: .relaxed)
                    // Admission first: a denied or rate-limited address gets no TLS at all.
                    guard let client = StreamTimeHandler.client(channel.remoteAddress) else {
                        counters.count(.denied)
                        channel.close(promise: nil)
                        return
                    }
                    let live = cell.live
                    var random = SystemRandomNumberGenerator()
                    let admission = ClientAdmission(policy: live.policy, table: live.limiter, monotonicNanoseconds: SystemClock.monotonicNanoseconds())
                    switch admission.admit(client, random: random.next()) {
                    case .serve: break
                    case .drop(let reason), .kiss(_, let reason):
                        counters.count(reason)
                        channel.close(promise: nil)
                        return
                    }
                    guard case .admitted(let id) = table.admit(channel, client: client) else {
                        channel.close(promise: nil)
                        return
                    }
                    let exchange = NTSKEHandler(server: server, cookies: cookies, counters: counters, tls: tls, table: table, id: id, handshakeDeadline: handshake, logger: logger)
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ConnectionGuard(table: table, id: id, firstByte: handshake, lifetime: lifetime))
                    try sync.addHandler(IdleStateHandler(readTimeout: idle))
                    try sync.addHandler(ClientHelloReader(tls: tls, exchange: exchange))
                    try sync.addHandler(exchange)
                }
            }
            .withBoundSocket(fd)
            .get()
    }
}
