import ArgumentParser
import Glibc
import TockClient
import TockCrypto
import TockProtocol

/// `tock roughtime`: Roughtime key management.
struct Roughtime: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roughtime (RFC 10049) keys and cross-checks.",
        subcommands: [Keygen.self, Check.self]
    )

    /// `tock roughtime check SERVERS.json`: a measurement sequence (RFC 10049 §8.2) over a
    /// server list (§8.3), and a malfeasance report (§8.4) when two replies break causal order.
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask every server of a Roughtime server list, check the replies against each other, report malfeasance.",
            discussion: """
                Each server of SERVERS.json (RFC 10049 §8.3) is asked --rounds times, in list \
                order; the first nonce is random and every next one is SHA-512(previous \
                response ‖ rand)[0:32] with a fresh random rand (§8.2), so the order of the \
                replies can be proven. Every reply is verified (signatures, MINT..MAXT, Merkle \
                proof, nonce), then every pair i < j must satisfy MIDP_i − RADI_i ≤ MIDP_j + \
                RADI_j. Exit status: 0 all consistent and verified; 13 a causality violation, \
                the malfeasance report (§8.4) written to --report; 14 no violation, but a \
                server gave no verified reply; 64 usage or an unreadable list.
                """
        )

        @Argument(help: "The server list, JSON (RFC 10049 §8.3).")
        var servers: String

        @Option(help: "Where to write the malfeasance report on a violation.")
        var report: String = "roughtime-malfeasance.json"

        @Option(help: "How many times each server is asked (at least 2).")
        var rounds: Int = 2

        @Option(help: "Seconds to wait for each reply.")
        var timeout: Double = 1.0

        func validate() throws {
            guard rounds >= 2 else { throw ValidationError("--rounds must be at least 2") }
            guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        }

        func run() throws {
            guard let file = fopen(servers, "r") else {
                FileHandleStandardError.write("tock: cannot read \(servers): \(String(cString: strerror(errno)))\n")
                throw ExitCode(64)
            }
            var data: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n <= 0 { break }
                data += chunk[..<n]
            }
            fclose(file)
            let list: [RoughtimeListedServer]
            do { list = try RoughtimeServerList.parse(data) } catch {
                FileHandleStandardError.write("tock: \(servers): \(error)\n")
                throw ExitCode(64)
            }
            let check = RoughtimeCheck(servers: list, rounds: rounds, timeoutNanoseconds: Int64(timeout * 1e9))
            let exchanges = check.run()
            let violations = RoughtimeCheck.violations(exchanges)
            var blamed = [Set<Int>](repeating: [], count: exchanges.count)
            for v in violations {
                blamed[v.earlier].insert(v.later)
                blamed[v.later].insert(v.earlier)
            }
            let nameWidth = max(6, list.map(\.name.count).max() ?? 0)
            func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
            print(pad("server", nameWidth) + "  " + pad("midpoint (UTC)", 20) + "  " + pad("radius", 7) + "  verdict")
            for (i, exchange) in exchanges.enumerated() {
                let name = list[exchange.server].name
                var midpoint = "-", radius = "-", verdict: String
                if let time = exchange.time {
                    midpoint = CivilTime(UTCInstant(secondsSinceUnixEpoch: Int64(clamping: time.midpoint)), utcOffsetSeconds: 0)
                        .iso8601(fractionDigits: 0, nanosecond: 0)
                    radius = "\(time.radius) s"
                    verdict = blamed[i].isEmpty ? "ok"
                        : "inconsistent with " + blamed[i].sorted().map { "#\($0 + 1) \(list[exchanges[$0].server].name)" }.joined(separator: ", ")
                } else {
                    verdict = "no verified reply: \(exchange.failure ?? "unknown")"
                }
                print(pad(name, nameWidth) + "  " + pad(midpoint, 20) + "  " + pad(radius, 7) + "  #\(i + 1) " + verdict)
            }
            if !violations.isEmpty {
                let text = Array(RoughtimeCheck.report(exchanges, servers: list).utf8)
                let fd = open(report, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                let written = fd >= 0 ? text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } : -1
                if fd >= 0 { close(fd) }
                guard written == text.count else {
                    FileHandleStandardError.write("tock: cannot write the malfeasance report to \(report): \(String(cString: strerror(errno)))\n")
                    throw ExitCode(13)
                }
                print("causality violated in \(violations.count) pair(s); malfeasance report (RFC 10049 §8.4) written to \(report)")
                throw ExitCode(13)
            }
            if exchanges.contains(where: { $0.time == nil }) { throw ExitCode(14) }
            print("all \(exchanges.count) replies verified and causally consistent")
        }
    }

    /// `tock roughtime keygen FILE`.
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new long-term Ed25519 seed for tockd --roughtime-key and print its public key.",
            discussion: """
                FILE gets the 32-byte seed as 64 hex digits and a newline, mode 600; an existing \
                FILE is never overwritten. Prints the public key in base64 and hex, and a server \
                list entry (RFC 10049 §8.3) to give clients.
                """
        )

        @Argument(help: "The seed file to create.")
        var file: String

        @Option(help: "The name for the server-list entry.")
        var name: String = "tockd"

        @Option(help: "The address for the server-list entry, HOST:PORT.")
        var address: String = "127.0.0.1:2002"

        func run() throws {
            let signer = RoughtimeEd25519Signer()
            let fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard fd >= 0 else {
                FileHandleStandardError.write("tock: cannot create \(file): \(String(cString: strerror(errno)))\(errno == EEXIST ? " (it exists; keygen never overwrites a key)" : "")\n")
                throw ExitCode(1)
            }
            var text = Array((RoughtimeKeyText.hex(signer.seed) + "\n").utf8)
            let written = text.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
            fchmod(fd, 0o600)
            close(fd)
            guard written == text.count else {
                FileHandleStandardError.write("tock: cannot write \(file)\n")
                throw ExitCode(1)
            }
            let base64 = RoughtimeKeyText.base64(signer.publicKey)
            print("public key (base64)  \(base64)")
            print("public key (hex)     \(RoughtimeKeyText.hex(signer.publicKey))")
            print("server list entry:")
            print("""
                {
                  "name": "\(name)",
                  "version": "IETF-Roughtime",
                  "publicKeyType": "ed25519",
                  "publicKey": "\(base64)",
                  "addresses": [{"protocol": "udp", "address": "\(address)"}]
                }
                """)
        }
    }
}
