import Foundation
import Logging
import Testing
import TockConfig
import TockProtocol
import TockServer
import TockSockets

/// SIGHUP reload, driven through `ReloadService.reload()` against a running server.
@Suite("Reloading the configuration")
struct ReloadTests {
    /// A configuration file in a fresh temporary directory.
    final class ConfigPath: @unchecked Sendable {
        let path: String
        init() {
            path = NSTemporaryDirectory() + "tockd-reload-\(UUID().uuidString).toml"
        }
        func write(_ text: String) throws {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    static let base = """
        [clock]
        source = "local"
        [ntp]
        listen = ["127.0.0.1:0"]
        workers = 2
        [daytime]
        listen = ["127.0.0.1:0"]
        format = "hms"
        [time]
        listen = []

        """

    /// Whether one request gets a reply. A reply is awaited 2 s (a loaded CI machine may be
    /// slow); silence only 300 ms, since it is expected and the whole wait is spent.
    func answered(_ address: SocketEndpoint) async -> Bool {
        await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address, timeoutMilliseconds: 2000) != nil }
    }

    func silent(_ address: SocketEndpoint) async -> Bool {
        await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address, timeoutMilliseconds: 300) == nil }
    }

    @Test("Access lists, rate limits and the log level change live; a bad file keeps the running configuration; the rest waits for a restart")
    func reload() async throws {
        let file = ConfigPath()
        try file.write(Self.base)
        let initial = try ConfigFile.load(path: file.path)
        let resolved = try initial.resolve()
        let level = LiveLogLevel(resolved.logLevel)
        try await withServer(resolved.configuration) { server in
            let ntp = server.addresses(.ntp)[0]
            let daytime = server.addresses(.daytime)[0]
            let reloader = ReloadService(server: server, path: file.path, flags: TockdSettings(), running: initial, logLevel: level, logger: quietLogger)
            #expect(await answered(ntp))

            // Deny loopback for NTP only, and raise the log level.
            try file.write(Self.base + "[access]\ndeny = [\"ntp=127.0.0.0/8\"]\n[server]\nlog_level = \"debug\"\n")
            #expect(reloader.reload() == .applied(changedServices: [.ntp], logLevel: .debug, needRestart: []))
            #expect(level.level == .debug)
            #expect(await silent(ntp), "denied after reload")
            #expect(server.datagramStatistics(.ntp).drops[DropReason(label: "denied")!, default: 0] >= 1)
            let daytimeReply = await blocking { udpExchange([0], to: daytime, timeoutMilliseconds: 1000) }
            #expect(daytimeReply != nil, "Daytime is not denied")

            // A file with an error changes nothing.
            try file.write(Self.base + "[access]\ndeny = []\n[rate_limit]\nburst = 300\n")
            guard case .rejected(let why) = reloader.reload() else {
                Issue.record("a bad file was applied")
                return
            }
            #expect(why.contains("rate_limit.burst = 300: out of range"), "\(why)")
            #expect(await silent(ntp), "still denied: the running configuration stays")
            #expect(level.level == .debug)

            // Listener changes need a restart; the access change applies.
            try file.write(Self.base.replacingOccurrences(of: "workers = 2", with: "workers = 3"))
            #expect(reloader.reload() == .applied(changedServices: [.ntp], logLevel: .info, needRestart: [.workers]))
            #expect(await answered(ntp))
            #expect(level.level == .info)

            // A rate limit switched on: one reply per 4096 s, no leak.
            try file.write(Self.base + "[rate_limit]\nenabled = true\ninterval = 12\nburst = 1\nleak = 0\n")
            #expect(reloader.reload() == .applied(changedServices: [.ntp, .daytime, .time, .ntsKE, .roughtime], logLevel: .info, needRestart: []))
            let limiter = try #require(server.limiters[.ntp])
            #expect(await answered(ntp))
            #expect(await silent(ntp), "the second request in 4096 s is limited")
            #expect(server.datagramStatistics(.ntp).drops[DropReason(label: "rate_limited")!, default: 0] >= 1)

            // An access-only change keeps the clients' buckets.
            try file.write(Self.base + "[rate_limit]\nenabled = true\ninterval = 12\nburst = 1\nleak = 0\n[access]\ndeny = [\"192.0.2.0/24\"]\n")
            #expect(reloader.reload() == .applied(changedServices: [.ntp, .daytime, .time, .ntsKE, .roughtime], logLevel: .info, needRestart: []))
            #expect(server.limiters[.ntp] === limiter, "same rate limit, same table")
            #expect(await silent(ntp), "still limited: the bucket survived the reload")

            // Rate limit off again.
            try file.write(Self.base)
            _ = reloader.reload()
            #expect(server.limiters.isEmpty)
            #expect(await answered(ntp))
        }
    }

    @Test("Without a configuration file, a reload changes nothing")
    func noFile() async throws {
        let configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        try await withServer(configuration) { server in
            let before = server.currentPolicies
            let reloader = ReloadService(server: server, path: nil, flags: TockdSettings(), running: TockdSettings(), logLevel: LiveLogLevel(.info), logger: quietLogger)
            #expect(reloader.reload() == .rejected("no configuration file"))
            #expect(server.currentPolicies == before)
        }
    }
}
