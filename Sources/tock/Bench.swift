import ArgumentParser
import Foundation
import Glibc
import Histogram
import TockClient
import TockCrypto
import TockSockets

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test an NTP, Time or Daytime server and validate every reply.",
        discussion: """
            Closed loop (default): --clients sockets each keep --window requests in flight; the \
            result is the server's capacity at that concurrency. Open loop: --rate R sends R \
            requests per second whatever the replies, one per client in turn, as many clients \
            polling would; with --step S it runs again at R+S, R+2S, ... (each for --duration) \
            until loss exceeds --max-loss or --steps runs are done.

            Every NTP reply is checked: mode 4, origin equal to the request's random transmit \
            timestamp, T3 ≥ T2, T2 and T3 within 1 s of our clock. On loopback client and server \
            share a clock, so the timestamp error |((T2−T1)+(T3−T4))/2| (T4 from the kernel's \
            receive timestamp) measures how far the server's T2/T3 are from the truth. On IPv4 \
            loopback each client has its own source address in 127.0.0.0/8. With \
            --tx-timestamps T1 is the kernel's software transmit timestamp of the request, as \
            chronyd takes it, so the error is the server's and not the generator's send path \
            (with --nts too).

            --interleaved (with --rate, or --window 1: one request in flight per client) speaks \
            the interleaved mode (RFC 9769, chrony's xleave) as a chronyd client does: each request's origin is the receive timestamp of the client's last \
            reply, and a server that answers interleaved returns the kernel's transmit timestamp \
            of that reply; the error is then the previous exchange's, from kernel timestamps at \
            both ends. Only interleaved replies count towards the error, and the xleave% column \
            says how many replies were interleaved (a server without the mode answers none).

            Reports answered/s, loss, invalid and kiss-o'-death replies, RTT percentiles and the \
            timestamp error. Use only against your own servers.

            With --nts (RFC 8915), SERVER is the NTS-KE server (default port 4460): before each \
            run every client socket makes its own key establishment (verified as tock query \
            --nts does, --ca FILE for a private CA), and the load goes to the NTP server and \
            port the responses name. Each request spends a cookie from its client's supply and \
            asks for one back (more after losses), and is sealed under the client's C2S key; \
            every reply is authenticated (its cookies refill the supply) before its time is \
            checked. Extra columns: replies that were not authentic, and NTS NAKs.
            """
    )

    @Argument(help: "The server: HOST:PORT; with --nts, the NTS-KE server, HOST[:PORT].")
    var server: String

    @Option(name: .long, help: "Protocol: ntp, time, daytime or roughtime (1024-byte requests; needs --public-key).")
    var `protocol`: LoadProtocolName = .ntp

    @Option(help: "Client sockets (1-4096).")
    var clients: Int = 64

    @Option(help: "Closed loop: requests in flight per client (1-1000).")
    var window: Int = 4

    @Option(help: "Open loop: requests per second.")
    var rate: Int?

    @Option(help: "Open loop: add this many requests per second after each step.")
    var step: Int?

    @Option(help: "Open loop with --step: most steps to run (1-100).")
    var steps: Int = 10

    @Option(help: "Open loop with --step: stop once loss exceeds this percentage.")
    var maxLoss: Double = 0.1

    @Option(help: "Seconds to run (each step, in open loop), 0.1-3600.")
    var duration: Double = 5

    @Option(help: "Seconds before an unanswered request counts as lost.")
    var timeout: Double = 1

    @Option(help: "Load-generator threads (1-64).")
    var threads: Int = 1

    @Flag(help: "Load with NTS-protected NTP (RFC 8915): SERVER is the NTS-KE server; one key establishment per client socket before each run.")
    var nts = false

    @Option(name: .customLong("ca"), help: ArgumentHelp("With --nts: trust the CA certificates in this PEM file instead of the system's.", valueName: "file"))
    var caFile: String?

    @Flag(name: .customLong("tx-timestamps"), help: "NTP and NTS: T1 from the kernel's software transmit timestamp of each request (SO_TIMESTAMPING), as chronyd's client takes it, not the clock read before sending.")
    var transmitTimestamps = false

    @Flag(help: "NTP: speak the interleaved mode (RFC 9769, chrony's xleave); the error is then from interleaved replies only. Implies --tx-timestamps.")
    var interleaved = false

    @Flag(help: "Print JSON (one object per step) instead of text.")
    var json = false

    enum LoadProtocolName: String, ExpressibleByArgument, CaseIterable {
        case ntp, time, daytime, roughtime
    }

    @Option(name: .customLong("public-key"), help: ArgumentHelp("With --protocol roughtime: the server's long-term Ed25519 public key, base64 or hex.", valueName: "key"))
    var publicKey: String?

    @Option(help: "With --protocol roughtime: verify every Nth reply in full (signatures, Merkle proof); the others are matched by nonce. A full check costs two Ed25519 verifications, far more than the server spends per request, so checking many would measure the generator.")
    var verifyEvery: Int = 256

    func validate() throws {
        guard (1...4096).contains(clients) else { throw ValidationError("--clients must be 1-4096") }
        guard (1...1000).contains(window) else { throw ValidationError("--window must be 1-1000") }
        guard (0.1...3600).contains(duration) else { throw ValidationError("--duration must be 0.1-3600 seconds") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1-64") }
        guard (1...100).contains(steps) else { throw ValidationError("--steps must be 1-100") }
        if let rate, rate < 1 { throw ValidationError("--rate must be at least 1") }
        if step != nil, rate == nil { throw ValidationError("--step needs --rate") }
        if transmitTimestamps || interleaved {
            guard `protocol` == .ntp else { throw ValidationError("--tx-timestamps and --interleaved apply to NTP") }
            // RFC 8915 §5.7: NTS-protected requests are answered in basic mode.
            guard !(interleaved && nts) else { throw ValidationError("--interleaved applies to plain NTP: NTS-protected requests get basic replies") }
        }
        if interleaved, rate == nil, window > 1 {
            // Each request asks about the client's last reply: with several in flight, most
            // would ask about a reply the server has since superseded, and get basic replies.
            throw ValidationError("--interleaved needs one request in flight per client: use --rate, or --window 1")
        }
        if nts {
            guard `protocol` == .ntp else { throw ValidationError("--nts protects NTP only; drop --protocol \(`protocol`.rawValue)") }
        } else if caFile != nil {
            throw ValidationError("--ca applies to --nts (the NTS-KE server's certificate)")
        }
        if `protocol` == .roughtime {
            guard let publicKey, RoughtimeKeyText.decode(publicKey) != nil else {
                throw ValidationError("--protocol roughtime needs the server's --public-key (32 bytes, base64 or hex)")
            }
            guard verifyEvery >= 1 else { throw ValidationError("--verify-every must be at least 1") }
        } else if publicKey != nil {
            throw ValidationError("--public-key applies to --protocol roughtime")
        }
        if let caFile, access(caFile, R_OK) != 0 {
            throw ValidationError("--ca \(caFile): \(String(cString: strerror(errno)))")
        }
    }

    func run() throws {
        let parsed: HostAndPort
        do {
            parsed = try HostAndPort(parsing: server, bareNumberIsPort: false)
        } catch {
            throw ValidationError(error.description)
        }
        guard let host = parsed.host, let port = parsed.port ?? (nts ? NTSKEClient.defaultPort : nil) else { throw ValidationError("bench needs HOST:PORT, got '\(server)'") }
        var target: SocketEndpoint
        var keClient: NTSKEClient?
        var keTarget: SocketEndpoint?
        do {
            target = try Resolver.resolve(host, port: port)[0]
            if nts {
                // One session first, to learn where NTP goes and that the server works at all.
                let client = NTSKEClient(host: host, caFile: caFile, timeoutNanoseconds: Int64(max(timeout, 5) * 1e9))
                let probe = try client.establish(with: target)
                keClient = client
                let keServer = target
                target = try probe.ntpEndpoint()
                if !json {
                    print("NTS-KE \(keServer): \(probe.algorithm), \(probe.cookies.count) cookies per key establishment, NTP at \(target)")
                }
                keTarget = keServer
            }
        } catch {
            FileHandleStandardError.write("tock: \(error.description)\n")
            throw ExitCode(QueryExit(error).rawValue)
        }
        var configuration = LoadConfiguration(target: target)
        configuration.protocol = LoadProtocol(rawValue: `protocol`.rawValue)!
        configuration.clients = clients
        configuration.window = window
        configuration.durationSeconds = duration
        configuration.timeoutNanoseconds = Int64(timeout * 1e9)
        configuration.threads = threads
        configuration.roughtimePublicKey = RoughtimeKeyText.decode(publicKey ?? "") ?? []
        configuration.roughtimeVerifyEvery = verifyEvery
        configuration.kernelTransmitTimestamps = transmitTimestamps || interleaved
        configuration.interleaved = interleaved
        let columns = BenchReport.Columns(nts: nts, interleaved: interleaved)
        if !json {
            let t1 = configuration.kernelTransmitTimestamps ? ", T1 from kernel TX timestamps" : ""
            print("target \(target) (\(`protocol`.rawValue)\(nts ? ", NTS" : "")\(interleaved ? ", interleaved" : "")), \(clients) clients, " + (rate == nil ? "closed loop, window \(window)" : "open loop") + t1)
            print(BenchReport.header(columns))
        }
        var currentRate = rate
        for _ in 0..<(step == nil ? 1 : steps) {
            configuration.rate = currentRate
            if let keClient, let keTarget {
                // Fresh sessions for every run, outside its timing.
                do {
                    configuration.ntsSessions = try keClient.establish(with: keTarget, count: clients)
                } catch {
                    FileHandleStandardError.write("tock: \(error.description)\n")
                    throw ExitCode(QueryExit(error).rawValue)
                }
            }
            let report = try measure(configuration)
            print(json ? BenchReport.json(report, rate: currentRate, columns, kernelT1: configuration.kernelTransmitTimestamps) : BenchReport.row(report, rate: currentRate, columns))
            guard let s = step, let r = currentRate, report.lossPercent <= maxLoss else { break }
            currentRate = r + s
        }
    }

    func measure(_ configuration: LoadConfiguration) throws -> LoadReport {
        let generator = LoadGenerator(configuration: configuration)
        let interactive = isatty(2) != 0 && !json
        let progress = interactive ? WorkerThread.start(name: "progress") {
            let start = SystemClock.monotonicNanoseconds()
            var last = (sent: UInt64(0), answered: UInt64(0))
            var lastTime = start
            while SystemClock.monotonicNanoseconds() - start < Int64(configuration.durationSeconds * 1e9) - 500_000_000 {
                usleep(1_000_000)
                let now = generator.progress
                let t = SystemClock.monotonicNanoseconds()
                let rate = Double(now.answered - last.answered) / (Double(t - lastTime) / 1e9)
                FileHandleStandardError.write("\r\(Int(Double(t - start) / 1e9)) s: sent \(now.sent), answered \(now.answered), \(Int(rate))/s   ")
                last = now
                lastTime = t
            }
            FileHandleStandardError.write("\r\u{1B}[K")
        } : nil
        defer { progress?.join() }
        do {
            return try generator.run()
        } catch {
            FileHandleStandardError.write("tock: \(error.description)\n")
            throw ExitCode(QueryExit(error).rawValue)
        }
    }
}

/// Renders load-test results.
enum BenchReport {
    static let widths = [10, 10, 12, 8, 8, 6, 10, 10, 10, 12, 12, 8, 6]
    static let header = header(Columns())

    /// The optional columns: NTS adds replies that were not authentic and NAKs; interleaved
    /// mode the share of replies that were interleaved.
    struct Columns {
        var nts = false
        var interleaved = false
    }

    /// The column titles.
    static func header(_ columns: Columns) -> String {
        line(["rate", "sent/s", "answered/s", "loss%", "invalid", "kod", "rtt p50", "rtt p99", "rtt p999", "|err| mean", "|err| p99"]
             + (columns.nts ? ["unauth", "nak"] : []) + (columns.interleaved ? ["xleave%"] : []))
    }

    /// Percentage of replies that were interleaved.
    static func interleavedPercent(_ r: LoadReport) -> Double {
        r.answered > 0 ? 100 * Double(r.interleavedReplies) / Double(r.answered) : 0
    }

    static func line(_ columns: [String]) -> String {
        zip(columns, widths).map { String(repeating: " ", count: max(0, $1 - $0.count)) + $0 }.joined(separator: " ")
    }

    static func microseconds(_ ns: Double) -> String {
        String(format: "%.1fµs", ns / 1000)
    }

    static func row(_ r: LoadReport, rate: Int?, _ optional: Columns = Columns()) -> String {
        let columns: [String] = [
            rate.map(String.init) ?? "closed",
            String(format: "%.0f", r.seconds > 0 ? Double(r.sent) / r.seconds : 0),
            String(format: "%.0f", r.answeredPerSecond),
            String(format: "%.3f", r.lossPercent),
            String(r.invalid),
            String(r.kissOfDeath),
            microseconds(Double(r.rtt.valueAtPercentile(50))),
            microseconds(Double(r.rtt.valueAtPercentile(99))),
            microseconds(Double(r.rtt.valueAtPercentile(99.9))),
            r.timestampError.totalCount > 0 ? microseconds(r.timestampError.mean) : "-",
            r.timestampError.totalCount > 0 ? microseconds(Double(r.timestampError.valueAtPercentile(99))) : "-",
        ] + (optional.nts ? [String(r.unauthenticated), String(r.ntsNAK)] : [])
          + (optional.interleaved ? [String(format: "%.1f", interleavedPercent(r))] : [])
        return line(columns)
    }

    static func json(_ r: LoadReport, rate: Int?, _ optional: Columns = Columns(), kernelT1: Bool = false) -> String {
        var fields: [(String, String)] = [
            ("rate", rate.map(String.init) ?? "null"),
            ("seconds", String(format: "%.3f", r.seconds)),
            ("sent", "\(r.sent)"),
            ("answered", "\(r.answered)"),
            ("answered_per_second", String(format: "%.1f", r.answeredPerSecond)),
            ("loss_percent", String(format: "%.4f", r.lossPercent)),
            ("lost", "\(r.lost)"),
            ("invalid", "\(r.invalid)"),
            ("kiss_of_death", "\(r.kissOfDeath)"),
            ("unsynchronized", "\(r.unsynchronized)"),
            ("rtt_p50_us", String(format: "%.2f", Double(r.rtt.valueAtPercentile(50)) / 1000)),
            ("rtt_p99_us", String(format: "%.2f", Double(r.rtt.valueAtPercentile(99)) / 1000)),
            ("rtt_p999_us", String(format: "%.2f", Double(r.rtt.valueAtPercentile(99.9)) / 1000)),
            ("timestamp_error_mean_us", String(format: "%.3f", r.timestampError.totalCount > 0 ? r.timestampError.mean / 1000 : 0)),
            ("timestamp_error_p99_us", String(format: "%.3f", Double(r.timestampError.valueAtPercentile(99)) / 1000)),
            ("timestamp_offset_mean_us", String(format: "%.3f", r.timestampOffsetMean / 1000)),
        ]
        if r.verified > 0 { fields.append(("roughtime_verified", "\(r.verified)")) }
        if kernelT1 {
            fields += [("t1", "\"kernel\""), ("missing_transmit_timestamps", "\(r.missingTransmitTimestamps)")]
        }
        if optional.interleaved {
            fields += [("interleaved_replies", "\(r.interleavedReplies)"), ("interleaved_percent", String(format: "%.2f", interleavedPercent(r)))]
        }
        if optional.nts {
            fields += [
                ("nts", "true"),
                ("authenticated", "\(r.authenticated)"),
                ("unauthenticated", "\(r.unauthenticated)"),
                ("nts_nak", "\(r.ntsNAK)"),
                ("cookie_reuses", "\(r.cookieReuses)"),
            ]
        }
        return QueryReport.object(fields)
    }
}

