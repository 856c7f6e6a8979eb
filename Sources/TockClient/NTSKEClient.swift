import Glibc
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import TockCrypto
import TockProtocol
import TockSockets

/// What NTS key establishment gave a client (RFC 8915 §4, §5.1): the algorithm, the two keys,
/// the cookies, and where to send NTP.
package struct NTSSession: Sendable {
    /// The NTS-KE server's address.
    package var keServer: SocketEndpoint
    /// The AEAD the server chose among those offered.
    package var algorithm: NTSAEADAlgorithm
    /// The client-to-server key (requests).
    package var c2s: [UInt8]
    /// The server-to-client key (replies).
    package var s2c: [UInt8]
    /// The cookies, each good for one request.
    package var cookies: [[UInt8]]
    /// The NTP server named by the response (RFC 8915 §4.1.7), or nil: the KE server's address.
    package var ntpServer: String?
    /// The NTP port: the response's (RFC 8915 §4.1.8), or 123.
    package var ntpPort: UInt16
    /// Warning codes the server sent (RFC 8915 §4.1.4).
    package var warnings: [UInt16]
    /// How long key establishment took, from connect to End of Message.
    package var keNanoseconds: Int64

    /// A cipher keyed for this session.
    package func cipher() -> NTSSessionCipher {
        NTSSessionCipher(c2s: c2s, s2c: s2c)
    }

    /// Where to send NTP: the named server, resolved; without one, the KE server's own
    /// address (RFC 8915 §4.1.7: "the same IP address as the NTS-KE server").
    package func ntpEndpoint() throws(ClientError) -> SocketEndpoint {
        guard let ntpServer else {
            var endpoint = keServer
            endpoint.port = ntpPort
            return endpoint
        }
        return try Resolver.resolve(ntpServer, port: ntpPort)[0]
    }
}

/// The client side of NTS key establishment (RFC 8915 §4): TLS 1.3 with ALPN `ntske/1`, the
/// server's certificate verified for the name (or address) connected to, one request, the
/// response read to End of Message, and the keys exported from the TLS session (§5.1).
///
/// swift-nio-ssl has no public TLS exporter, so, as the server does, each connection gets its
/// own TLS context whose key-log callback keeps the `EXPORTER_SECRET` line, from which
/// `TLSExporter` computes RFC 8446 §7.5's exporter.
package struct NTSKEClient: Sendable {
    /// The NTS-KE port (RFC 8915 §4).
    package static let defaultPort: UInt16 = 4460

    /// The host as the user named it: sent as SNI and matched against the certificate's
    /// subjectAltName DNS names; an IP address literal is matched against its IP addresses
    /// instead, and sent without SNI, which names only hosts (RFC 6066 §3).
    package var host: String
    /// A PEM file of CA certificates to trust instead of the system's (a private CA or a
    /// self-signed server).
    package var caFile: String?
    /// How long the whole key establishment may take.
    package var timeoutNanoseconds: Int64
    /// The AEAD algorithms offered, preferred first: AES-SIV-CMAC-256, the mandatory one
    /// (RFC 8915 §5.1) and what chrony offers first, then AES-SIV-CMAC-512.
    package var algorithms: [NTSAEADAlgorithm] = [.aesSIVCMAC256, .aesSIVCMAC512]

    package init(host: String, caFile: String? = nil, timeoutNanoseconds: Int64 = 2_000_000_000) {
        self.host = host
        self.caFile = caFile
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// Runs key establishment with `address`, blocking until it ends.
    package func establish(with address: SocketEndpoint) throws(ClientError) -> NTSSession {
        do {
            return try establish(with: address, group: MultiThreadedEventLoopGroup.singleton).wait()
        } catch let error as ClientError {
            throw error
        } catch {
            throw .ntsKeyEstablishment(server: address.description, .tls("\(error)"))
        }
    }

    /// Runs `count` key establishments with `address`, `concurrency` at a time (a load test's
    /// sessions, one per client socket), blocking until all have ended; the first failure ends
    /// them.
    package func establish(with address: SocketEndpoint, count: Int, concurrency: Int = 16) throws(ClientError) -> [NTSSession] {
        var sessions: [NTSSession] = []
        sessions.reserveCapacity(count)
        let group = MultiThreadedEventLoopGroup.singleton
        while sessions.count < count {
            let futures = (0..<min(max(1, concurrency), count - sessions.count)).map { _ in establish(with: address, group: group) }
            for future in futures {
                do {
                    sessions.append(try future.wait())
                } catch let error as ClientError {
                    throw error
                } catch {
                    throw .ntsKeyEstablishment(server: address.description, .tls("\(error)"))
                }
            }
        }
        return sessions
    }

    /// Runs key establishment with `address` on `group`; the future fails only with a
    /// `ClientError`.
    package func establish(with address: SocketEndpoint, group: EventLoopGroup) -> EventLoopFuture<NTSSession> {
        let loop = group.next()
        let name = address.description
        let start = SystemClock.monotonicNanoseconds()
        let keyLog = KeyLogLine()
        let records = loop.makePromise(of: [NTSKERecord].self)
        let socketAddress: SocketAddress
        let context: NIOSSLContext
        do {
            socketAddress = try SocketAddress(ipAddress: address.ipString, port: Int(address.port))
            context = try NIOSSLContext(configuration: tlsConfiguration(keyLog: keyLog))
        } catch {
            return loop.makeFailedFuture(ClientError.ntsKeyEstablishment(server: name, .tls("\(error)")))
        }
        let request = NTSKEResponse.request(offering: algorithms)
        let serverHostname = SocketEndpoint(ip: host, port: 0) == nil ? host : nil
        let (timeout, expected) = (timeoutNanoseconds, host)
        let connected = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverHostname))
                    try sync.addHandler(NTSKEClientHandler(request: request, expectedName: serverHostname, promise: records))
                }
            }
            .connect(to: socketAddress)
        connected.whenSuccess { channel in
            // The whole exchange, handshake included, within the timeout.
            let remaining = max(0, timeout - (SystemClock.monotonicNanoseconds() - start))
            let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(remaining)) {
                records.fail(ClientError.timeout(server: "NTS-KE server \(name)", seconds: Double(timeout) / 1e9))
                channel.close(promise: nil)
            }
            records.futureResult.whenComplete { _ in
                deadline.cancel()
                channel.close(promise: nil)
            }
        }
        connected.whenFailure { records.fail($0) }
        let algorithms = self.algorithms
        return records.futureResult.flatMapErrorThrowing { error in
            throw Self.clientError(error, server: name, host: expected, timeoutNanoseconds: timeout)
        }.flatMapThrowing { records -> NTSSession in
            let response: NTSKEResponse
            do throws(NTSKEResponse.Problem) {
                response = try NTSKEResponse(records: records, offered: algorithms)
            } catch {
                throw ClientError.ntsKeyEstablishment(server: name, .response(error))
            }
            guard let line = keyLog.value, let exporter = TLSExporter(keyLogLine: line) else {
                throw ClientError.ntsKeyEstablishment(server: name, .noExporterSecret)
            }
            let keys = exporter.ntsKeys(aead: response.algorithm.rawValue)
            return NTSSession(
                keServer: address, algorithm: response.algorithm, c2s: keys.c2s, s2c: keys.s2c,
                cookies: response.cookies, ntpServer: response.ntpServer, ntpPort: response.ntpPort ?? 123,
                warnings: response.warnings, keNanoseconds: SystemClock.monotonicNanoseconds() - start
            )
        }
    }

    /// TLS 1.3 only (RFC 8915 §3 requires 1.3 or later), ALPN `ntske/1`, full certificate
    /// verification with hostname checking against `caFile` or the system's roots, and the
    /// key-log callback that keeps the exporter secret.
    func tlsConfiguration(keyLog: KeyLogLine) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        tls.applicationProtocols = [NTSKEServer.alpn]
        tls.certificateVerification = .fullVerification
        tls.trustRoots = caFile.map { .file($0) } ?? .default
        tls.keyLogCallback = { line in
            let text = String(buffer: line)
            if text.hasPrefix(TLSExporter.keyLogLabel + " ") { keyLog.set(text) }
        }
        return tls
    }

    /// What a failure means for a person: the certificate, the name, TLS, the network or the
    /// time it took.
    static func clientError(_ error: Error, server: String, host: String, timeoutNanoseconds: Int64) -> ClientError {
        switch error {
        case let error as ClientError:
            return error
        case let error as NTSKEClientHandler.Failure:
            return .ntsKeyEstablishment(server: server, error.failure)
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return .ntsKeyEstablishment(server: server, .nameMismatch(expected: host))
        case let error as NIOSSLError:
            if case .handshakeFailed(let stack) = error {
                let text = "\(stack)"
                if text.contains("CERTIFICATE_VERIFY_FAILED") {
                    return .ntsKeyEstablishment(server: server, .certificateNotTrusted("CERTIFICATE_VERIFY_FAILED"))
                }
                if text.contains("NO_APPLICATION_PROTOCOL") {
                    return .ntsKeyEstablishment(server: server, .noALPN(negotiated: nil))
                }
                if text.contains("PROTOCOL_VERSION") || text.contains("UNSUPPORTED_PROTOCOL") {
                    return .ntsKeyEstablishment(server: server, .tls("the server does not speak TLS 1.3 (\(Self.brief(text))), which NTS-KE requires"))
                }
                return .ntsKeyEstablishment(server: server, .tls("handshake failed: \(Self.brief(text))"))
            }
            if case .uncleanShutdown = error { return .ntsKeyEstablishment(server: server, .closedEarly) }
            return .ntsKeyEstablishment(server: server, .tls("\(error)"))
        case let error as IOError:
            return .network(server: server, SystemError("connect", errorNumber: error.errnoCode))
        case ChannelError.connectTimeout:
            return .timeout(server: "NTS-KE server \(server)", seconds: Double(timeoutNanoseconds) / 1e9)
        case ChannelError.eof, ChannelError.ioOnClosedChannel, ChannelError.alreadyClosed:
            return .ntsKeyEstablishment(server: server, .closedEarly)
        default:
            return .ntsKeyEstablishment(server: server, .tls("\(error)"))
        }
    }

    /// RFC 6125 §6.4.3's matching of one DNS name against the host asked for.
    package static func dnsNameMatches(_ pattern: String, _ host: String) -> Bool {
        func normal(_ name: String) -> Substring {
            let lower = Substring(name.lowercased())
            return lower.hasSuffix(".") ? lower.dropLast() : lower
        }
        let pattern = normal(pattern), host = normal(host)
        if pattern == host { return !host.isEmpty }
        guard pattern.hasPrefix("*."), let dot = host.firstIndex(of: "."), dot != host.startIndex else { return false }
        let parent = pattern.dropFirst(2)
        return parent.contains(".") && host[host.index(after: dot)...] == parent
    }

    /// BoringSSL's error stack without source file paths.
    static func brief(_ text: String) -> String {
        // "[Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /path:123]"
        var out: [String] = []
        var rest = Substring(text)
        while let range = rest.range(of: "OPENSSL_internal:") {
            rest = rest[range.upperBound...]
            out.append(String(rest.prefix { $0 != " " && $0 != "]" && $0 != "," }))
        }
        return out.isEmpty ? text : out.joined(separator: ", ")
    }
}

/// The exporter secret one connection's key-log callback reports, set from the event loop and
/// read after the response.
final class KeyLogLine: Sendable {
    private let line = Mutex<String?>(nil)
    func set(_ text: String) { line.withLock { $0 = text } }
    var value: String? { line.withLock { $0 } }
}

/// One NTS-KE connection, client side: after the handshake, checks ALPN, sends the request,
/// reads the response until End of Message (RFC 8915 §4), and completes `promise` once.
///
/// Not Sendable: NIO calls it on its channel's event loop only.
final class NTSKEClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A failure of the NTS-KE exchange itself (not of TLS or the network).
    struct Failure: Error {
        var failure: NTSKEFailure
    }

    let request: [UInt8]
    /// The host name the certificate must name, when the user gave a name (not an address).
    let expectedName: String?
    let promise: EventLoopPromise<[NTSKERecord]>
    private var reader = NTSKEMessageReader()
    private var done = false

    init(request: [UInt8], expectedName: String?, promise: EventLoopPromise<[NTSKERecord]>) {
        self.request = request
        self.expectedName = expectedName
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let alpn) = event {
            // RFC 8915 §4: the server must agree to `ntske/1`; without it this is not NTS-KE.
            guard alpn == NTSKEServer.alpn else {
                finish(context, .failure(Failure(failure: .noALPN(negotiated: alpn))))
                return
            }
            // swift-nio-ssl's hostname check accepts a certificate whose IP address SAN is the
            // connected address even when a name was asked for, so a name resolved to the wrong
            // host (a spoofed DNS answer) would pass with a certificate for that host's address.
            // A name must be among the certificate's DNS names, as GnuTLS checks it for chrony.
            if let expectedName {
                let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
                guard let certificate, Self.certificate(certificate, names: expectedName) else {
                    finish(context, .failure(Failure(failure: .nameMismatch(expected: expectedName))))
                    return
                }
            }
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: request)), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        let buffer = unwrapInboundIn(data)
        switch reader.append(buffer.readableBytesView) {
        case .incomplete:
            break
        case .invalid(let why):
            finish(context, .failure(Failure(failure: .invalidMessage(why))))
        case .complete(let records):
            finish(context, .success(records))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context, .failure(Failure(failure: .closedEarly)))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        finish(context, .failure(error))
    }

    /// Whether `certificate` names `host` among its subjectAltName DNS names (RFC 6125 §6.4:
    /// exact, case-insensitive, or a wildcard as the whole leftmost label). A certificate with
    /// no subjectAltName at all passes: swift-nio-ssl has matched its common name already.
    static func certificate(_ certificate: NIOSSLCertificate, names host: String) -> Bool {
        var sawName = false
        for name in certificate._subjectAlternativeNames() {
            sawName = true
            guard name.nameType == .dnsName else { continue }
            let dnsName = name.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
            if NTSKEClient.dnsNameMatches(dnsName, host) { return true }
        }
        return !sawName
    }

    private func finish(_ context: ChannelHandlerContext, _ result: Result<[NTSKERecord], Error>) {
        guard !done else { return }
        done = true
        promise.completeWith(result)
        context.close(promise: nil)
    }
}
