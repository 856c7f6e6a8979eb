import Foundation
import Testing
import TockConfig

/// Reload's parse in a child process, with stand-in parsers that answer, crash, hang or babble.
/// Serialized: the parser sets close-on-exec just after pipe(), safe in tockd, where one thread
/// spawns, but not when several tests spawn at once.
@Suite("Parsing in a child process", .serialized)
struct IsolatedParseTests {
    /// An executable shell script with `body`, removed when the test ends.
    final class Script: @unchecked Sendable {
        let path = NSTemporaryDirectory() + "tockd-parser-\(UUID().uuidString).sh"
        /// Written through a close-on-exec descriptor: a child spawned meanwhile by another
        /// test must not inherit it open for writing, or running the script fails with ETXTBSY.
        init(_ body: String) throws {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
            guard fd >= 0 else { throw POSIXError(.EIO) }
            defer { close(fd) }
            let bytes = Array(("#!/bin/sh\n" + body + "\n").utf8)
            guard write(fd, bytes, bytes.count) == bytes.count else { throw POSIXError(.EIO) }
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    @Test("The child's JSON comes back as the same settings, or the same error")
    func roundTrip() throws {
        let file = NSTemporaryDirectory() + "tockd-\(UUID().uuidString).toml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "[clock]\nsource = \"local\"\nstratum = 5\n[ntp]\nlisten = [\"127.0.0.1:1123\"]\ndeny_kiss = \"RSTR\"\n[rate_limit]\nenabled = true\nburst = 3\n[server]\nlog_level = \"debug\"\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let output = IsolatedParse.childOutput(path: file)
        let script = try Script("cat <<'JSON'\n\(output)\nJSON")
        let settings = try IsolatedParse.load(path: file, executable: script.path)
        #expect(settings == (try ConfigFile.load(path: file)))
        #expect(settings.stratum == 5 && settings.denyKiss == .restrict && settings.rateLimitBurst == 3 && settings.logLevel == .debug)

        try "[rate_limit]\nburst = 300\n".write(toFile: file, atomically: true, encoding: .utf8)
        let errorScript = try Script("cat <<'JSON'\n\(IsolatedParse.childOutput(path: file))\nJSON")
        var inProcess: ConfigFileErrors?
        do { _ = try ConfigFile.load(path: file) } catch { inProcess = error }
        do {
            _ = try IsolatedParse.load(path: file, executable: errorScript.path)
            Issue.record("a bad file parsed")
        } catch {
            #expect(error == inProcess)
            let only = try #require(error.all.count == 1 ? error.all.first : nil)
            #expect(only.code == .outOfRange && only.line == 2 && only.key == "rate_limit.burst" && only.value == "300")
        }
    }

    @Test("Every setting crosses as JSON unchanged, and so does every mistake of a file")
    func everySettingAndEveryMistake() throws {
        let file = NSTemporaryDirectory() + "tockd-\(UUID().uuidString).toml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
            [server]
            user = "nobody"
            log_level = "debug"
            [clock]
            source = "local"
            stratum = 7
            [ntp]
            listen = ["127.0.0.1:1123", "[::1]:1123"]
            workers = 3
            deny = ["192.0.2.0/24"]
            deny_kiss = "RSTR"
            interleaved = false
            hw_timestamping = ["eth0", "eth1"]
            [daytime]
            listen = "127.0.0.1:1113"
            format = "hms"
            zone = "utc"
            allow = ["10.1.0.0/16"]
            [time]
            listen = []
            [tcp]
            timeout = 0.25
            max_connections = 10
            max_connections_per_address = 4
            [access]
            allow = ["10.0.0.0/8", "time=192.0.2.0/24"]
            [rate_limit]
            enabled = true
            interval = -4
            burst = 16
            leak = 0
            kiss_of_death = true
            ipv4_prefix = 24
            ipv6_prefix = 48
            table_size_mib = 8
            [metrics]
            listen = "127.0.0.1:9123"
            [nts]
            listen = ["127.0.0.1:4460"]
            certificate = "/etc/tock/nts.crt"
            private_key = "/etc/tock/nts.key"
            key_file = "/etc/tock/nts-cookie.key"
            ntp_server = "ntp.example.net"
            ntp_port = 1123
            key_period = 3600
            [roughtime]
            listen = ["127.0.0.1:2002"]
            key_file = "/etc/tock/roughtime.key"
            delegation_file = "/etc/tock/roughtime.delegation"
            workers = 4
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let inProcess = try ConfigFile.load(path: file)
        #expect(Setting.all.filter { inProcess.differences(from: TockdSettings()).contains($0) }.count == Setting.all.count, "the file sets everything")
        let script = try Script("cat <<'JSON'\n\(IsolatedParse.childOutput(path: file))\nJSON")
        #expect(try IsolatedParse.load(path: file, executable: script.path) == inProcess)

        try "[ntp]\nworkerz = 3\n[rate_limit]\nburst = 300\n[clock]\nstratum = \"two\"\n".write(toFile: file, atomically: true, encoding: .utf8)
        let errorScript = try Script("cat <<'JSON'\n\(IsolatedParse.childOutput(path: file))\nJSON")
        do {
            _ = try IsolatedParse.load(path: file, executable: errorScript.path)
            Issue.record("a bad file parsed")
        } catch {
            #expect(error.all.map(\.line) == [2, 4, 6])
            #expect(error.all.map(\.code) == [.unknownKey, .outOfRange, .wrongType])
        }
    }

    @Test("A parser that crashes, hangs, fails or prints garbage is an error, not the server's problem")
    func failures() throws {
        let cases: [(String, String)] = [
            ("kill -KILL $$", "killed by signal 9"),
            ("exec sleep 30", "did not finish within 1.0 s"),
            ("echo 'bad things' >&2; exit 3", "exit 3"),
            ("echo '{not json'", "the parser failed"),
        ]
        for (body, expected) in cases {
            let script = try Script(body)
            do {
                _ = try IsolatedParse.load(path: "/etc/tock/tockd.toml", executable: script.path, timeout: 1)
                Issue.record("\(body): no error")
            } catch {
                #expect(error.all.map(\.code) == [.parserFailure], "\(body)")
                #expect(error.description.contains(expected), "\(body): \(error)")
            }
        }
        do {
            _ = try IsolatedParse.load(path: "/x.toml", executable: "/nonexistent/tockd")
            Issue.record("ran a missing executable")
        } catch {
            #expect(error.all.map(\.code) == [.parserFailure] && error.description.contains("cannot run the parser"))
        }
    }
}
