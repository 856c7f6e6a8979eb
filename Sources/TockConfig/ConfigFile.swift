import Glibc
import TOMLKit
import TockProtocol

/// A configuration file could not be used: names the file, the line, the key, the value and
/// what is allowed, so an operator can fix it without reading the source.
///
/// Callers compare on `code`, never on the text, which is for people and may be reworded.
package struct ConfigFileError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// What kind of mistake: a struct rather than an enumeration, so a new kind does not break
    /// code that switches over the others. Coded as its name, for the JSON a reload's parser
    /// sends back.
    package struct Code: Hashable, Sendable, Codable, CustomStringConvertible {
        private enum Backing: String, Codable {
            case unreadable, syntax, unknownKey, wrongType, outOfRange, invalidValue, parserFailure
        }
        private let backing: Backing

        private init(backing: Backing) { self.backing = backing }

        /// The file cannot be read.
        package static let unreadable = Code(backing: .unreadable)
        /// The file is not valid TOML.
        package static let syntax = Code(backing: .syntax)
        /// A table or key tockd does not know (often a typo).
        package static let unknownKey = Code(backing: .unknownKey)
        /// A value of the wrong TOML type.
        package static let wrongType = Code(backing: .wrongType)
        /// A value of the right type that is outside its range.
        package static let outOfRange = Code(backing: .outOfRange)
        /// A value of the right type that is not acceptable otherwise.
        package static let invalidValue = Code(backing: .invalidValue)
        /// The parser itself failed (crashed, hung or could not run) on this file.
        package static let parserFailure = Code(backing: .parserFailure)

        /// The code for a setting's own check: out of range or otherwise invalid.
        init(_ code: SettingError.Code) {
            self = code == .outOfRange ? .outOfRange : .invalidValue
        }

        /// Reads the name `encode(to:)` writes.
        package init(from decoder: Decoder) throws {
            backing = try decoder.singleValueContainer().decode(Backing.self)
        }

        /// Writes the name.
        package func encode(to encoder: Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(backing)
        }

        /// The code's name, for logs and tests.
        package var description: String { backing.rawValue }
    }

    /// What kind of mistake.
    package var code: Code
    /// The file.
    package var path: String
    /// The 1-based line, when known.
    package var line: Int?
    /// The key as `table.key`, when the error is about one.
    package var key: String?
    /// The value as the file writes it, when the error is about one.
    package var value: String?
    /// What is wrong.
    package var problem: String
    /// What would be accepted.
    package var allowed: String?

    /// A mistake in the file at `path`.
    package init(code: Code, path: String, line: Int? = nil, key: String? = nil, value: String? = nil, problem: String, allowed: String? = nil) {
        self.code = code
        self.path = path
        self.line = line
        self.key = key
        self.value = value
        self.problem = problem
        self.allowed = allowed
    }

    /// One line: `path:line: key = value: problem; allowed: ...`.
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

/// Every mistake in a configuration file, in file order, so that one run shows an operator all
/// there is to fix. A file that is not TOML at all (or cannot be read) has exactly one.
package struct ConfigFileErrors: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// The mistakes, at least one, ordered by line.
    package var all: [ConfigFileError]

    /// The mistakes in `all`, put in file order (those without a line last).
    package init(_ all: [ConfigFileError]) {
        self.all = all.enumerated()
            .sorted { ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset) }
            .map(\.element)
    }

    /// A single mistake.
    package init(_ error: ConfigFileError) {
        self.all = [error]
    }

    /// One line per mistake.
    package var description: String {
        all.map(\.description).joined(separator: "\n")
    }
}

/// tockd's TOML configuration file (`tockd --config /etc/tock/tockd.toml`), read into a
/// settings layer that flags then override. Every key is checked: an unknown key, a wrong type
/// or an out-of-range value is an error naming the key, the value, the line and what is allowed
/// (the file is the operator's, and a typo silently ignored is a server misconfigured).
///
/// The tables and keys come from `Setting.all`: each setting's `table.key`, and for the
/// settings every service may hold for itself (access lists), the same key in `[ntp]`,
/// `[daytime]` and `[time]`.
package enum ConfigFile {
    /// Where a key of the file goes: its setting, and the service its table limits it to.
    struct Placement {
        var setting: Setting
        var service: TockService?
    }

    /// The tables and keys tockd knows.
    static let schema: [String: [String: Placement]] = {
        var schema: [String: [String: Placement]] = [:]
        for setting in Setting.all {
            let parts = setting.key.split(separator: ".", maxSplits: 1).map(String.init)
            schema[parts[0], default: [:]][parts[1]] = Placement(setting: setting, service: nil)
            if setting.serviceScope != nil {
                for service in TockService.allCases {
                    schema[service.rawValue, default: [:]][parts[1]] = Placement(setting: setting, service: service)
                }
            }
        }
        return schema
    }()

    /// Reads and checks the file at `path`.
    package static func load(path: String) throws(ConfigFileErrors) -> TockdSettings {
        guard let text = readFile(path) else {
            throw ConfigFileErrors(ConfigFileError(code: .unreadable, path: path, problem: "cannot read: \(String(cString: strerror(errno)))"))
        }
        return try parse(text, path: path)
    }

    /// Parses and checks `text`, naming `path` in errors.
    package static func parse(_ text: String, path: String) throws(ConfigFileErrors) -> TockdSettings {
        if let line = TOMLKeyLines.malformedTableHeader(in: text) {
            throw ConfigFileErrors(ConfigFileError(code: .syntax, path: path, line: line, problem: "not valid TOML: a table header needs a name: [name]"))
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigFileErrors(ConfigFileError(code: .syntax, path: path, line: error.source.begin.line, problem: "not valid TOML: \(error.description)"))
        } catch {
            throw ConfigFileErrors(ConfigFileError(code: .syntax, path: path, problem: "not valid TOML: \(error)"))
        }
        var reader = Reader(path: path, lines: TOMLKeyLines(text))
        reader.read(table)
        if !reader.errors.isEmpty { throw ConfigFileErrors(reader.errors) }
        return reader.settings
    }

    /// Walks the parsed document against the schema, collecting every mistake.
    struct Reader {
        let path: String
        let lines: TOMLKeyLines
        var settings = TockdSettings()
        var errors: [ConfigFileError] = []

        func error(_ code: ConfigFileError.Code, _ key: String, value: String? = nil, _ problem: String, allowed: String? = nil) -> ConfigFileError {
            ConfigFileError(code: code, path: path, line: lines.line(of: key), key: key, value: value, problem: problem, allowed: allowed)
        }

        mutating func read(_ document: TOMLTable) {
            for tableName in document.keys.sorted(by: { lines.line(of: $0) ?? 0 < lines.line(of: $1) ?? 0 }) {
                guard let keys = ConfigFile.schema[tableName] else {
                    let problem = document[tableName]?.type == .table ? "unknown table [\(tableName)]" : "unknown key (every key belongs in a table)"
                    errors.append(error(.unknownKey, tableName, problem, allowed: ConfigFile.schema.keys.sorted().map { "[\($0)]" }.joined(separator: ", ")))
                    continue
                }
                guard let table = document[tableName]?.table else {
                    errors.append(error(.wrongType, tableName, value: document[tableName].map(Self.render), "must be a table", allowed: "[\(tableName)] followed by its keys"))
                    continue
                }
                for key in table.keys.sorted(by: { lines.line(of: "\(tableName).\($0)") ?? 0 < lines.line(of: "\(tableName).\($1)") ?? 0 }) {
                    let full = "\(tableName).\(key)"
                    guard let placement = keys[key] else {
                        errors.append(error(.unknownKey, full, "unknown key", allowed: "in [\(tableName)]: " + keys.keys.sorted().joined(separator: ", ")))
                        continue
                    }
                    do {
                        try readValue(table[key]!, placement, key: full)
                    } catch {
                        errors.append(error)
                    }
                }
            }
        }

        static func render(_ value: TOMLValueConvertible) -> String {
            if let s = value.string { return "\"\(s)\"" }
            if let array = value.array { return "[" + array.map { render($0) }.joined(separator: ", ") + "]" }
            if value.type == .table { return "{...}" }
            return value.debugDescription
        }

        /// The value in the form settings read, or nil for a TOML type no setting takes.
        static func settingValue(_ value: TOMLValueConvertible) -> SettingValue? {
            switch value.type {
            case .string: return value.string.map { .string($0) }
            case .int: return value.int.map { .integer($0) }
            case .double: return value.double.map { .number($0) }
            case .bool: return value.bool.map { .boolean($0) }
            case .array:
                var texts: [String] = []
                for element in value.array ?? [] {
                    guard let text = element.string else { return nil }
                    texts.append(text)
                }
                return .strings(texts)
            default: return nil
            }
        }

        /// Reads one key's value into `settings`, checked as the flags are, but reported with
        /// the key and line (and for a list, the element at fault).
        mutating func readValue(_ value: TOMLValueConvertible, _ placement: Placement, key: String) throws(ConfigFileError) {
            let setting = placement.setting
            let shown = Self.render(value)
            guard let converted = Self.settingValue(value)?.coerced(to: setting.kind) else {
                throw error(.wrongType, key, value: shown, "wrong type (\(value.type)); expected \(setting.kind.description)", allowed: setting.allowed)
            }
            do throws(ValueProblem) {
                if let service = placement.service, let scope = setting.serviceScope {
                    // Checked as written, stored as limited to the table's service.
                    let scoped = try scope(converted, service)
                    var scratch = TockdSettings()
                    try setting.read(converted, &scratch)
                    try setting.read(scoped, &settings)
                } else {
                    try setting.read(converted, &settings)
                }
            } catch {
                throw self.error(
                    ConfigFileError.Code(error.code), key,
                    value: error.element.map { "\"\($0)\"" } ?? shown, error.problem, allowed: error.allowed ?? setting.allowed
                )
            }
        }
    }

    /// The largest file read, 16 MiB: a configuration file is small, so anything larger is a
    /// mistake (a log or a device named by accident), refused rather than read into memory.
    static let maximumBytes = 16 << 20

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { bytes += buffer[..<n] }
            if n < buffer.count { break }
            if bytes.count > maximumBytes { errno = EFBIG; return nil }
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
