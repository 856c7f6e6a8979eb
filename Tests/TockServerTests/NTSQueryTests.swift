import Foundation
import Glibc
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets
import TockTestSupport

/// A throwaway self-signed certificate for 127.0.0.1 and localhost, made with openssl in a
/// fresh temporary directory (removed by `remove()`).
struct ThrowawayCertificate {
    let directory: String
    var certificate: String { directory + "/cert.pem" }
    var privateKey: String { directory + "/key.pem" }

    init() throws {
        var template = Array((NSTemporaryDirectory() + "/tock-nts-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NotReady(description: "mkdtemp: \(errno)") }
        directory = String(cString: made)
        let result = spawn("openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ], searchPath: true, timeout: 30)
        guard result.status == 0 else { throw NotReady(description: "openssl req failed (\(result.status)): \(result.errors)") }
        chmod(directory + "/key.pem", 0o600)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// The built `tock` executable next to the test binary.
func tockExecutable() throws -> String {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    while url.path.contains(".xctest") { url = url.deletingLastPathComponent() }
    let path = url.appendingPathComponent("tock").path
    try #require(FileManager.default.isExecutableFile(atPath: path), "the tock executable is not at \(path): build the package's products first (swift build)")
    return path
}

/// Random bytes for a cookie master secret.
func randomMaster() -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
}

extension TockServerConfiguration {
    /// A fleet member serving NTS-protected NTP on 127.0.0.1:0 with cookie keys from `master`,
    /// and no NTS-KE of its own.
    static func ntsNTP(master: [UInt8], periodSeconds: Int64 = 86_400, keptPeriods: Int = 7) -> TockServerConfiguration {
        var configuration = TockServerConfiguration.loopback(ntp: true, daytime: false, time: false)
        configuration.ntpListeners = [loopbackV4]
        configuration.nts = NTSServerConfiguration(keListeners: [], credentials: nil, cookieKeys: NTSCookieKeys(master: master, periodSeconds: periodSeconds, keptPeriods: keptPeriods))
        return configuration
    }

    /// An NTS-KE server on 127.0.0.1:0 handing out cookies under `master` for NTP on
    /// `ntpPort` (announced with a Port Negotiation record), plus its own NTP if `ntp`.
    static func ntsKE(_ certificate: ThrowawayCertificate, master: [UInt8], ntpPort: UInt16?, ntp: Bool = false, periodSeconds: Int64 = 86_400, keptPeriods: Int = 7) throws -> TockServerConfiguration {
        var configuration = TockServerConfiguration.loopback(ntp: ntp, daytime: false, time: false)
        configuration.ntpListeners = ntp ? [loopbackV4] : []
        let credentials = try NTSCredentials(certificatePath: certificate.certificate, privateKeyPath: certificate.privateKey)
        configuration.nts = NTSServerConfiguration(
            keListeners: [loopbackV4], credentials: credentials,
            cookieKeys: NTSCookieKeys(master: master, periodSeconds: periodSeconds, keptPeriods: keptPeriods), ntpPort: ntpPort
        )
        return configuration
    }
}

/// `tock query --nts` end to end against real tockd servers: NTS-KE over TLS 1.3, then the
/// authenticated NTP exchange, as a client in the field runs them.
@Suite("NTS query end to end against TockServer", .serialized)
struct NTSQueryTests {
    @Test("NTS-KE, then authenticated NTP to the announced port: authenticated, sane offset, cookies replaced")
    func endToEnd() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        let master = randomMaster()
        // A fleet: one host serves NTP, another NTS-KE with the same cookie keys, announcing
        // the NTP host's port.
        try await withServer(.ntsNTP(master: master)) { ntpServer in
            let ntpPort = ntpServer.addresses(.ntp)[0].port
            try await withServer(try .ntsKE(certificate, master: master, ntpPort: ntpPort)) { keServer in
                let keAddress = keServer.addresses(.ntsKE)[0]
                let session = try await blockingThrows {
                    try NTSKEClient(host: "127.0.0.1", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress)
                }
                #expect(session.algorithm == .aesSIVCMAC256)
                #expect(session.cookies.count == 8)
                #expect(session.c2s.count == 32 && session.s2c.count == 32 && session.c2s != session.s2c)
                #expect(session.ntpPort == ntpPort)
                let target = try session.ntpEndpoint()
                #expect(target == ntpServer.addresses(.ntp)[0])

                let result = await blocking { NTSQuery(samples: 3, timeoutNanoseconds: 5_000_000_000, intervalNanoseconds: 0).run(session: session, server: target) }
                #expect(result.ntp.samples.count == 3, "\(describe(result.ntp.lastError))")
                for sample in result.ntp.samples {
                    // Client and server share this host's clock: the offset is within the bound.
                    #expect(abs(sample.offsetNanoseconds) <= sample.errorNanoseconds(localPrecision: -20), "offset \(sample.offsetNanoseconds) ns, delay \(sample.delayNanoseconds) ns")
                    #expect(sample.packet.stratum == 10)
                }
                #expect(result.cookiesReceived == 3)
                #expect(result.cookiesLeft == 8)

                // The CLI, the same path: authenticated, exit 0.
                let tock = try tockExecutable()
                let r = await blocking {
                    spawn(tock, ["query", "--nts", "127.0.0.1:\(keAddress.port)", "--ca", certificate.certificate, "--json", "-n", "2", "--interval", "0", "--timeout", "10"], timeout: 60)
                }
                #expect(r.status == 0, "exit \(r.status): \(r.errors)")
                let object = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
                #expect(object?["authenticated"] as? Bool == true, "\(r.output)")
                #expect(object?["aead"] as? String == "AEAD_AES_SIV_CMAC_256")
                #expect(object?["cookies"] as? Int == 8)
                #expect(object?["address"] as? String == "127.0.0.1:\(ntpPort)")
                #expect(((object?["ke_seconds"] as? Double) ?? 0) > 0)
                #expect(abs((object?["offset"] as? Double) ?? 1) <= ((object?["error"] as? Double) ?? 0), "\(r.output)")
            }
        }
    }

    /// Sleeps until 50 ms into the next cookie-key period of `period` seconds: the periods are
    /// counted from the Unix epoch, so this is where a key is certain to have changed, and where
    /// a fresh one has the most time left.
    static func sleepIntoNextPeriod(_ period: Int64) async throws {
        let now = SystemClock.now().nanosecondsSinceUnixEpoch
        let length = period * 1_000_000_000
        try await Task.sleep(for: .nanoseconds(length - now % length + 50_000_000))
    }

    @Test("Cookie keys rotated out (a 3 s period, none kept): the next exchange gets an NTS NAK")
    func rotationGivesNAK() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        try await withServer(try .ntsKE(certificate, master: randomMaster(), ntpPort: nil, ntp: true, periodSeconds: 3, keptPeriods: 0)) { server in
            let keAddress = server.addresses(.ntsKE)[0]
            let session = try await blockingThrows {
                try NTSKEClient(host: "localhost", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress)
            }
            // The cookies were sealed in period p; from p + 1 on, with no period kept, they no
            // longer open. Waiting for the next period makes that certain, however slow the
            // machine (no fixed sleep to race).
            try await Self.sleepIntoNextPeriod(3)
            let result = await blocking {
                NTSQuery(samples: 3, timeoutNanoseconds: 5_000_000_000, intervalNanoseconds: 0).run(session: session, server: server.addresses(.ntp)[0])
            }
            #expect(result.ntp.samples.isEmpty)
            #expect(result.ntp.sent == 1, "a NAK ends the query")
            guard case .ntsRejected(_, .nak)? = result.ntp.lastError else {
                Issue.record("expected an NTS NAK, got \(describe(result.ntp.lastError))")
                return
            }
            // A fresh key establishment gives cookies that work again: at the start of a period,
            // key establishment and the query have nearly 3 s before the key changes.
            try await Self.sleepIntoNextPeriod(3)
            let fresh = try await blockingThrows {
                try NTSKEClient(host: "localhost", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress)
            }
            let again = await blocking { NTSQuery(samples: 1, timeoutNanoseconds: 5_000_000_000).run(session: fresh, server: server.addresses(.ntp)[0]) }
            #expect(again.ntp.samples.count == 1, "\(describe(again.ntp.lastError))")
        }
    }

    @Test("Cookies from a server with another master (a restarted or foreign server): tock query exits 8 with the NAK")
    func foreignCookiesExit8() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        try await withServer(.ntsNTP(master: randomMaster())) { ntpServer in
            let ntpPort = ntpServer.addresses(.ntp)[0].port
            try await withServer(try .ntsKE(certificate, master: randomMaster(), ntpPort: ntpPort)) { keServer in
                let tock = try tockExecutable()
                let keAddress = keServer.addresses(.ntsKE)[0]
                let r = await blocking {
                    spawn(tock, ["query", "--nts", "127.0.0.1:\(keAddress.port)", "--ca", certificate.certificate, "--json", "--timeout", "10"], timeout: 60)
                }
                #expect(r.status == 8, "exit \(r.status): \(r.errors)")
                #expect(r.errors.contains("NTS NAK"), "\(r.errors)")
                let object = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
                #expect(object?["authenticated"] as? Bool == false, "\(r.output)")
                #expect(object?["kiss_code"] as? String == "NTSN")
            }
        }
    }

    @Test("Key establishment failures: untrusted certificate, wrong name, not TLS")
    func keyEstablishmentFailures() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        var configuration = try TockServerConfiguration.ntsKE(certificate, master: randomMaster(), ntpPort: nil)
        configuration.daytimeListeners = [loopbackV4]
        try await withServer(configuration) { server in
            let keAddress = server.addresses(.ntsKE)[0]
            func establish(_ client: NTSKEClient, _ address: SocketEndpoint) async -> ClientError? {
                await blocking {
                    do throws(ClientError) {
                        _ = try client.establish(with: address)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            // The system's roots do not include a self-signed certificate.
            let untrusted = await establish(NTSKEClient(host: "127.0.0.1", timeoutNanoseconds: 10_000_000_000), keAddress)
            guard case .ntsKeyEstablishment(_, .certificateNotTrusted)? = untrusted else {
                Issue.record("expected certificateNotTrusted, got \(describe(untrusted))")
                return
            }
            #expect(untrusted!.description.contains("--ca"))
            // Trusted, but not issued for this name.
            let wrongName = await establish(NTSKEClient(host: "ntp.example.org", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000), keAddress)
            guard case .ntsKeyEstablishment(_, .nameMismatch(let expected))? = wrongName else {
                Issue.record("expected nameMismatch, got \(describe(wrongName))")
                return
            }
            #expect(expected == "ntp.example.org")
            // A Daytime listener speaks no TLS.
            let daytime = server.addresses(.daytime).first { $0.port != 0 }!
            let notTLS = await establish(NTSKEClient(host: "127.0.0.1", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000), daytime)
            guard case .ntsKeyEstablishment? = notTLS else {
                Issue.record("expected an NTS-KE failure, got \(describe(notTLS))")
                return
            }
            // The CLI: exit 9 for a failed key establishment.
            let tock = try tockExecutable()
            let r = await blocking { spawn(tock, ["query", "--nts", "127.0.0.1:\(keAddress.port)", "--timeout", "10"], timeout: 60) }
            #expect(r.status == 9, "exit \(r.status): \(r.errors)")
            #expect(r.errors.contains("not trusted"), "\(r.errors)")
        }
    }
}

/// `tock bench --nts`'s load generator against a real TockServer: one key establishment per
/// client socket, every request with a cookie, every reply authenticated.
@Suite("NTS load generator against TockServer", .serialized)
struct NTSLoadTests {
    func load(_ target: SocketEndpoint, sessions: [NTSSession], window: Int = 2, kernelTransmitTimestamps: Bool = false) async throws -> LoadReport {
        var load = LoadConfiguration(target: target)
        load.clients = sessions.count
        load.window = window
        load.kernelTransmitTimestamps = kernelTransmitTimestamps
        load.durationSeconds = 1
        load.ntsSessions = sessions
        let configuration = load
        return try await blockingThrows { try LoadGenerator(configuration: configuration).run() }
    }

    @Test("Every reply authenticated; the cookie supply stays level (no reuse)")
    func authenticatedLoad() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        try await withServer(try .ntsKE(certificate, master: randomMaster(), ntpPort: nil, ntp: true)) { server in
            let keAddress = server.addresses(.ntsKE)[0]
            let sessions = try await blockingThrows {
                try NTSKEClient(host: "127.0.0.1", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress, count: 6, concurrency: 3)
            }
            #expect(sessions.count == 6)
            #expect(Set(sessions.map(\.c2s)).count == 6, "each key establishment has its own keys")
            let report = try await load(server.addresses(.ntp)[0], sessions: sessions)
            #expect(report.answered > 100)
            #expect(report.authenticated == report.answered)
            #expect(report.unauthenticated == 0 && report.ntsNAK == 0 && report.invalid == 0 && report.kissOfDeath == 0)
            #expect(report.cookieReuses == 0)
            #expect(report.timestampError.totalCount == report.answered)
        }
    }

    @Test("NTS replies are sampled for the send delay too (their T3 is corrected as plain replies' is), and kernel T1 works with NTS")
    func sealedRepliesSampled() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        var configuration = try TockServerConfiguration.ntsKE(certificate, master: randomMaster(), ntpPort: nil, ntp: true)
        configuration.ntpWorkers = 1
        try await withServer(configuration) { server in
            let keAddress = server.addresses(.ntsKE)[0]
            let sessions = try await blockingThrows {
                try NTSKEClient(host: "127.0.0.1", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress, count: 4, concurrency: 2)
            }
            let report = try await load(server.addresses(.ntp)[0], sessions: sessions, window: 1, kernelTransmitTimestamps: true)
            #expect(report.answered > 200, "answered \(report.answered)")
            #expect(report.authenticated == report.answered)
            #expect(report.missingTransmitTimestamps == 0, "every NTS request has its kernel T1")
            // Only NTS replies were sent: the first, then every 64th, asked the kernel when it left.
            let samples = server.datagramStatistics(.ntp).transmitDelaySamples
            #expect(samples >= 3, "NTS replies sampled: \(samples)")
            // Client and server share the clock: with T1 and T4 from the kernel and T3 moved past
            // the seal, the error is small; far from the 1 s that would mark a reply invalid.
            #expect(report.timestampError.mean < 50_000_000, "mean |error| \(report.timestampError.mean) ns")
        }
    }

    @Test("Cookies the NTP server cannot open: every reply is a NAK, none counts as time")
    func foreignCookies() async throws {
        let certificate = try await blockingThrows { try ThrowawayCertificate() }
        defer { certificate.remove() }
        try await withServer(.ntsNTP(master: randomMaster())) { ntpServer in
            try await withServer(try .ntsKE(certificate, master: randomMaster(), ntpPort: nil)) { keServer in
                let keAddress = keServer.addresses(.ntsKE)[0]
                let sessions = try await blockingThrows {
                    try NTSKEClient(host: "127.0.0.1", caFile: certificate.certificate, timeoutNanoseconds: 10_000_000_000).establish(with: keAddress, count: 2)
                }
                let report = try await load(ntpServer.addresses(.ntp)[0], sessions: sessions, window: 1)
                #expect(report.answered > 10)
                #expect(report.ntsNAK == report.answered)
                #expect(report.kissOfDeath == report.answered)
                #expect(report.authenticated == 0)
                #expect(report.timestampError.totalCount == 0)
            }
        }
    }
}

/// A short description of a client error, for messages.
func describe(_ error: ClientError?) -> String {
    error.map { "\($0)" } ?? "no error"
}
