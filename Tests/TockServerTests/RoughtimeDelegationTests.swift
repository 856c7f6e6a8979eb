import Foundation
import Glibc
import Testing
import TockConfig
import TockCrypto
import TockProtocol
@testable import TockServer
import TockSockets

/// Roughtime delegations (RFC 10049 §5.2.6): signed offline into a file and served by a real
/// TockServer, reloaded, refused when wrong or expired; and the online key made in memory,
/// renewed while the server answers.
@Suite("Roughtime delegation")
struct RoughtimeDelegationTests {
    static let seed: [UInt8] = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 5) }
    static var longTermPublicKey: [UInt8] { try! RoughtimeEd25519Signer(seed: seed).publicKey }

    static var now: Int64 { SystemClock.now().secondsSinceUnixEpoch }

    /// A delegation by `seed` from `now + from` to `now + until` seconds.
    static func delegation(from: Int64 = -60, until: Int64 = 30 * 86400, seed: [UInt8] = seed) throws -> RoughtimeDelegation {
        try RoughtimeDelegation.sign(longTermSeed: seed, minimumTime: UInt64(now + from), maximumTime: UInt64(now + until))
    }

    /// Runs `body` with a fresh directory, removed afterwards.
    static func withDirectory(_ body: (String) async throws -> Void) async throws {
        var template = Array((NSTemporaryDirectory() + "/tock-delegation-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw NotReady(description: "mkdtemp: \(errno)") }
        let directory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await body(directory)
    }

    /// Writes `text` to `path` with `mode`, replacing it atomically (as `tock roughtime
    /// delegate --force` does, so a reload never reads half a file).
    static func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
        let temporary = path + ".new"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        chmod(temporary, mode)
        guard rename(temporary, path) == 0 else { throw NotReady(description: "rename: \(errno)") }
    }

    /// The problem `RoughtimeDelegation.read` reports for `path`, or nil.
    static func readProblem(_ path: String) -> String? {
        do throws(RoughtimeDelegation.Problem) {
            _ = try RoughtimeDelegation.read(path: path)
            return nil
        } catch {
            return error.description
        }
    }

    /// `text` with the value of `key` replaced.
    static func replacing(_ key: String, in text: String, with value: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(key + ":") ? "\(key): \(value)" : String($0) }
            .joined(separator: "\n")
    }

    static func request() -> [UInt8] {
        RoughtimeRequestBuilder.packet(nonce: (0..<32).map { _ in UInt8.random(in: 0...255) }, versions: [.rfc, .draft12])
    }

    /// Asks `address` once; returns the online key of a reply that verifies under the long-term
    /// key, or nil for no reply.
    static func ask(_ address: SocketEndpoint, timeoutMilliseconds: Int32 = 5000) async throws -> [UInt8]? {
        let request = Self.request()
        guard let reply = await blocking({ udpExchange(request, to: address, timeoutMilliseconds: timeoutMilliseconds) }) else { return nil }
        var hasher = RoughtimeSHA512()
        let time = try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: longTermPublicKey, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
        let now = UInt64(Self.now)
        #expect(time.midpoint + 3 >= now && time.midpoint <= now + 3)
        return try reply.withUnsafeBytes { Array(try RoughtimeReply(packet: $0).onlinePublicKey) }
    }

    static func configuration() -> TockServerConfiguration {
        var configuration = TockServerConfiguration.loopback(ntp: false, daytime: false, time: false)
        configuration.roughtimeListeners = [loopbackV4]
        return configuration
    }

    // MARK: - The file

    @Test("A delegation written to its file reads back the same, verifies, and is valid now")
    func roundTrip() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            let delegation = try Self.delegation()
            try Self.write(delegation.fileText, to: path)
            let read = try RoughtimeDelegation.read(path: path)
            #expect(read == delegation)
            #expect(read.longTermPublicKey == Self.longTermPublicKey)
            #expect(read.certificate.isSigned(by: Self.longTermPublicKey, verifier: RoughtimeEd25519Verifier()))
            try read.check(atUnixSeconds: Self.now, path: path)
            // The certificate is the one the server's own renewal would make: same context, same layout.
            let parsed = try RoughtimeCertificate(parsing: read.certificate.bytes)
            #expect(parsed == delegation.certificate)
        }
    }

    @Test("Tampered, mixed, expired, early, others-readable and malformed files are refused, saying why")
    func refused() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            let good = try Self.delegation()
            let text = good.fileText

            // A flipped bit of SIG (after the CERT's 16-byte header).
            var cert = good.certificate.bytes
            cert[20] ^= 0x01
            try Self.write(Self.replacing("certificate", in: text, with: RoughtimeKeyText.base64(cert)), to: path)
            let tampered = try #require(Self.readProblem(path))
            #expect(tampered.contains("signature does not verify under the long-term public key"), "\(tampered)")
            #expect(tampered.contains(path))

            // Another long-term key named: the signature does not verify under it.
            let other = RoughtimeEd25519Signer().publicKey
            try Self.write(Self.replacing("long-term-public-key", in: text, with: RoughtimeKeyText.base64(other)), to: path)
            #expect(Self.readProblem(path)?.contains("signature does not verify") == true)

            // The online key of another delegation.
            let another = try Self.delegation()
            try Self.write(Self.replacing("online-private-key", in: text, with: RoughtimeKeyText.base64(another.onlineSeed)), to: path)
            #expect(Self.readProblem(path)?.contains("another online key") == true)

            // MAXT edited: the lines disagree with the signed certificate.
            try Self.write(Self.replacing("maxt", in: text, with: "\(good.certificate.maximumTime + 86400)"), to: path)
            #expect(Self.readProblem(path)?.contains("not the certificate's MINT and MAXT") == true)

            // Expired: reads, but is refused for the time.
            let expired = try Self.delegation(from: -7200, until: -60)
            try Self.write(expired.fileText, to: path)
            let read = try RoughtimeDelegation.read(path: path)
            #expect(throws: RoughtimeDelegation.Problem.self) { try read.check(atUnixSeconds: Self.now, path: path) }
            do throws(RoughtimeDelegation.Problem) {
                try read.check(atUnixSeconds: Self.now, path: path)
            } catch {
                #expect(error.description.contains("expired at"), "\(error)")
                #expect(error.description.contains("tock roughtime delegate"))
            }

            // Not valid yet.
            let early = try Self.delegation(from: 3600, until: 7200)
            do throws(RoughtimeDelegation.Problem) {
                try early.check(atUnixSeconds: Self.now, path: path)
                Issue.record("a delegation starting in an hour was accepted")
            } catch {
                #expect(error.description.contains("is not valid before"), "\(error)")
            }

            // Readable by others: refused before it is parsed, with the fix.
            try Self.write(text, to: path, mode: 0o644)
            let open = try #require(Self.readProblem(path))
            #expect(open.contains("can be read by others") && open.contains("chmod 600 \(path)"), "\(open)")
            try Self.write(text, to: path, mode: 0o640)
            #expect(Self.readProblem(path)?.contains("can be read by others") == true)

            // Missing, unknown and repeated lines; not a file at all.
            try Self.write(text.split(separator: "\n").filter { !$0.hasPrefix("certificate:") }.joined(separator: "\n"), to: path)
            #expect(Self.readProblem(path)?.contains("no 'certificate' line") == true)
            try Self.write(text + "colour: blue\n", to: path)
            #expect(Self.readProblem(path)?.contains("unknown key 'colour'") == true)
            try Self.write(text + "mint: 1\n", to: path)
            #expect(Self.readProblem(path)?.contains("'mint' given twice") == true)
            #expect(Self.readProblem(directory + "/absent")?.contains("tock roughtime delegate") == true)

            // And a good one reads again.
            try Self.write(text, to: path)
            #expect(Self.readProblem(path) == nil)
        }
    }

    @Test("tockd's settings: a delegation file instead of the key, checked at start; both, or neither, refused")
    func settings() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            let seedPath = directory + "/seed"
            try Self.write(RoughtimeKeyText.hex(Self.seed) + "\n", to: seedPath)
            var layer = TockdSettings()
            layer.ntpListen = ["127.0.0.1:0"]
            layer.roughtime = ["127.0.0.1:0"]
            layer.roughtimeDelegation = path

            let good = try Self.delegation()
            try Self.write(good.fileText, to: path)
            let resolved = try layer.resolve()
            #expect(resolved.configuration.roughtimeDelegation == RoughtimeDelegationFile(path: path, delegation: good))
            #expect(resolved.configuration.roughtimeKeySeed == nil)
            let line = resolved.description(layer: layer, file: nil).split(separator: "\n").first { $0.hasPrefix("roughtime.delegation_file ") }
            #expect(line?.hasSuffix("= \"\(path)\"") == true, "\(line ?? "no line")")

            try Self.write(try Self.delegation(from: -7200, until: -1).fileText, to: path)
            #expect(throws: SettingError.self) { try layer.resolve() }
            do throws(SettingError) { _ = try layer.resolve() } catch {
                #expect(error.description.contains("--roughtime-delegation") && error.description.contains("expired at"), "\(error)")
            }

            try Self.write(good.fileText, to: path)
            var both = layer
            both.roughtimeKey = seedPath
            do throws(SettingError) { _ = try both.resolve(); Issue.record("key and delegation both accepted") } catch {
                #expect(error.description.contains("not both"), "\(error)")
            }

            var neither = layer
            neither.roughtimeDelegation = nil
            do throws(SettingError) { _ = try neither.resolve(); Issue.record("Roughtime without a key accepted") } catch {
                #expect(error.description.contains("Roughtime needs a long-term key") && error.description.contains("--roughtime-delegation"), "\(error)")
            }
        }
    }

    // MARK: - Serving

    @Test("A server with an offline delegation answers, verifies under the long-term key, reloads a new file and keeps the old on a bad one")
    func servesAndReloads() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            let first = try Self.delegation()
            try Self.write(first.fileText, to: path)
            var configuration = Self.configuration()
            configuration.roughtimeDelegation = RoughtimeDelegationFile(path: path, delegation: try RoughtimeDelegation.read(path: path))
            try await withServer(configuration) { server in
                let address = server.addresses(.roughtime)[0]
                #expect(try await Self.ask(address) == first.onlinePublicKey)

                let status = try #require(server.status().roughtime)
                #expect(status.delegationSource == "file" && status.delegationFile == path)
                #expect(status.delegationExpiry == first.certificate.maximumTime && status.delegationStart == first.certificate.minimumTime)
                #expect(status.longTermPublicKey == RoughtimeKeyText.base64(Self.longTermPublicKey))
                #expect(abs(status.delegationSecondsRemaining - (30 * 86400)) < 120)
                let metrics = String(decoding: MetricsExporter(server: server).scrape(), as: UTF8.self)
                #expect(MetricsTests.sample(metrics, "tockd_roughtime_delegation_expiry_timestamp_seconds{source=\"file\"}") == Double(first.certificate.maximumTime), "\(metrics)")
                #expect((MetricsTests.sample(metrics, "tockd_roughtime_delegation_remaining_seconds{source=\"file\"}") ?? 0) > 29 * 86400)

                // A new delegation, same long-term key: served from the next batch. A reload
                // without --config reads the key files too.
                let second = try Self.delegation()
                try Self.write(second.fileText, to: path)
                let reloader = ReloadService(server: server, path: nil, flags: TockdSettings(), running: TockdSettings(), logLevel: LiveLogLevel(.info), logger: quietLogger)
                #expect(reloader.reload() == .rejected("no configuration file"))
                #expect(server.roughtimeKeys?.delegation == second)
                #expect(try await Self.ask(address) == second.onlinePublicKey)

                // Bad files keep the running delegation.
                let tampered = Self.replacing("mint", in: try Self.delegation().fileText, with: "1")
                let foreign = try Self.delegation(seed: (0..<32).map { UInt8($0) })
                let expired = try Self.delegation(from: -7200, until: -60)
                for (text, mode, expected) in [(tampered, mode_t(0o600), "MINT and MAXT"), (foreign.fileText, 0o600, "restart tockd"),
                                               (expired.fileText, 0o600, "expired at"), (second.fileText, 0o644, "can be read by others")] {
                    try Self.write(text, to: path, mode: mode)
                    guard case .failure(let error)? = server.reloadRoughtimeDelegation() else {
                        Issue.record("reload accepted a file that should fail with \(expected)")
                        continue
                    }
                    #expect(error.description.contains(expected), "\(error)")
                    #expect(server.roughtimeKeys?.delegation == second)
                }
                #expect(try await Self.ask(address) == second.onlinePublicKey)
                #expect(server.datagramStatistics(.roughtime).dropped == 0)
            }
        }
    }

    @Test("With a configuration file, an expired delegation keeps the running one but does not hold up an access-list change; a broken file holds up the reload")
    func reloadWithConfigurationFile() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            let config = directory + "/tockd.toml"
            let base = "[ntp]\nlisten = []\n[daytime]\nlisten = []\n[time]\nlisten = []\n[clock]\nsource = \"local\"\n[roughtime]\nlisten = [\"127.0.0.1:0\"]\ndelegation_file = \"\(path)\"\n"
            try Self.write(base, to: config)
            let first = try Self.delegation()
            try Self.write(first.fileText, to: path)
            let layer = try ConfigFile.load(path: config)
            try await withServer(try layer.resolve().configuration) { server in
                let address = server.addresses(.roughtime)[0]
                let reloader = ReloadService(server: server, path: config, flags: TockdSettings(), running: layer, logLevel: LiveLogLevel(.info), logger: quietLogger)

                try Self.write(try Self.delegation(from: -7200, until: -60).fileText, to: path)
                try Self.write(base + "[access]\ndeny = [\"192.0.2.0/24\"]\n", to: config)
                guard case .applied(let changed, _, _) = reloader.reload() else {
                    Issue.record("an expired delegation held up the reload")
                    return
                }
                #expect(changed.contains(.roughtime))
                #expect(server.roughtimeKeys?.delegation == first)
                #expect(try await Self.ask(address) == first.onlinePublicKey)

                try Self.write("format: something else\n", to: path)
                guard case .rejected(let why) = reloader.reload() else {
                    Issue.record("a broken delegation file was accepted")
                    return
                }
                #expect(why.contains("--roughtime-delegation"), "\(why)")
                #expect(server.roughtimeKeys?.delegation == first)
            }
        }
    }

    @Test("Once the delegation has expired the server answers nothing, counts delegation_expired, and answers again after a reload")
    func expiredWhileServing() async throws {
        try await Self.withDirectory { directory in
            let path = directory + "/delegation"
            // Already past MAXT when the server starts (tockd refuses that at start; the
            // server itself serves what it is given, as it would once MAXT passes).
            let expired = try Self.delegation(from: -7200, until: -5)
            var configuration = Self.configuration()
            configuration.roughtimeDelegation = RoughtimeDelegationFile(path: path, delegation: expired)
            try await withServer(configuration) { server in
                let address = server.addresses(.roughtime)[0]
                #expect(try await Self.ask(address, timeoutMilliseconds: 300) == nil)
                #expect(await eventually { server.datagramStatistics(.roughtime).drops[.roughtimeDelegationExpired, default: 0] == 1 })
                #expect(server.status().services.first { $0.name == "roughtime" && $0.transport == "udp" }?.drops["delegation_expired"] == 1)
                #expect((server.status().roughtime?.delegationSecondsRemaining ?? 0) < 0)

                let fresh = try Self.delegation()
                try Self.write(fresh.fileText, to: path)
                guard case .success? = server.reloadRoughtimeDelegation() else {
                    Issue.record("a valid delegation was not reloaded")
                    return
                }
                #expect(try await Self.ask(address) == fresh.onlinePublicKey)
            }
        }
    }

    @Test("The online key made in memory is renewed while the server answers: DELE changes, every reply before and after verifies, none is dropped")
    func renewedWhileServing() async throws {
        var configuration = Self.configuration()
        configuration.roughtimeKeySeed = Self.seed
        // MAXT 60 s after each key is made, renewed once under 59 s remain: a new key about
        // every second, with a minute of slack however late a loaded machine runs the renewal.
        configuration.roughtimeRenewal = RoughtimeRenewal(validBefore: 60, validAfter: 60, renewBefore: 59, checkInterval: .milliseconds(100))
        try await withServer(configuration) { server in
            let address = server.addresses(.roughtime)[0]
            let status = try #require(server.status().roughtime)
            #expect(status.delegationSource == "renewed" && status.delegationFile == nil)
            var keys: [[UInt8]] = []
            var sent = 0
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(30)
            while clock.now < deadline {
                sent += 1
                let key = try #require(try await Self.ask(address), "request \(sent) got no reply")
                if keys.last != key { keys.append(key) }
                if keys.count >= 3 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(keys.count >= 3, "the online key was not renewed twice in 30 s")
            #expect(Set(keys).count == keys.count, "an old key came back")
            let statistics = server.datagramStatistics(.roughtime)
            #expect(statistics.dropped == 0, "\(statistics.drops)")
            #expect(await eventually { server.datagramStatistics(.roughtime).replied == UInt64(sent) })
            let metrics = String(decoding: MetricsExporter(server: server).scrape(), as: UTF8.self)
            #expect(MetricsTests.sample(metrics, "tockd_roughtime_delegation_expiry_timestamp_seconds{source=\"renewed\"}") != nil, "\(metrics)")
        }
    }
}
