import Glibc
import Logging
import TOMLKit
import TockProtocol

/// A configuration file could not be used: names the file, the line, the key, the value and
/// what is allowed, so an operator can fix it without reading the source.
package struct ConfigFileError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// What kind of mistake; tests and callers compare on this.
    package enum Kind: String, Sendable, Codable {
        /// The file cannot be read.
        case unreadable
        /// The file is not valid TOML.
        case syntax
        /// A table or key tockd does not know (often a typo).
        case unknownKey
        /// A value of the wrong TOML type.
        case wrongType
        /// A value of the right type that is outside its range.
        case outOfRange
        /// A value of the right type that is not acceptable otherwise.
        case invalidValue
        /// The parser itself failed (crashed, hung or could not run) on this file.
        case parserFailure
    }

    package var kind: Kind
    package var path: String
    /// The 1-based line, when known.
    package var line: Int?
    /// The key as `table.key`, when the error is about one.
    package var key: String?
    package var value: String?
    /// What is wrong.
    package var problem: String
    /// What would be accepted.
    package var allowed: String?

    package var description: String {
        var text = path
        if let line { text += ":\(line)" }
        text += ": "
        if let key {
            text += key
            if let value { text += " = \(value)" }
            text += ": "
        }
        text += problem
        if let allowed { text += "; allowed: \(allowed)" }
        return text
    }
}

/// tockd's TOML configuration file (`tockd --config /etc/tock/tockd.toml`), read into a
/// settings layer that flags then override. Every key is checked: an unknown key, a wrong type
/// or an out-of-range value is an error naming the key, the value, the line and what is allowed
/// (the file is the operator's, and a typo silently ignored is a server misconfigured).
package enum ConfigFile {
    /// The tables and keys tockd knows, and what each key holds.
    static let schema: [String: [String: ValueKind]] = [
        "server": ["user": .string, "log_level": .string],
        "clock": ["source": .string, "stratum": .integer],
        "ntp": ["listen": .stringArray, "workers": .integer, "allow": .stringArray, "deny": .stringArray, "deny_kiss": .string],
        "daytime": ["listen": .stringArray, "format": .string, "zone": .string, "allow": .stringArray, "deny": .stringArray],
        "time": ["listen": .stringArray, "allow": .stringArray, "deny": .stringArray],
        "tcp": ["timeout": .number, "max_connections": .integer],
        "access": ["allow": .stringArray, "deny": .stringArray],
        "rate_limit": [
            "enabled": .boolean, "interval": .integer, "burst": .integer, "leak": .integer, "kiss_of_death": .boolean,
            "ipv4_prefix": .integer, "ipv6_prefix": .integer, "table_size_mib": .integer,
        ],
        "metrics": ["listen": .string],
    ]

    enum ValueKind {
        case string, integer, number, boolean, stringArray

        var description: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .number: "a number"
            case .boolean: "true or false"
            case .stringArray: "an array of strings"
            }
        }
    }

    /// Reads and checks the file at `path`.
    package static func load(path: String) throws(ConfigFileError) -> TockdSettings {
        guard let text = readFile(path) else {
            throw ConfigFileError(kind: .unreadable, path: path, problem: "cannot read: \(String(cString: strerror(errno)))")
        }
        return try parse(text, path: path)
    }

    /// Parses and checks `text`, naming `path` in errors.
    package static func parse(_ text: String, path: String) throws(ConfigFileError) -> TockdSettings {
        if let line = TOMLKeyLines.malformedTableHeader(in: text) {
            throw ConfigFileError(kind: .syntax, path: path, line: line, problem: "not valid TOML: a table header needs a name: [name]")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigFileError(kind: .syntax, path: path, line: error.source.begin.line, problem: "not valid TOML: \(error.description)")
        } catch {
            throw ConfigFileError(kind: .syntax, path: path, problem: "not valid TOML: \(error)")
        }
        let lines = TOMLKeyLines(text)
        var reader = Reader(path: path, lines: lines)
        return try reader.read(table)
    }

    /// Walks the parsed document against the schema.
    struct Reader {
        let path: String
        let lines: TOMLKeyLines
        var settings = TockdSettings()
        var allow: [String]?
        var deny: [String]?

        func error(_ kind: ConfigFileError.Kind, _ key: String, value: String? = nil, _ problem: String, allowed: String? = nil) -> ConfigFileError {
            ConfigFileError(kind: kind, path: path, line: lines.line(of: key), key: key, value: value, problem: problem, allowed: allowed)
        }

        mutating func read(_ document: TOMLTable) throws(ConfigFileError) -> TockdSettings {
            for tableName in document.keys.sorted(by: { lines.line(of: $0) ?? 0 < lines.line(of: $1) ?? 0 }) {
                guard let keys = ConfigFile.schema[tableName] else {
                    let problem = document[tableName]?.type == .table ? "unknown table [\(tableName)]" : "unknown key (every key belongs in a table)"
                    throw error(.unknownKey, tableName, problem, allowed: ConfigFile.schema.keys.sorted().map { "[\($0)]" }.joined(separator: ", "))
                }
                guard let table = document[tableName]?.table else {
                    throw error(.wrongType, tableName, value: document[tableName].map(Self.render), "must be a table", allowed: "[\(tableName)] followed by its keys")
                }
                for key in table.keys.sorted(by: { lines.line(of: "\(tableName).\($0)") ?? 0 < lines.line(of: "\(tableName).\($1)") ?? 0 }) {
                    let full = "\(tableName).\(key)"
                    guard let kind = keys[key] else {
                        throw error(.unknownKey, full, "unknown key", allowed: "in [\(tableName)]: " + keys.keys.sorted().joined(separator: ", "))
                    }
                    try readValue(table[key]!, kind: kind, table: tableName, key: key)
                }
            }
            settings.allow = allow
            settings.deny = deny
            return settings
        }

        static func render(_ value: TOMLValueConvertible) -> String {
            if let s = value.string { return "\"\(s)\"" }
            if let array = value.array { return "[" + array.map { render($0) }.joined(separator: ", ") + "]" }
            if value.type == .table { return "{...}" }
            return value.debugDescription
        }

        mutating func readValue(_ value: TOMLValueConvertible, kind: ValueKind, table: String, key: String) throws(ConfigFileError) {
            let full = "\(table).\(key)"
            let shown = Self.render(value)
            let setting = Setting.allCases.first { $0.key == full }
            func wrongType() -> ConfigFileError {
                error(.wrongType, full, value: shown, "wrong type (\(value.type)); expected \(kind.description)", allowed: setting?.allowed)
            }
            // Each value's own check, as the flags get it, but reported with the key and line.
            func checked(_ update: (inout TockdSettings) -> Void) throws(ConfigFileError) {
                var layer = TockdSettings()
                update(&layer)
                do {
                    try layer.validate()
                } catch {
                    throw self.error(error.problem == "out of range" ? .outOfRange : .invalidValue, full, value: shown, error.problem, allowed: error.setting.allowed)
                }
                settings = settings.overridden(by: layer)
            }
            func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ text: String) throws(ConfigFileError) -> T where T.RawValue == String {
                guard let parsed = T(rawValue: text) else {
                    throw error(.invalidValue, full, value: shown, "not one of the choices", allowed: T.allCases.map(\.rawValue).joined(separator: ", "))
                }
                return parsed
            }

            switch kind {
            case .string:
                guard let text = value.string else { throw wrongType() }
                switch full {
                case "server.user": try checked { $0.user = text }
                case "server.log_level": settings.logLevel = try choice(Logger.Level.self, text)
                case "clock.source": settings.clockSource = try choice(ClockSourceName.self, text)
                case "daytime.format": settings.daytimeFormat = try choice(DaytimeFormat.self, text)
                case "daytime.zone": settings.daytimeZone = try choice(DaytimeZone.self, text)
                case "ntp.deny_kiss":
                    guard text == "DENY" || text == "RSTR" else {
                        throw error(.invalidValue, full, value: shown, "not a denial kiss code", allowed: Setting.denyKiss.allowed)
                    }
                    settings.denyKiss = text == "DENY" ? .deny : .restrict
                case "metrics.listen": try checked { $0.metrics = text }
                default: break
                }
            case .integer:
                guard let number = value.int else { throw wrongType() }
                switch full {
                case "clock.stratum": try checked { $0.stratum = number }
                case "ntp.workers": try checked { $0.workers = number }
                case "tcp.max_connections": try checked { $0.tcpMaxConnections = number }
                case "rate_limit.interval": try checked { $0.rateLimitInterval = number }
                case "rate_limit.burst": try checked { $0.rateLimitBurst = number }
                case "rate_limit.leak": try checked { $0.rateLimitLeak = number }
                case "rate_limit.ipv4_prefix": try checked { $0.rateLimitIPv4Prefix = number }
                case "rate_limit.ipv6_prefix": try checked { $0.rateLimitIPv6Prefix = number }
                case "rate_limit.table_size_mib": try checked { $0.clientTableSize = number }
                default: break
                }
            case .number:
                guard let number = value.double ?? value.int.map(Double.init) else { throw wrongType() }
                try checked { $0.tcpTimeout = number }
            case .boolean:
                guard let flag = value.bool else { throw wrongType() }
                switch full {
                case "rate_limit.enabled": settings.rateLimit = flag
                case "rate_limit.kiss_of_death": settings.rateLimitKod = flag
                default: break
                }
            case .stringArray:
                // A single string is accepted as a list of one.
                let array: [TOMLValueConvertible]
                if value.string != nil {
                    array = [value]
                } else if let values = value.array {
                    array = Array(values)
                } else {
                    throw wrongType()
                }
                var texts: [String] = []
                for element in array {
                    guard let text = element.string else { throw wrongType() }
                    texts.append(text)
                }
                // Each element is checked and reported on its own, so the error shows the one
                // that is wrong.
                func checkedEach(_ update: (inout TockdSettings, [String]) -> Void) throws(ConfigFileError) {
                    for text in texts {
                        do throws(SettingError) {
                            var layer = TockdSettings()
                            update(&layer, [text])
                            try layer.validate()
                        } catch {
                            throw self.error(.invalidValue, full, value: "\"\(text)\"", error.problem, allowed: error.setting.allowed)
                        }
                    }
                    update(&settings, texts)
                }
                switch key {
                case "listen":
                    switch table {
                    case "ntp": try checkedEach { $0.ntpListen = $1 }
                    case "daytime": try checkedEach { $0.daytimeListen = $1 }
                    default: try checkedEach { $0.timeListen = $1 }
                    }
                case "allow", "deny":
                    // [access] applies to every service; [ntp], [daytime] and [time] to their own.
                    let scoped = table == "access" ? texts : texts.map { "\(table)=\($0)" }
                    for text in texts where table != "access" && text.contains("=") {
                        throw error(.invalidValue, full, value: "\"\(text)\"", "a service prefix inside [\(table)]", allowed: "plain prefixes here; SERVICE=PREFIX only in [access]")
                    }
                    if key == "allow" { try checkedEach { $0.allow = $1 } } else { try checkedEach { $0.deny = $1 } }
                    if key == "allow" { allow = (allow ?? []) + scoped } else { deny = (deny ?? []) + scoped }
                default: break
                }
            }
        }
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { bytes += buffer[..<n] }
            if n < buffer.count { break }
            // A configuration file is small; refuse to read something absurd.
            if bytes.count > 16 << 20 { errno = EFBIG; return nil }
        }
        if ferror(file) != 0 { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The line each key of a TOML document is on, for error messages: TOMLKit (toml++ underneath)
/// reports positions for syntax errors only, so keys are found again in the text.
///
/// Understands `[table]` headers, `key = value` and dotted or quoted keys, which is what a
/// configuration file uses; a key it cannot place gets no line rather than a wrong one.
struct TOMLKeyLines {
    private var lines: [String: Int] = [:]

    init(_ text: String) {
        var table: [String] = []
        var inMultilineString = false
        var arrayDepth = 0
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = Substring(raw.trimmingWhitespace())
            if inMultilineString {
                if line.contains("\"\"\"") || line.contains("'''") { inMultilineString = false }
                continue
            }
            if arrayDepth > 0 {
                arrayDepth += Self.bracketBalance(line)
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                let inner = line.drop { $0 == "[" }.prefix { $0 != "]" }
                table = Self.keyParts(inner)
                let name = table.joined(separator: ".")
                if lines[name] == nil { lines[name] = number }
                continue
            }
            guard let eq = Self.assignment(in: line) else { continue }
            let key = table + Self.keyParts(line[..<eq])
            let full = key.joined(separator: ".")
            if lines[full] == nil { lines[full] = number }
            // Dotted keys also define their parent tables.
            for n in 1..<max(1, key.count) where lines[key.prefix(n).joined(separator: ".")] == nil {
                lines[key.prefix(n).joined(separator: ".")] = number
            }
            let value = line[line.index(after: eq)...]
            if value.contains("\"\"\"") || value.contains("'''") {
                inMultilineString = value.components(separatedBy: "\"\"\"").count == 2 || value.components(separatedBy: "'''").count == 2
            }
            arrayDepth = max(0, Self.bracketBalance(value))
        }
    }

    /// The first line with a table header whose name does not start right (`[`, `[#`, `[]`):
    /// the bundled toml++ asserts on some of these instead of reporting an error, so they are
    /// rejected before it sees them.
    static func malformedTableHeader(in text: String) -> Int? {
        var inMultilineString = false
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = Substring(raw.trimmingWhitespace())
            let quotes = line.components(separatedBy: "\"\"\"").count - 1 + line.components(separatedBy: "'''").count - 1
            if inMultilineString {
                if quotes % 2 == 1 { inMultilineString = false }
                continue
            }
            if quotes % 2 == 1 { inMultilineString = true; continue }
            guard line.hasPrefix("[") else { continue }
            let name = line.drop { $0 == "[" }.drop { $0 == " " || $0 == "\t" }
            guard let first = name.first else { return index + 1 }
            let bare = first.isASCII && (first.isLetter || first.isNumber || first == "_" || first == "-")
            if !bare && first != "\"" && first != "'" { return index + 1 }
        }
        return nil
    }

    /// The line `key` (as `table.key`) is on.
    func line(of key: String) -> Int? { lines[key] }

    /// The position of the `=` of a key/value line, outside quotes.
    static func assignment(in line: Substring) -> Substring.Index? {
        var quote: Character?
        for i in line.indices {
            let c = line[i]
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "=" {
                return i
            } else if c == "#" {
                return nil
            }
        }
        return nil
    }

    /// The parts of a dotted key, with quotes removed.
    static func keyParts(_ text: Substring) -> [String] {
        var parts: [String] = []
        var current = ""
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "." {
                parts.append(current.trimmingWhitespace())
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current.trimmingWhitespace())
        return parts
    }

    /// Opening minus closing brackets outside strings and comments.
    static func bracketBalance(_ text: Substring) -> Int {
        var balance = 0
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                break
            } else if c == "[" {
                balance += 1
            } else if c == "]" {
                balance -= 1
            }
        }
        return balance
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }

    func components(separatedBy separator: String) -> [Substring] {
        String(self).split(separator: separator, omittingEmptySubsequences: false)
    }
}
