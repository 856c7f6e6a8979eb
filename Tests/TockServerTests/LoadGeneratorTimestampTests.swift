import Foundation
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets

/// `tock bench`'s client timestamps against a real server: T1 from the kernel's transmit
/// timestamp (`--tx-timestamps`) and the interleaved client mode (`--interleaved`, RFC 9769),
/// which `benchmarks/accuracy` measures with.
@Suite("Load generator: kernel transmit timestamps and interleaved mode")
struct LoadGeneratorTimestampTests {
    /// Open loop, few clients on IPv4 loopback (each its own source address, so each has its
    /// own entry in the server's interleaved log): a request every 10 ms per client.
    static func load(_ server: TockServer, interleaved: Bool) -> LoadConfiguration {
        var load = LoadConfiguration(target: server.addresses(.ntp).first { !$0.isIPv6 }!)
        load.clients = 4
        load.rate = 400
        load.durationSeconds = 1
        load.kernelTransmitTimestamps = true
        load.interleaved = interleaved
        return load
    }

    static func run(_ load: LoadConfiguration) async throws -> LoadReport {
        try await blockingThrows { try LoadGenerator(configuration: load).run() }
    }

    @Test("Every answered request has its kernel T1, and every reply gives an error sample")
    func kernelTransmitTimestamps() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            let report = try await Self.run(Self.load(server, interleaved: false))
            #expect(report.answered >= 200, "answered \(report.answered)")
            #expect(report.invalid == 0)
            #expect(report.missingTransmitTimestamps == 0)
            #expect(report.timestampError.totalCount == report.answered)
            #expect(report.interleavedReplies == 0, "basic mode asks for nothing else")
            // Client and server share the clock: the error is the server's send path at most,
            // far under the 1 s that marks a reply invalid.
            #expect(report.timestampError.mean < 50_000_000, "mean |error| \(report.timestampError.mean) ns")
        }
    }

    @Test("In interleaved mode a client's replies after its first two are interleaved, each completing the previous exchange")
    func interleavedMode() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            let report = try await Self.run(Self.load(server, interleaved: true))
            #expect(report.answered >= 200, "answered \(report.answered)")
            #expect(report.invalid == 0)
            #expect(report.missingTransmitTimestamps == 0)
            // Per client: the first reply is basic, the second answers the first request that
            // showed intent (basic: that reply's kernel timestamp was never taken); a few more
            // may overtake the server's read of a timestamp on a busy machine.
            #expect(report.interleavedReplies * 10 >= report.answered * 8, "\(report.interleavedReplies) of \(report.answered) interleaved")
            #expect(report.timestampError.totalCount > 0)
            #expect(report.timestampError.totalCount <= report.interleavedReplies)
            #expect(report.timestampError.mean < 50_000_000, "mean |error| \(report.timestampError.mean) ns")
        }
    }

    @Test("Against a server with interleaved mode off, every reply is basic and no error is recorded")
    func serverWithoutInterleavedMode() async throws {
        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.ntpInterleaved = false
        try await withServer(configuration) { server in
            let report = try await Self.run(Self.load(server, interleaved: true))
            #expect(report.answered >= 200, "answered \(report.answered)")
            #expect(report.invalid == 0)
            #expect(report.interleavedReplies == 0)
            #expect(report.timestampError.totalCount == 0, "only interleaved exchanges are measured")
        }
    }
}
