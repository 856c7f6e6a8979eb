import CTockShims
import Foundation
import Glibc

/// Parsing the configuration file in a short-lived child process, for reloads.
///
/// The TOML library keeps every document it parses for the life of the process (its tables
/// have no way to be freed: about 8 KiB per parse of the example file, measured over 2,000
/// reloads), and its parser asserts rather than erring on some malformed input. A long-running
/// server that reloads on SIGHUP therefore parses in a child: the child reads the file, prints
/// the settings (or the error) as JSON and exits, taking its memory with it; a child that
/// crashes or hangs costs the server nothing but a logged error.
package enum IsolatedParse {
    /// What the child prints.
    struct Outcome: Codable {
        var settings: SettingsWire?
        var error: ConfigFileErrors?
    }

    /// The child's side: parses `path` in this process and returns the JSON to print.
    package static func childOutput(path: String) -> String {
        let outcome: Outcome
        do {
            outcome = Outcome(settings: SettingsWire(try ConfigFile.load(path: path)), error: nil)
        } catch {
            outcome = Outcome(settings: nil, error: error)
        }
        let data = (try? JSONEncoder().encode(outcome)) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The server's side: runs `executable` (normally this program, `/proc/self/exe`) with
    /// `--config PATH --parse-config` and reads its answer, waiting at most `timeout` seconds.
    package static func load(path: String, executable: String = "/proc/self/exe", timeout: Double = 10) throws(ConfigFileErrors) -> TockdSettings {
        func failure(_ problem: String) -> ConfigFileErrors {
            ConfigFileErrors(ConfigFileError(code: .parserFailure, path: path, problem: problem))
        }
        let result = ChildProcess.run(executable, ["--config", path, "--parse-config"], timeout: timeout)
        guard result.launched else { throw failure("cannot run the parser (\(executable)): \(result.errors)") }
        if result.timedOut { throw failure("the parser did not finish within \(timeout) s") }
        if result.signal != 0 { throw failure("the parser was killed by signal \(result.signal) on this file") }
        guard result.status == 0,
              let outcome = try? JSONDecoder().decode(Outcome.self, from: Data(result.output))
        else {
            throw failure("the parser failed (exit \(result.status)): \(result.errors.prefix(300))")
        }
        if let error = outcome.error { throw error }
        guard let settings = outcome.settings else { throw failure("the parser gave no answer") }
        return settings.settings
    }
}

/// A settings layer as JSON: an object from each set setting's file key to its value, in the
/// file's own types. Written and read through the settings table, so a new setting needs
/// nothing here.
struct SettingsWire: Codable {
    var settings: TockdSettings

    init(_ settings: TockdSettings) {
        self.settings = settings
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for setting in Setting.all {
            let key = Key(stringValue: setting.key)
            switch setting.value(settings) {
            case nil: continue
            case .string(let text)?: try container.encode(text, forKey: key)
            case .integer(let number)?: try container.encode(number, forKey: key)
            case .number(let number)?: try container.encode(number, forKey: key)
            case .boolean(let flag)?: try container.encode(flag, forKey: key)
            case .strings(let texts)?: try container.encode(texts, forKey: key)
            }
        }
    }

    /// Each value is decoded as the type its setting expects, then read as the file's would be.
    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        settings = TockdSettings()
        for key in container.allKeys {
            guard let setting = Setting.named(key.stringValue) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "unknown setting")
            }
            let value: SettingValue = switch setting.kind {
            case .string: .string(try container.decode(String.self, forKey: key))
            case .integer: .integer(try container.decode(Int.self, forKey: key))
            case .number: .number(try container.decode(Double.self, forKey: key))
            case .boolean: .boolean(try container.decode(Bool.self, forKey: key))
            case .strings: .strings(try container.decode([String].self, forKey: key))
            }
            do {
                try setting.read(value, &settings)
            } catch {
                throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: error.problem)
            }
        }
    }
}

/// Running a child and collecting its output, with posix_spawn (no shell) and a deadline.
enum ChildProcess {
    struct Result {
        var launched = true
        var status: Int32 = -1
        var signal: Int32 = 0
        var output: [UInt8] = []
        var errors = ""
        var timedOut = false
    }

    static func run(_ executable: String, _ arguments: [String], timeout: Double) -> Result {
        var result = Result()
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard tock_pipe_cloexec(&outPipe) == 0 else { result.launched = false; result.errors = "pipe: \(errno)"; return result }
        guard tock_pipe_cloexec(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            result.launched = false; result.errors = "pipe: \(errno)"; return result
        }
        // Both pipes are close-on-exec from creation (pipe2): only the child's standard output
        // and error (dup2'd below) cross into it, even when another thread spawns at once.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        var rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        // ETXTBSY: the executable is still open for writing somewhere (being installed, or a
        // descriptor inherited by another fork); it clears within moments.
        var attempts = 0
        while rc == ETXTBSY, attempts < 20 {
            attempts += 1
            usleep(10_000)
            rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        }
        close(outPipe[1])
        close(errPipe[1])
        defer { close(outPipe[0]); close(errPipe[0]) }
        guard rc == 0 else {
            result.launched = false
            result.errors = String(cString: strerror(rc))
            return result
        }
        var errors: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var open = [outPipe[0], errPipe[0]]
        let deadline = Date().addingTimeInterval(timeout)
        while !open.isEmpty {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 {
                result.timedOut = true
                kill(pid, SIGKILL)
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1) * 1000)) >= 0 || errno == EINTR else { break }
            for entry in fds where entry.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if entry.fd == outPipe[0] { result.output += buffer[..<n] } else { errors += buffer[..<n] }
                    // A configuration's JSON is about as small as its file; anything huge is not an answer.
                    if result.output.count > ConfigFile.maximumBytes { result.timedOut = true; kill(pid, SIGKILL); open = [] }
                } else if n == 0 || errno != EINTR {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        var status: Int32 = 0
        var waited = waitpid(pid, &status, 0)
        while waited < 0, errno == EINTR { waited = waitpid(pid, &status, 0) }
        guard waited == pid else {
            result.errors = "waitpid: \(String(cString: strerror(errno)))"
            return result
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros).
        if status & 0x7F == 0 {
            result.status = (status >> 8) & 0xFF
        } else {
            result.signal = status & 0x7F
        }
        result.errors = String(decoding: errors, as: UTF8.self)
        return result
    }
}
