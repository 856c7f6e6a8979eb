import Logging
import NIOCore
import NIOEmbedded
import Testing
import TockProtocol
@testable import TockServer

/// NTS-KE's one TLS context and the ClientHello randoms that find each connection's exporter
/// secret (`NTSKETLS`, `ClientHelloReader`).
@Suite("NTS-KE: one TLS context, exporter secrets by ClientHello random") struct NTSKETLSTests {
    static func tls() throws -> (NTSKETLS, NTSCredentials, ThrowawayCertificate) {
        let certificate = try ThrowawayCertificate()
        let credentials = try NTSCredentials(certificatePath: certificate.certificate, privateKeyPath: certificate.privateKey)
        return (NTSKETLS(credentials: credentials), credentials, certificate)
    }

    @Test("A random is held by one open connection at a time, and forgotten when it closes")
    func randomsOnce() throws {
        let (tls, _, certificate) = try Self.tls()
        defer { certificate.remove() }
        let random = NTSKETLS.ClientRandom(bytes: [UInt8](repeating: 7, count: 32))
        #expect(tls.register(random))
        #expect(!tls.register(random), "a copied random must not share a connection's secret")
        #expect(tls.exporter(random) == nil)
        tls.forget(random)
        #expect(tls.registered == 0)
        #expect(tls.register(random))
        #expect(random.hex == String(repeating: "07", count: 32))
    }

    @Test("One context serves every connection until a reload reads the certificate again")
    func oneContext() throws {
        let (tls, credentials, certificate) = try Self.tls()
        defer { certificate.remove() }
        let first = try tls.currentContext()
        #expect(try tls.currentContext() === first)
        try credentials.reload()
        let second = try tls.currentContext()
        #expect(second !== first)
        #expect(try tls.currentContext() === second)
    }

    @Test("What is not a TLS ClientHello, or repeats an open connection's random, ends as a failed handshake")
    func readerRefuses() throws {
        let (tls, _, certificate) = try Self.tls()
        defer { certificate.remove() }
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 10, perAddress: 10), counters: counters)
        func connection() throws -> EmbeddedChannel {
            let exchange = NTSKEHandler(server: NTSKEServer(ntpServer: nil, ntpPort: nil), cookies: NTSCookieMaker(keys: NTSCookieKeys(master: randomMaster())),
                                        counters: counters, tls: tls, table: table, id: 1, handshakeDeadline: .seconds(2), logger: Logger(label: "test"))
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(ClientHelloReader(tls: tls, exchange: exchange))
            try channel.pipeline.syncOperations.addHandler(exchange)
            try channel.connect(to: try SocketAddress(ipAddress: "192.0.2.7", port: 40_000)).wait()
            return channel
        }
        let garbage = try connection()
        try garbage.writeInbound(ByteBuffer(bytes: [UInt8](repeating: 0x47, count: 64)))
        #expect(!garbage.isActive)
        #expect(counters.drops(.ntsKEHandshake) == 1)

        let random = [UInt8](repeating: 9, count: 32)
        #expect(tls.register(NTSKETLS.ClientRandom(bytes: random)))
        let copy = try connection()
        try copy.writeInbound(ByteBuffer(bytes: [22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3] + random))
        #expect(!copy.isActive)
        #expect(counters.drops(.ntsKEHandshake) == 2)
        #expect(tls.registered == 1, "the copy registered nothing")
        _ = try? garbage.finish(acceptAlreadyClosed: true)
        _ = try? copy.finish(acceptAlreadyClosed: true)
    }
}
