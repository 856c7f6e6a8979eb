import Foundation
import Logging
import ServiceLifecycle
import Testing
import TockClient
import TockConfig
import TockProtocol
import TockServer
import TockSockets

/// The metrics endpoint: Prometheus text and the status document, scraped over real HTTP.
@Suite("Metrics and status over HTTP")
struct MetricsTests {
    /// Value of the sample `name{labels}` in Prometheus text, or nil.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    /// Runs an endpoint for `server` on 127.0.0.1:0 while `body` runs.
    static func withEndpoint(_ server: TockServer, _ body: (SocketEndpoint) async throws -> Void) async throws {
        try await withEndpoint(try StatusEndpoint(address: SocketEndpoint(ip: "127.0.0.1", port: 0)!, server: server, logger: quietLogger)) { endpoint in
            try await body(endpoint.address)
        }
    }

    static func withEndpoint(_ endpoint: StatusEndpoint, _ body: (StatusEndpoint) async throws -> Void) async throws {
        let group = ServiceGroup(configuration: .init(services: [.init(service: endpoint)], logger: quietLogger))
        let task = Task { try await group.run() }
        // Ready when it answers.
        let address = endpoint.address
        _ = await eventually { (try? StatusQuery(timeoutNanoseconds: 200_000_000).get("/metrics", from: address)) != nil }
        do {
            try await body(endpoint)
        } catch {
            await group.triggerGracefulShutdown()
            try? await task.value
            throw error
        }
        await group.triggerGracefulShutdown()
        try await task.value
    }

    @Test("Scraped during a load, counters only grow; after it they match the load's counts exactly")
    func scrapeDuringLoad() async throws {
        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.ntpListeners = [SocketEndpoint(ip: "127.0.0.1", port: 0)!]
        try await withServer(configuration) { server in
            try await Self.withEndpoint(server) { endpoint in
                let before = try await blockingThrows { try StatusQuery().get("/metrics", from: endpoint) }
                let baseRequests = Self.sample(String(decoding: before.1, as: UTF8.self), #"tockd_requests_total{protocol="ntp",transport="udp"}"#) ?? 0
                let baseReplies = Self.sample(String(decoding: before.1, as: UTF8.self), #"tockd_replies_total{protocol="ntp",transport="udp"}"#) ?? 0

                var load = LoadConfiguration(target: server.addresses(.ntp)[0])
                load.clients = 8
                load.window = 2
                load.durationSeconds = 1.5
                let generator = LoadGenerator(configuration: load)
                let loadDone = Flag()
                let reportTask = Task {
                    defer { loadDone.set() }
                    return try await blockingThrows { try generator.run() }
                }
                // Scrape while the load runs. Before each scrape, wait until the generator has
                // more replies than the last scrape counted requests, plus one worker batch (64:
                // a batch's counts are published just after its replies are sent): the server
                // has then published more requests than the last scrape saw, so every scrape
                // must show a larger count however slowly a loaded machine runs the generator.
                var seen: [Double] = []
                for _ in 0..<10 {
                    let counted = UInt64(max(0, (seen.last ?? baseRequests) - baseRequests))
                    let progressed = await eventually(timeout: .seconds(30)) { generator.progress.answered > counted + 64 || loadDone.isSet }
                    guard progressed, !loadDone.isSet else { break }
                    let (code, body) = try await blockingThrows { try StatusQuery().get("/metrics", from: endpoint) }
                    #expect(code == 200)
                    let text = String(decoding: body, as: UTF8.self)
                    if let v = Self.sample(text, #"tockd_requests_total{protocol="ntp",transport="udp"}"#) { seen.append(v) }
                }
                let report = try await reportTask.value
                #expect(report.sent > 1000 && report.invalid == 0, "\(report.sent) sent, \(report.invalid) invalid")
                #expect(seen.count >= 2, "scrapes during the load: \(seen)")
                #expect(seen == seen.sorted(), "counters only grow: \(seen)")
                #expect(Set(seen).count == seen.count, "every scrape after more replies saw more requests: \(seen)")

                // Workers publish once per batch: wait until the last batch is in.
                var text = ""
                let settled = await eventually(timeout: .seconds(3)) {
                    guard let (_, body) = try? StatusQuery().get("/metrics", from: endpoint) else { return false }
                    text = String(decoding: body, as: UTF8.self)
                    return Self.sample(text, #"tockd_requests_total{protocol="ntp",transport="udp"}"#) == baseRequests + Double(report.sent)
                }
                #expect(settled, "requests_total \(String(describing: Self.sample(text, #"tockd_requests_total{protocol="ntp",transport="udp"}"#))) vs \(baseRequests) + \(report.sent) sent")
                let replies = Self.sample(text, #"tockd_replies_total{protocol="ntp",transport="udp"}"#) ?? -1
                #expect(replies - baseReplies == Double(report.answered + report.lost), "every request answered: \(replies - baseReplies) replies, \(report.answered) answered, \(report.lost) lost")
                #expect(Self.sample(text, #"tockd_drops_total{protocol="ntp",transport="udp",reason="malformed"}"#) == 0)
                let workers = text.split(separator: "\n").filter { $0.hasPrefix("tockd_worker_requests_total{protocol=\"ntp\"") }
                #expect(workers.count == 2, "one series per worker: \(workers)")
                let workerSum = workers.compactMap { Double($0.split(separator: " ").last!) }.reduce(0, +)
                #expect(workerSum == baseRequests + Double(report.sent))
                #expect(Self.sample(text, "tockd_clock_synchronized") == 1)
                #expect(Self.sample(text, "tockd_clock_stratum") == 10)
                #expect(Self.sample(text, "tockd_clock_leap") == 0)
                #expect(text.contains("# TYPE tockd_requests_total counter"))
            }
        }
    }

    @Test("Drops by reason, kisses and the busiest clients appear in /metrics and /status")
    func dropsAndClients() async throws {
        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.ntpListeners = [SocketEndpoint(ip: "127.0.0.1", port: 0)!]
        try await withServer(configuration) { server in
            let ntp = server.addresses(.ntp)[0]
            // The limit goes on once the server is up (as a reload would put it on), so the
            // readiness probe cannot use up the burst, and the table starts empty.
            let limited = ServicePolicy(rateLimit: RateLimitPolicy(intervalLog2: 12, burst: 2, leakLog2: 0, kissOfDeath: true))
            var next = server.currentPolicies
            next[.ntp] = limited
            server.updatePolicies(next)
            // Workers refresh their policy after each receive, before handling the batch, so
            // the next request already meets the limit.
            #expect(server.limiters[.ntp] != nil)
            try await Self.withEndpoint(server) { endpoint in
                // 3 malformed, 2 in mode 1, then 10 client requests: 2 answered, 1 kissed, 7 dropped.
                await blocking {
                    for _ in 0..<3 { _ = udpExchange([1, 2, 3], to: ntp, timeoutMilliseconds: 50) }
                    for _ in 0..<2 { _ = udpExchange(ntpRequest(version: 4, mode: 1), to: ntp, timeoutMilliseconds: 50) }
                    for _ in 0..<10 { _ = udpExchange(ntpRequest(version: 4, mode: 3), to: ntp, timeoutMilliseconds: 50) }
                }
                var text = ""
                let settled = await eventually(timeout: .seconds(3)) {
                    guard let (_, body) = try? StatusQuery().get("/metrics", from: endpoint) else { return false }
                    text = String(decoding: body, as: UTF8.self)
                    return Self.sample(text, #"tockd_requests_total{protocol="ntp",transport="udp"}"#).map { $0 >= 15 } ?? false
                }
                #expect(settled)
                func value(_ series: String) -> Double? { Self.sample(text, series) }
                // The readiness probe of withServer sent requests too, from other ports of the
                // same address: count relative to the status document rather than absolutely.
                let status = try await blockingThrows { try StatusQuery(clients: 5).run(endpoint: endpoint) }
                let udp = try #require(status.services.first { $0.name == "ntp" && $0.transport == "udp" })
                #expect(value(#"tockd_drops_total{protocol="ntp",transport="udp",reason="too_short"}"#) == 3)
                #expect(value(#"tockd_drops_total{protocol="ntp",transport="udp",reason="not_client_mode"}"#) == 2)
                #expect(value(#"tockd_kisses_of_death_total{protocol="ntp",transport="udp"}"#) == 1)
                #expect(udp.drops["too_short"] == 3 && udp.drops["not_client_mode"] == 2 && udp.kissesOfDeath == 1)
                #expect(Double(udp.drops["rate_limited"] ?? 0) == value(#"tockd_drops_total{protocol="ntp",transport="udp",reason="rate_limited"}"#))
                #expect(udp.requests == udp.replies + udp.drops.values.reduce(0, +), "every request is answered or dropped for a reason")
                let group = try #require(status.clients.first { $0.name == "ntp" })
                #expect(group.tracked == 1 && group.capacity == 131_072)
                let client = try #require(group.busiest.first)
                #expect(client.prefix == "127.0.0.1")
                // One request at a time, so the counts are exact: the 10 client requests, of
                // which all but the burst of 2 are limited (the malformed and mode-1 packets
                // never reach the limiter).
                #expect(client.requests == 10, "\(client)")
                #expect(client.limited == 8, "\(client)")
                #expect(client.limited == udp.drops["rate_limited", default: 0] + udp.kissesOfDeath, "every limited request was dropped or kissed")
                #expect(client.tokens == 0)
                #expect(value(#"tockd_rate_limit_clients{protocol="ntp"}"#) == 1)

                // The human rendering by tock status, from the real binary.
                let (code, _) = try await blockingThrows { try StatusQuery().get("/nowhere", from: endpoint) }
                #expect(code == 404)
            }
        }
    }

    @Test("Idle, dribbling and surplus connections to the metrics endpoint are closed; TCP time service and later scrapes go on")
    func connectionFlood() async throws {
        try await withServer(.loopback(ntp: false, daytime: false)) { server in
            let endpoint = try StatusEndpoint(
                address: SocketEndpoint(ip: "127.0.0.1", port: 0)!, server: server, logger: quietLogger,
                connectionLimit: 8, idleTimeout: .milliseconds(400), connectionLifetime: .seconds(2)
            )
            try await Self.withEndpoint(endpoint) { endpoint in
                let address = endpoint.address
                // 20 connections that send nothing: 8 are held (until idle), 12 closed at once.
                let fds = await blocking { (0..<20).map { _ in tcpConnect(to: address) } }
                defer { for fd in fds where fd >= 0 { close(fd) } }
                #expect(fds.allSatisfy { $0 >= 0 })
                let surplusClosed = await eventually(timeout: .seconds(10)) { endpoint.counters.drops(.connectionLimit) == 12 }
                #expect(surplusClosed, "closed over the cap: \(endpoint.counters.drops(.connectionLimit))")
                #expect(endpoint.counters.active.load(ordering: .relaxed) <= 8)
                // The Daytime/Time TCP service is not affected.
                let time = await blocking { tcpReadAll(from: server.addresses(.time)[0]) }
                #expect(time.bytes.count == 4 && time.end == .endOfFile)
                // Every held connection is closed by the server once idle (EOF, not our close).
                let ends = await blocking { fds.map { tcpRead($0, timeoutMilliseconds: 5000).end } }
                #expect(ends.allSatisfy { $0 == .endOfFile || $0 == .reset }, "\(ends)")
                #expect(await eventually(timeout: .seconds(5)) { endpoint.counters.active.load(ordering: .relaxed) == 0 })

                // Half a request line, then nothing: closed when idle.
                let half = await blocking { () -> StreamEnd in
                    let fd = tcpConnect(to: address)
                    defer { close(fd) }
                    _ = send(fd, Array("GET /met".utf8), 8, Int32(MSG_NOSIGNAL))
                    return tcpRead(fd, timeoutMilliseconds: 5000).end
                }
                #expect(half == .endOfFile || half == .reset)
                // One byte every 200 ms (never idle for 400 ms): closed when its lifetime is up.
                let dribble = await blocking { () -> (Int, Bool) in
                    let fd = tcpConnect(to: address)
                    defer { close(fd) }
                    let start = SystemClock.monotonicNanoseconds()
                    for byte in Array("GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8) {
                        if send(fd, [byte], 1, Int32(MSG_NOSIGNAL)) != 1 { break }
                        if tcpRead(fd, timeoutMilliseconds: 200).end != .timedOut { break }
                    }
                    let closed = tcpRead(fd, timeoutMilliseconds: 3000).end != .timedOut
                    return (Int((SystemClock.monotonicNanoseconds() - start) / 1_000_000), closed)
                }
                #expect(dribble.1, "a dribbling client was never closed")
                #expect(dribble.0 >= 1500 && dribble.0 < 6000, "closed after \(dribble.0) ms; the lifetime is 2 s")
                // And the endpoint still answers.
                let (code, _) = try await blockingThrows { try StatusQuery().get("/metrics", from: address) }
                #expect(code == 200)
            }
        }
    }
}
