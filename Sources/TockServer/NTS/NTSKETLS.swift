import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import TockCrypto
import TockProtocol

/// The TLS side of an NTS-KE listener: one TLS context per certificate (made again only when a
/// reload replaced the certificate), and the exporter secret of each connection.
///
/// swift-nio-ssl has no public TLS exporter (RFC 5705, RFC 8446 §7.5) and its key-log callback
/// names no connection; the key-log line does carry the connection's ClientHello random
/// (`EXPORTER_SECRET <client random> <secret>`). So each connection reads its own random from
/// its ClientHello (`ClientHelloReader`, before TLS sees a byte), registers it here, and takes
/// the secret the context's callback filed under it. A random already held by an open
/// connection is refused: the random crosses the wire in clear, and a copy must not make two
/// connections share a secret. The table holds entries for open connections only.
final class NTSKETLS: Sendable {
    let credentials: NTSCredentials
    private let secrets = NIOLockedValueBox<[ClientRandom: TLSExporter?]>([:])
    private let context = NIOLockedValueBox<(generation: UInt64, context: NIOSSLContext)?>(nil)

    /// A ClientHello random, the key of a connection's secret.
    struct ClientRandom: Hashable, Sendable {
        let bytes: [UInt8]

        /// Its lowercase hexadecimal form, as key-log lines write it.
        var hex: String { RoughtimeKeyText.hex(bytes) }
    }

    init(credentials: NTSCredentials) {
        self.credentials = credentials
    }

    /// The context for the current certificate: made once, and again after a reload.
    func currentContext() throws -> NIOSSLContext {
        let (generation, pair) = credentials.current
        if let cached = context.withLockedValue({ $0 }), cached.generation == generation { return cached.context }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: pair.chain.map { .certificate($0) }, privateKey: .privateKey(pair.key))
        tls.minimumTLSVersion = .tlsv13
        tls.applicationProtocols = [NTSKEServer.alpn]
        // A peer that never sends close_notify holds its connection no longer than this.
        tls.shutdownTimeout = .seconds(1)
        tls.keyLogCallback = { [secrets] line in
            // "EXPORTER_SECRET <client random> <secret>": filed under its random, if a
            // connection registered it (`TLSExporter` parses the line and keeps the random).
            guard let exporter = TLSExporter(keyLogLine: String(buffer: line)) else { return }
            secrets.withLockedValue { table in
                let key = ClientRandom(bytes: exporter.clientRandom)
                if table[key] != nil { table[key] = .some(exporter) }
            }
        }
        let made = try NIOSSLContext(configuration: tls)
        context.withLockedValue { $0 = (generation, made) }
        return made
    }

    /// Registers a connection's ClientHello random; false if an open connection holds it.
    func register(_ random: ClientRandom) -> Bool {
        secrets.withLockedValue { table in
            guard table[random] == nil else { return false }
            table[random] = .some(nil)
            return true
        }
    }

    /// The TLS exporter of the connection with `random`, once its handshake produced it.
    func exporter(_ random: ClientRandom) -> TLSExporter? {
        secrets.withLockedValue { $0[random] ?? nil }
    }

    /// Forgets a closed connection's random and secret.
    func forget(_ random: ClientRandom) {
        _ = secrets.withLockedValue { $0.removeValue(forKey: random) }
    }

    /// Randoms registered now (for tests: one per open connection past its ClientHello).
    var registered: Int { secrets.withLockedValue { $0.count } }
}

/// Reads a connection's ClientHello random before TLS starts (RFC 8446 §4.1.2: a TLS record
/// of type handshake, 22, whose first message is a ClientHello, 1, with `legacy_version`
/// 0x0303 and then the 32-byte random), registers it with the listener's `NTSKETLS`, then puts
/// the TLS handler in its place and hands it every byte read so far. Until then the connection
/// costs no TLS state at all. Anything that is not a ClientHello ends the connection as a failed
/// handshake.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class ClientHelloReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Record header (5) + handshake header (4) + legacy_version (2) + random (32).
    static let needed = 43

    let tls: NTSKETLS
    let exchange: NTSKEHandler
    private var buffered: ByteBuffer?

    init(tls: NTSKETLS, exchange: NTSKEHandler) {
        self.tls = tls
        self.exchange = exchange
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        if buffered == nil {
            buffered = chunk
        } else {
            buffered!.writeBuffer(&chunk)
        }
        guard let bytes = buffered, bytes.readableBytes >= Self.needed else { return }
        guard let head = bytes.getBytes(at: bytes.readerIndex, length: Self.needed),
              head[0] == 22, head[1] == 3, head[5] == 1, head[9] == 3, head[10] == 3
        else {
            exchange.handshakeFailed(context)
            return
        }
        let random = NTSKETLS.ClientRandom(bytes: Array(head[11..<43]))
        guard tls.register(random) else {
            exchange.handshakeFailed(context)
            return
        }
        exchange.clientRandom = random
        do {
            let ssl = NIOSSLServerHandler(context: try tls.currentContext())
            try context.pipeline.syncOperations.addHandler(ssl, position: .after(self))
        } catch {
            exchange.handshakeFailed(context)
            return
        }
        buffered = nil
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }
}
