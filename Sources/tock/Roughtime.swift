import ArgumentParser
import Glibc
import TockClient
import TockCrypto
import TockProtocol

/// `tock roughtime`: Roughtime key management.
struct Roughtime: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roughtime (RFC 10049) keys and cross-checks.",
        subcommands: [Keygen.self, Delegate.self, Check.self]
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

    /// `tock roughtime delegate --key SEED --out FILE`: a delegation (RFC 10049 §5.2.6) signed
    /// here, offline, for tockd --roughtime-delegation, so the long-term key stays off servers.
    struct Delegate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a Roughtime delegation offline for tockd --roughtime-delegation: the long-term key never has to sit on the server.",
            discussion: """
                Makes a fresh online Ed25519 key and signs DELE {PUBK, MINT, MAXT} with the \
                long-term key of --key (RFC 10049 §5.2.6, context "RoughTime v1 delegation \
                signature"), as tockd does for the online key it makes itself. --out gets the \
                online private key, MINT, MAXT, the long-term public key and the signed CERT as \
                `key: value` lines (base64; see docs/roughtime.md), mode 600: it is a secret. An \
                existing --out is replaced only with --force, and then atomically, so a tockd \
                reloading (SIGHUP) reads the old file or the new one, never half of one. Prints \
                the long-term public key, the validity window and the server-list entry (§8.3).

                A fleet shares the long-term public key; sign one delegation per instance, each \
                with its own online key.

                Examples:
                  tock roughtime delegate --key roughtime.key --out delegation
                  tock roughtime delegate --key roughtime.key --out delegation --valid 7d --not-before 2026-03-01 --force
                """
        )

        @Option(help: ArgumentHelp("The long-term key's seed file (tock roughtime keygen), readable by its owner only.", valueName: "file"))
        var key: String

        @Option(help: ArgumentHelp("The delegation file to write (mode 600).", valueName: "file"))
        var out: String

        @Option(help: ArgumentHelp("How long the delegation is valid after --not-before: a number with s, m, h, d or w (30d, 12h), or plain seconds.", valueName: "duration"))
        var valid: String = "30d"

        @Option(help: ArgumentHelp("MINT: when the delegation starts, UTC: now, Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.", valueName: "time"))
        var notBefore: String = "now"

        @Flag(help: "Replace --out if it exists.")
        var force = false

        @Option(help: "The name for the server-list entry.")
        var name: String = "tockd"

        @Option(help: "The address for the server-list entry, HOST:PORT.")
        var address: String = "127.0.0.1:2002"

        func validate() throws {
            guard Self.seconds(valid) != nil else { throw ValidationError("--valid \(valid): not a duration such as 30d, 12h, 90m or 3600") }
            guard Self.unixTime(notBefore, now: 0) != nil else { throw ValidationError("--not-before \(notBefore): not now, Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ") }
        }

        func run() throws {
            let seed: [UInt8]
            do throws(SecretFile.Problem) { seed = try RoughtimeKeyText.readSeed(path: key) } catch {
                FileHandleStandardError.write("tock: \(error)\n")
                throw ExitCode(1)
            }
            if Self.sameFile(key, out) {
                FileHandleStandardError.write("tock: --out \(out) is the long-term key file itself; write the delegation elsewhere\n")
                throw ExitCode(1)
            }
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            let mint = Self.unixTime(notBefore, now: Int64(now.tv_sec))!
            let (maxt, overflow) = mint.addingReportingOverflow(Self.seconds(valid)!)
            let delegation: RoughtimeDelegation
            do throws(RoughtimeDelegation.Problem) {
                guard !overflow else { throw RoughtimeDelegation.Problem("--valid \(valid) from \(mint) ends past the year 292277026596") }
                delegation = try RoughtimeDelegation.sign(longTermSeed: seed, minimumTime: mint, maximumTime: maxt)
            } catch {
                FileHandleStandardError.write("tock: \(error)\n")
                throw ExitCode(1)
            }
            if let problem = Self.write(Array(delegation.fileText.utf8), to: out, replacing: force) {
                FileHandleStandardError.write("tock: \(problem)\n")
                throw ExitCode(1)
            }
            let base64 = RoughtimeKeyText.base64(delegation.longTermPublicKey)
            print("wrote \(out) (mode 600): serve it with tockd --roughtime-delegation \(out)")
            print("long-term public key (base64)  \(base64)")
            print("long-term public key (hex)     \(RoughtimeKeyText.hex(delegation.longTermPublicKey))")
            print("online public key (base64)     \(RoughtimeKeyText.base64(delegation.onlinePublicKey))")
            print("valid from \(RoughtimeDelegation.iso(mint)) (MINT \(mint)) to \(RoughtimeDelegation.iso(maxt)) (MAXT \(maxt))")
            print(Roughtime.serverListEntry(name: name, publicKey: base64, address: address))
        }

        /// Seconds in `text`: a number with an optional unit s, m, h, d or w; positive.
        static func seconds(_ text: String) -> UInt64? {
            let units: [Character: UInt64] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
            var digits = Substring(text)
            var unit: UInt64 = 1
            if let last = text.last, let u = units[last] {
                unit = u
                digits = digits.dropLast()
            }
            guard let n = UInt64(digits), n > 0 else { return nil }
            let (total, overflow) = n.multipliedReportingOverflow(by: unit)
            return overflow ? nil : total
        }

        /// Unix seconds in `text`: `now`, a number, `YYYY-MM-DD` (midnight UTC) or
        /// `YYYY-MM-DDTHH:MM:SS` with an optional `Z` (UTC).
        static func unixTime(_ text: String, now: Int64) -> UInt64? {
            if text == "now" { return UInt64(max(0, now)) }
            if let n = UInt64(text) { return n }
            var t = Substring(text)
            if t.hasSuffix("Z") { t = t.dropLast() }
            let parts = t.split(separator: "T", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { return nil }
            let date = parts[0].split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            let time = parts.count == 2 ? parts[1].split(separator: ":", omittingEmptySubsequences: false).map { Int($0) } : [0, 0, 0]
            guard date.count == 3, time.count == 3, !date.contains(nil), !time.contains(nil) else { return nil }
            let (y, mo, d, h, mi, s) = (date[0]!, date[1]!, date[2]!, time[0]!, time[1]!, time[2]!)
            guard (1970...9999).contains(y), (1...12).contains(mo), (1...31).contains(d), (0...23).contains(h), (0...59).contains(mi), (0...59).contains(s) else { return nil }
            let civil = CivilTime(year: y, month: mo, day: d, hour: h, minute: mi, second: s)
            // A day past the month's end (2026-02-30) would roll over: refuse it.
            guard CivilTime(civil.instant, utcOffsetSeconds: 0).day == d else { return nil }
            return UInt64(civil.instant.secondsSinceUnixEpoch)
        }

        /// Whether `a` and `b` name the same existing file.
        static func sameFile(_ a: String, _ b: String) -> Bool {
            var sa = stat(), sb = stat()
            return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
        }

        /// Writes `bytes` to `path`, mode 600, through a temporary file beside it: linked into
        /// place when `path` must not exist (an existing one is refused), renamed over it with
        /// `replacing`. Either way `path` is never seen half written. Returns what went wrong.
        static func write(_ bytes: [UInt8], to path: String, replacing: Bool) -> String? {
            var template = Array((path + ".XXXXXX").utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            guard fd >= 0 else { return "cannot create a file beside \(path): \(String(cString: strerror(errno)))" }
            let temporary = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            defer { unlink(temporary) }
            fchmod(fd, 0o600)
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard written == bytes.count, synced else { return "cannot write \(temporary): \(String(cString: strerror(errno)))" }
            if replacing {
                guard rename(temporary, path) == 0 else { return "cannot replace \(path): \(String(cString: strerror(errno)))" }
            } else if link(temporary, path) != 0 {
                let e = errno
                return "cannot create \(path): \(String(cString: strerror(e)))" + (e == EEXIST ? " (it exists; --force replaces it)" : "")
            }
            return nil
        }
    }

    /// `tock roughtime keygen FILE`.
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new long-term Ed25519 seed for tockd --roughtime-key and print its public key.",
            discussion: """
                FILE gets the 32-byte seed as 64 hex digits and a newline, mode 600; an existing \
                FILE is never overwritten. Prints the public key in base64 and hex, and a server \
                list entry (RFC 10049 §8.3) to give clients. To keep the seed off the server, \
                sign delegations with it instead: tock roughtime delegate.
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
            print(Roughtime.serverListEntry(name: name, publicKey: base64, address: address))
        }
    }

    /// The server-list entry (RFC 10049 §8.3) `keygen` and `delegate` print: tockd answers over
    /// UDP and TCP at the same address, so both are listed.
    static func serverListEntry(name: String, publicKey: String, address: String) -> String {
        """
        server list entry:
        {
          "name": "\(name)",
          "version": "IETF-Roughtime",
          "publicKeyType": "ed25519",
          "publicKey": "\(publicKey)",
          "addresses": [{"protocol": "udp", "address": "\(address)"}, {"protocol": "tcp", "address": "\(address)"}]
        }
        """
    }
}
