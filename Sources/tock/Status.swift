import ArgumentParser
import Foundation
import TockClient
import TockCrypto
import TockProtocol
import TockSockets

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a tockd's live figures and busiest clients (from its --metrics endpoint).",
        discussion: """
            Reads GET /status from the HTTP endpoint tockd serves with --metrics (or [metrics] \
            listen in its configuration file) and prints what chronyc serverstats and chronyc \
            clients print for chronyd: requests, replies, kisses-o'-death and drops by reason for \
            each protocol and transport, the load on each worker thread, the clock state, and the \
            busiest clients of each rate-limited service (clients are tracked only with \
            --rate-limit).

            Exit status: 0 on success, 2 if the endpoint does not answer, 5 if the reply is not a \
            tockd status document, 7 on a network error, 64 on a usage error.

            Examples:
              tock status
              tock status 127.0.0.1:9123 --clients 20
              tock status '[::1]:9123' --json
            """
    )

    @Argument(help: "The metrics endpoint tockd serves with --metrics: HOST:PORT.")
    var endpoint: String = "127.0.0.1:9123"

    @Option(help: "Busiest clients to list per rate-limited service, 0-1000.")
    var clients: Int = 10

    @Option(help: "Seconds to wait for the endpoint.")
    var timeout: Double = 2

    @Flag(help: "Print the status document as JSON.")
    var json = false

    func validate() throws {
        guard (0...1000).contains(clients) else { throw ValidationError("--clients must be 0-1000, got \(clients)") }
        guard timeout > 0, timeout <= 60 else { throw ValidationError("--timeout must be in (0, 60] seconds, got \(timeout)") }
    }

    func run() throws {
        let target: SocketEndpoint
        let status: ServerStatus
        do {
            let parsed = try HostAndPort(parsing: endpoint, bareNumberIsPort: true)
            target = try Resolver.resolve(parsed.host ?? "127.0.0.1", port: parsed.port ?? 9123)[0]
            status = try StatusQuery(clients: clients, timeoutNanoseconds: Int64(timeout * 1e9)).run(endpoint: target)
        } catch let error as ClientError {
            var hint = ""
            if case .network = error {
                hint = "\ntock status: tockd serves its status only when started with --metrics \(endpoint) (or [metrics] listen = \"\(endpoint)\" in its configuration file); is it running with that?"
            }
            FileHandleStandardError.write("tock status: \(error)\(hint)\n")
            throw ExitCode(QueryExit(error).rawValue)
        } catch {
            throw ValidationError("\(endpoint): \(error)")
        }
        if json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(Self.render(status, endpoint: target.description), terminator: "")
        }
    }

    /// The status as tables for a person.
    static func render(_ status: ServerStatus, endpoint: String) -> String {
        var out = ""
        func line(_ text: String = "") { out += text + "\n" }
        func pad(_ text: String, _ width: Int, right: Bool = true) -> String {
            let gap = String(repeating: " ", count: max(0, width - text.count))
            return right ? gap + text : text + gap
        }
        let c = status.clock
        line("tockd at \(endpoint), up \(duration(status.uptimeSeconds))")
        line("clock: \(c.synchronized ? "synchronised" : "NOT synchronised (replies say leap 3, stratum 0)"); source \(c.source), stratum \(c.stratum), leap \(c.leap), reference \(c.reference), root delay \(TimeFigure.seconds(Int64((c.rootDelaySeconds * 1e9).rounded()))) s, root dispersion \(TimeFigure.seconds(Int64((c.rootDispersionSeconds * 1e9).rounded()))) s")
        if let nts = status.nts {
            line("nts: cookies sealed under key \(nts.cookieKey) (a new key every \(nts.keyPeriodSeconds) s; cookies of the \(nts.keptPeriods) keys before it still accepted)")
        }
        if let r = status.roughtime {
            line("roughtime: " + roughtimeLine(r))
        }
        line()
        line(pad("service", 14, right: false) + pad("requests", 14) + pad("replies", 14) + pad("dropped", 12) + pad("KoD", 9) + pad("errors", 8) + "  drops by reason")
        for s in status.services {
            let dropped = s.drops.values.reduce(0, +)
            var reasons = s.drops.filter { $0.value > 0 }.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            let kissReasons = (s.kisses ?? [:]).filter { $0.value > 0 }.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            if !kissReasons.isEmpty { reasons += (reasons.isEmpty ? "" : "; ") + "KoD for " + kissReasons }
            line(pad("\(s.name)/\(s.transport)", 14, right: false) + pad("\(s.requests)", 14) + pad("\(s.replies)", 14) + pad("\(dropped)", 12) + pad("\(s.kissesOfDeath)", 9) + pad("\(s.errors)", 8) + "  " + (reasons.isEmpty ? "-" : reasons))
            if let evicted = s.evicted, evicted.values.contains(where: { $0 > 0 }) {
                let why = evicted.filter { $0.value > 0 }.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                line(pad("  evicted", 14, right: false) + pad("\(evicted.values.reduce(0, +))", 14) + pad("", 14) + "  connections closed to admit another: " + why)
            }
            if let authenticated = s.authenticated {
                line(pad("  of which NTS", 14, right: false) + pad("", 14) + pad("\(authenticated)", 14) + "  authenticated replies (RFC 8915)")
            }
            if let interleaved = s.interleaved {
                line(pad("  interleaved", 14, right: false) + pad("", 14) + pad("\(interleaved)", 14) + "  replies with the previous reply's kernel transmit time (RFC 9769)")
            }
            if let samples = s.transmitDelaySamples, let seconds = s.transmitDelaySeconds, samples > 0 {
                line(pad("  send delay", 14, right: false) + pad("", 14) + pad("\(samples)", 14)
                     + String(format: "  basic replies sampled: T3 read %.2f µs before the kernel sent them, on average (T3 corrected)", seconds / Double(samples) * 1e6))
            }
            if let received = s.hardwareReceiveTimestamps, let transmitted = s.hardwareTransmitTimestamps {
                line(pad("  hardware", 14, right: false) + pad("\(received)", 14) + pad("\(transmitted)", 14) + "  timestamps the network cards took: received (T2), sent (interleaved T3)")
            }
            if let signatures = s.signatures {
                // Batch sizes in bucket order ("1", "2-3", ... "64+"), not alphabetical.
                let sizes = (s.batchSizes ?? [:]).filter { $0.value > 0 }
                    .sorted { Int($0.key.prefix { $0.isNumber }) ?? 0 < Int($1.key.prefix { $0.isNumber }) ?? 0 }
                    .map { "\($0.key): \($0.value)" }.joined(separator: ", ")
                line(pad("  signatures", 14, right: false) + pad("", 14) + pad("\(signatures)", 14) + "  one per receive batch and version; batches by size: " + (sizes.isEmpty ? "-" : sizes))
            }
        }
        if let interfaces = status.hardwareTimestamping, !interfaces.isEmpty {
            line()
            for i in interfaces {
                if i.hardware, i.reason == nil {
                    let rate = i.rateErrorPPM.map { String(format: ", clock rate %+.3f ppm", $0) } ?? ""
                    line("hardware timestamping \(i.name): on (\(i.clock ?? "?"), receive filter \(i.receiveFilter ?? "?")\(rate), \(i.clockResets ?? 0) clock resets)")
                } else {
                    line("hardware timestamping \(i.name): software timestamps (\(i.reason ?? "unknown"))")
                }
            }
        }
        if !status.workers.isEmpty {
            line()
            line(pad("worker", 34, right: false) + pad("requests", 14) + pad("replies", 14) + pad("share", 8))
            var totals: [String: UInt64] = [:]
            for w in status.workers { totals[w.name + w.address, default: 0] += w.requests }
            for w in status.workers {
                let total = totals[w.name + w.address] ?? 0
                let share = total == 0 ? "-" : String(format: "%.1f%%", Double(w.requests) * 100 / Double(total))
                line(pad("\(w.name) \(w.address) #\(w.index)", 34, right: false) + pad("\(w.requests)", 14) + pad("\(w.replies)", 14) + pad(share, 8))
            }
        }
        line()
        if status.clients.isEmpty {
            line("clients: not tracked (rate limiting is off; tockd --rate-limit tracks them)")
        }
        for group in status.clients {
            line("\(group.name) clients: \(group.tracked) tracked of \(group.capacity)")
            guard !group.busiest.isEmpty else { continue }
            line("  " + pad("address", 42, right: false) + pad("requests", 12) + pad("limited", 12) + pad("tokens", 8))
            for client in group.busiest {
                line("  " + pad(client.prefix, 42, right: false) + pad("\(client.requests)", 12) + pad("\(client.limited)", 12) + pad("\(client.tokens)", 8))
            }
        }
        return out
    }

    /// The Roughtime delegation (RFC 10049 §5.2.6): where it comes from, its window, and how
    /// long it has left, loudly once it has none (the server then answers no Roughtime).
    static func roughtimeLine(_ r: ServerStatus.Roughtime) -> String {
        let source = r.delegationFile.map { "delegation signed offline, from \($0)" } ?? "online key made in memory, renewed before it expires"
        let window = "valid \(RoughtimeDelegation.iso(r.delegationStart)) to \(RoughtimeDelegation.iso(r.delegationExpiry))"
        let left: String
        if r.delegationSecondsRemaining < 0 {
            left = "EXPIRED \(duration(Double(-r.delegationSecondsRemaining))) ago: Roughtime is not answering; sign a new delegation (tock roughtime delegate) and reload tockd (SIGHUP)"
        } else if r.delegationFile != nil, r.delegationSecondsRemaining < RoughtimeDelegation.warnBelowSeconds {
            left = "\(duration(Double(r.delegationSecondsRemaining))) left: sign the next delegation (tock roughtime delegate) and reload tockd (SIGHUP)"
        } else {
            left = "\(duration(Double(r.delegationSecondsRemaining))) left"
        }
        return "\(source); online key \(r.onlinePublicKey), \(window); \(left)"
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return String(format: "%.1f s", seconds) }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }
}
