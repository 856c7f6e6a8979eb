import TockProtocol
import TockServer

/// One of tockd's settings: its file key, its flag, what it accepts and where its value goes.
///
/// A setting is one entry in the table `Setting.all` (see TockdSettings.swift). The file
/// reader, the flags, overriding one layer with another, the reload's comparison and its JSON,
/// `--help` and `--check-config` all walk that table, so none of them lists settings itself.
/// The entry is type-erased: closures built from a typed `ValueFormat` and `Landing` do the
/// work, so the table can hold integers, choices and lists side by side.
package struct Setting: Sendable, Hashable, CustomStringConvertible {
    /// The key in the configuration file, as `table.key`.
    package let key: String
    /// The command-line flag, with its dashes (`--workers`).
    package let flag: String
    /// What the setting accepts, for error messages and `--help`.
    package let allowed: String
    /// Whether a running tockd applies a new value on reload (SIGHUP); the others need a restart.
    package let isReloadable: Bool
    /// What the setting does, for `--help`.
    package let summary: String
    /// The value's name in `--help` (`<listener>`), when the flag's own name would not say it.
    package let valueName: String?
    /// How the flag takes its value.
    package let flagShape: FlagShape
    /// The value used when no layer sets one, as `--help` shows it: the configuration types'
    /// default read back through the entry's landing, unless the entry says it in words.
    package let defaultText: String?
    /// The default in file form, when it is one plain value the same on every machine (nil
    /// for none, and where the entry says its default in words: one per two CPUs).
    package let defaultValue: SettingValue?
    /// A value to show where there is no `defaultValue`: the generated reference and
    /// deploy/tockd.toml write it as an example.
    package let example: SettingValue?

    /// How a setting's flag takes its value on the command line.
    package enum FlagShape: Sendable, Hashable {
        /// One value (`--workers 4`); the last one given wins. A value may start with a dash
        /// only where negative numbers make sense.
        case value(allowsLeadingDash: Bool)
        /// Repeatable, each occurrence adding one value (`--allow A --allow B`).
        case list
        /// On or off, as `--name` and `--no-name`.
        case toggle
    }

    /// The TOML type the file gives the value as.
    package let kind: SettingValue.Kind
    /// A listener setting: when any is set, the others default to none.
    let isListener: Bool
    /// For a setting that [ntp], [daytime] and [time] may also hold (access lists): turns a
    /// value written in one service's table into the value for that service alone.
    let serviceScope: (@Sendable (SettingValue, TockService) throws(ValueProblem) -> SettingValue)?
    /// Whether a layer sets this setting.
    package let isSet: @Sendable (TockdSettings) -> Bool
    /// The layer's value in file form, nil when unset.
    let value: @Sendable (TockdSettings) -> SettingValue?
    /// Checks a value in file form and stores it in the layer (adding to a list already there).
    let read: @Sendable (SettingValue, inout TockdSettings) throws(ValueProblem) -> Void
    /// The layer's value checked on its own (nil when unset or acceptable).
    let check: @Sendable (TockdSettings) -> ValueProblem?
    let same: @Sendable (TockdSettings, TockdSettings) -> Bool
    /// Copies the value (set or not) from the first layer to the second.
    let copy: @Sendable (TockdSettings, inout TockdSettings) -> Void
    let land: @Sendable (Setting, TockdSettings, inout ResolvedSettings) throws(SettingError) -> Void
    /// The value in force in resolved settings, in file form.
    let current: @Sendable (ResolvedSettings) -> SettingValue?

    /// A table entry: `field` is where a layer keeps the value, `format` how it is written
    /// and checked, `lands` where it goes in the resolved settings. `defaultText` replaces the
    /// default `lands` reads from the configuration types' defaults, where that would mislead
    /// (one per core, not this machine's count) or there is none to read; `example` is shown
    /// in the reference where no plain default is.
    init<Value>(
        key: String, flag: String, reloadable: Bool, help summary: String, valueName: String? = nil,
        field: WritableKeyPath<TockdSettings, Value?> & Sendable, format: ValueFormat<Value>, lands: Landing<Value>,
        defaultText: String? = nil, example: Value? = nil, isListener: Bool = false,
        serviceScope: (@Sendable (SettingValue, TockService) throws(ValueProblem) -> SettingValue)? = nil
    ) {
        self.key = key
        self.flag = flag
        self.allowed = format.allowed
        self.isReloadable = reloadable
        self.summary = summary
        self.valueName = valueName
        self.flagShape = format.flagShape
        self.kind = format.kind
        self.isListener = isListener
        self.serviceScope = serviceScope
        let defaultValue = defaultText == nil ? lands.current(ResolvedSettings()).map(format.encode) : nil
        self.defaultValue = defaultValue
        self.defaultText = defaultText ?? defaultValue?.flagText
        self.example = example.map(format.encode)
        isSet = { $0[keyPath: field] != nil }
        value = { layer in layer[keyPath: field].map(format.encode) }
        read = { (value, layer) throws(ValueProblem) in
            let parsed = try format.decode(value)
            if let problem = format.check(parsed) { throw problem }
            if let combine = format.combine, let earlier = layer[keyPath: field] {
                layer[keyPath: field] = combine(earlier, parsed)
            } else {
                layer[keyPath: field] = parsed
            }
        }
        check = { layer in layer[keyPath: field].flatMap(format.check) }
        same = { $0[keyPath: field] == $1[keyPath: field] }
        copy = { from, to in to[keyPath: field] = from[keyPath: field] }
        land = { (setting, layer, resolved) throws(SettingError) in
            try lands.apply(layer[keyPath: field], setting, layer, &resolved)
        }
        current = { resolved in lands.current(resolved).map(format.encode) }
    }

    /// The text shown in error messages for the layer's value.
    func text(in layer: TockdSettings) -> String {
        value(layer)?.flagText ?? ""
    }

    /// Sets this setting in `layer` from its flag's values as typed on the command line (a
    /// toggle's as `true` or `false`), checked as the file's values are.
    package func read(flag texts: [String], into layer: inout TockdSettings) throws(SettingError) {
        do throws(ValueProblem) {
            try read(try SettingValue(flagTexts: texts, as: kind), &layer)
        } catch {
            // As typed, except an empty value, which would not show.
            let typed = texts.last ?? ""
            throw SettingError(self, code: error.code, value: error.element ?? (typed.isEmpty ? "\"\"" : typed), problem: error.problem)
        }
    }

    /// The flag's `--help` text: what it does, what it accepts, its default and its file key.
    package var helpText: String {
        var parts = [summary + "."]
        if flagShape != .toggle { parts.append("Allowed: \(allowed).") }
        if let shownDefault { parts.append("Default: \(shownDefault).") }
        parts.append("File: \(key)\(isReloadable ? " (reloadable)" : "").")
        return parts.joined(separator: " ")
    }

    /// The default as `--help` and the reference say it: a toggle's as on or off.
    package var shownDefault: String? {
        guard let defaultText else { return nil }
        return flagShape == .toggle ? (defaultText == "true" ? "on" : "off") : defaultText
    }

    /// The setting with this file key.
    package static func named(_ key: String) -> Setting? { byKey[key] }

    static let byKey: [String: Setting] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    /// Whether any listener setting is set in `layer`: then only the listeners given run.
    static func givesListeners(_ layer: TockdSettings) -> Bool {
        all.contains { $0.isListener && $0.isSet(layer) }
    }

    /// The file key, which names the setting in logs.
    package var description: String { key }

    /// Settings are the same when their keys are: the key is unique in the table.
    package static func == (a: Setting, b: Setting) -> Bool { a.key == b.key }

    /// Hashes the key, which is unique in the table.
    package func hash(into hasher: inout Hasher) { hasher.combine(key) }
}

/// A setting's value is not acceptable: names the setting, the value and what is allowed.
///
/// Callers compare on `code` (and `setting`), never on the text, which is for people and may
/// be reworded.
package struct SettingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of mistake: a struct rather than an enumeration, so a new kind does not break
    /// code that switches over the others.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: String { case invalidValue, outOfRange, conflict, missing, unusableFile }
        private let backing: Backing

        /// The value is not of the form the setting takes (not an integer, not an address).
        package static let invalidValue = Code(backing: .invalidValue)
        /// The value is of the right form, outside the setting's range.
        package static let outOfRange = Code(backing: .outOfRange)
        /// The value is fine on its own but not with another setting's (a stratum with an
        /// unsynchronised clock, a key and a delegation both).
        package static let conflict = Code(backing: .conflict)
        /// A setting another one needs is not given (NTS-KE without a certificate).
        package static let missing = Code(backing: .missing)
        /// The file the setting names cannot be used: unreadable, readable by others, or not
        /// what it should hold.
        package static let unusableFile = Code(backing: .unusableFile)

        /// The code's name, for logs and tests.
        package var description: String { backing.rawValue }
    }

    /// What kind of mistake.
    package var code: Code
    /// The setting at fault.
    package var setting: Setting
    /// The offending value as the user wrote it.
    package var value: String
    /// What is wrong with it.
    package var problem: String
    /// Whether the value may have come from the file or the flags (a check across settings,
    /// made after the two are merged).
    package var afterMerge: Bool

    /// An error of kind `code` about `setting`'s `value`.
    package init(_ setting: Setting, code: Code, value: String, problem: String, afterMerge: Bool = false) {
        self.code = code
        self.setting = setting
        self.value = value
        self.problem = problem
        self.afterMerge = afterMerge
    }

    /// As tockd prints it: the flag (and the key, when the file may have given the value), the
    /// value, the problem and what is allowed.
    package var description: String {
        let name = afterMerge ? "\(setting.flag) (\(setting.key) in the file)" : setting.flag
        return "\(name) \(value): \(problem); allowed: \(setting.allowed)"
    }
}

// MARK: - Values in file form

/// A setting's value in the form the configuration file has it: one of the TOML types tockd's
/// settings use. The file reader, the JSON a reload's parser sends back and `--check-config`
/// share it, so each setting converts to and from one form only.
package enum SettingValue: Sendable, Hashable {
    /// A TOML string.
    case string(String)
    /// A TOML integer.
    case integer(Int)
    /// A TOML float (or an integer, where a number is wanted).
    case number(Double)
    /// A TOML boolean.
    case boolean(Bool)
    /// A TOML array of strings (or one string, where a list is wanted).
    case strings([String])

    /// The TOML type a setting expects.
    package enum Kind: Sendable {
        case string, integer, number, boolean, strings

        /// As an error about a wrong type says it.
        package var description: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .number: "a number"
            case .boolean: "true or false"
            case .strings: "an array of strings"
            }
        }
    }

    /// This value as `kind`, converting as TOML users expect: an integer where a number is
    /// wanted, a single string where a list is. Nil for a wrong type.
    func coerced(to kind: Kind) -> SettingValue? {
        switch (self, kind) {
        case (.string, .string), (.integer, .integer), (.number, .number), (.boolean, .boolean), (.strings, .strings): self
        case (.integer(let number), .number): .number(Double(number))
        case (.string(let text), .strings): .strings([text])
        default: nil
        }
    }

    /// A flag's values as `kind`: the command line has only text.
    init(flagTexts texts: [String], as kind: Kind) throws(ValueProblem) {
        let text = texts.last ?? ""
        switch kind {
        case .string:
            self = .string(text)
        case .integer:
            guard let number = Int(text) else { throw ValueProblem(.invalidValue, "not an integer") }
            self = .integer(number)
        case .number:
            guard let number = Double(text), number.isFinite else { throw ValueProblem(.invalidValue, "not a number") }
            self = .number(number)
        case .boolean:
            guard let flag = Bool(text) else { throw ValueProblem(.invalidValue, "not true or false") }
            self = .boolean(flag)
        case .strings:
            self = .strings(texts)
        }
    }

    /// As TOML writes it.
    package var toml: String {
        switch self {
        case .string(let text): Self.quoted(text)
        case .integer(let number): "\(number)"
        case .number(let number): "\(number)"
        case .boolean(let flag): "\(flag)"
        case .strings(let texts): "[" + texts.map(Self.quoted).joined(separator: ", ") + "]"
        }
    }

    /// As a flag writes it: text as it is, except an empty string, which would not show.
    package var flagText: String {
        switch self {
        case .string(let text): text.isEmpty ? "\"\"" : text
        case .strings(let texts): texts.count == 1 ? texts[0] : texts.description
        default: toml
        }
    }

    static func quoted(_ text: String) -> String {
        "\"" + text.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
    }
}

/// Why a value is not acceptable, before it is known whether the file or a flag gave it.
struct ValueProblem: Error, Sendable {
    /// `.outOfRange` or `.invalidValue`; the file reader reports them as the
    /// `ConfigFileError.Code` of the same name.
    var code: SettingError.Code
    var problem: String
    /// The element at fault, when the value is a list.
    var element: String?
    /// What is accepted instead, where that is not the setting's own `allowed`.
    var allowed: String?

    init(_ code: SettingError.Code, _ problem: String, element: String? = nil, allowed: String? = nil) {
        self.code = code
        self.problem = problem
        self.element = element
        self.allowed = allowed
    }
}

// MARK: - Formats: how one type of value is written and checked

/// How a setting's values are written, read and checked: the part of a table entry that
/// depends only on the type of value (a range of integers, a choice, a list of prefixes).
struct ValueFormat<Value: Sendable & Equatable>: Sendable {
    var kind: SettingValue.Kind
    var allowed: String
    var flagShape: Setting.FlagShape
    /// From a value already of `kind`.
    var decode: @Sendable (SettingValue) throws(ValueProblem) -> Value
    var encode: @Sendable (Value) -> SettingValue
    var check: @Sendable (Value) -> ValueProblem? = { _ in nil }
    /// How lists from several tables of one file add up; nil for values that cannot repeat.
    var combine: (@Sendable (Value, Value) -> Value)? = nil

    static var mismatch: ValueProblem { ValueProblem(.invalidValue, "wrong type") }
}

extension ValueFormat where Value == Int {
    /// An integer in `range`; `unit` says what it counts.
    static func integer(_ range: ClosedRange<Int>, unit: String? = nil) -> Self {
        Self(
            kind: .integer,
            allowed: "\(range.lowerBound)-\(range.upperBound)" + (unit.map { " (\($0))" } ?? ""),
            flagShape: .value(allowsLeadingDash: range.lowerBound < 0),
            decode: { (value) throws(ValueProblem) in
                guard case .integer(let number) = value else { throw mismatch }
                return number
            },
            encode: { .integer($0) },
            check: { range.contains($0) ? nil : ValueProblem(.outOfRange, "out of range") }
        )
    }
}

extension ValueFormat where Value == Double {
    /// A number in `range`; `unit` says what it measures.
    static func number(_ range: ClosedRange<Double>, unit: String) -> Self {
        func text(_ bound: Double) -> String { bound == bound.rounded() ? "\(Int(bound))" : "\(bound)" }
        return Self(
            kind: .number,
            allowed: "\(text(range.lowerBound))-\(text(range.upperBound)) (\(unit))",
            flagShape: .value(allowsLeadingDash: range.lowerBound < 0),
            decode: { (value) throws(ValueProblem) in
                guard case .number(let number) = value else { throw mismatch }
                return number
            },
            encode: { .number($0) },
            check: { range.contains($0) ? nil : ValueProblem(.outOfRange, "out of range") }
        )
    }
}

extension ValueFormat where Value == Bool {
    /// On or off.
    static var boolean: Self {
        Self(
            kind: .boolean, allowed: "true or false", flagShape: .toggle,
            decode: { (value) throws(ValueProblem) in
                guard case .boolean(let flag) = value else { throw mismatch }
                return flag
            },
            encode: { .boolean($0) }
        )
    }
}

extension ValueFormat where Value == String {
    /// Free text that `check` accepts (a problem string, or nil for fine).
    static func text(allowed: String, check: @escaping @Sendable (String) -> String?) -> Self {
        Self(
            kind: .string, allowed: allowed, flagShape: .value(allowsLeadingDash: false),
            decode: { (value) throws(ValueProblem) in
                guard case .string(let text) = value else { throw mismatch }
                return text
            },
            encode: { .string($0) },
            check: { text in check(text).map { ValueProblem(.invalidValue, $0) } }
        )
    }
}

extension ValueFormat where Value == [String] {
    /// A list whose elements `check` accepts one by one (a problem string, or nil for fine);
    /// an error names the element at fault.
    static func list(allowed: String, check: @escaping @Sendable (String) -> String?) -> Self {
        Self(
            kind: .strings, allowed: allowed, flagShape: .list,
            decode: { (value) throws(ValueProblem) in
                guard case .strings(let texts) = value else { throw mismatch }
                return texts
            },
            encode: { .strings($0) },
            check: { texts in
                for text in texts {
                    if let problem = check(text) { return ValueProblem(.invalidValue, problem, element: text) }
                }
                return nil
            },
            combine: { $0 + $1 }
        )
    }
}

extension ValueFormat {
    /// One of `choices`, written as `name` gives it. `allowed` and `problem` default to the
    /// list of names and "not one of the choices".
    static func choice(
        _ choices: [Value], name: @escaping @Sendable (Value) -> String, allowed: String? = nil, problem: String = "not one of the choices"
    ) -> Self {
        Self(
            kind: .string,
            allowed: allowed ?? choices.map(name).joined(separator: ", "),
            flagShape: .value(allowsLeadingDash: false),
            decode: { (value) throws(ValueProblem) in
                guard case .string(let text) = value else { throw mismatch }
                guard let choice = choices.first(where: { name($0) == text }) else { throw ValueProblem(.invalidValue, problem) }
                return choice
            },
            encode: { .string(name($0)) },
            check: { choices.contains($0) ? nil : ValueProblem(.invalidValue, problem) }
        )
    }
}

extension ValueFormat where Value: CaseIterable & RawRepresentable, Value.RawValue == String {
    /// One of the enumeration's cases, by raw value.
    static var choice: Self { .choice(Array(Value.allCases), name: { $0.rawValue }) }
}

// MARK: - Landings: where a value goes in the resolved settings

/// Where a setting's value ends up in the resolved settings, and how the value in force is read
/// back (for `--check-config`, and for the default `--help` shows, read from the configuration
/// types' own defaults).
struct Landing<Value: Sendable>: Sendable {
    /// Applies the layer's value (nil when no layer sets it) for `setting`.
    var apply: @Sendable (Value?, Setting, TockdSettings, inout ResolvedSettings) throws(SettingError) -> Void
    /// The value in force.
    var current: @Sendable (ResolvedSettings) -> Value?

    /// Stored as it is at `path`.
    static func at(_ path: WritableKeyPath<ResolvedSettings, Value> & Sendable) -> Self {
        Self(
            apply: { value, _, _, resolved in if let value { resolved[keyPath: path] = value } },
            current: { $0[keyPath: path] }
        )
    }

    /// Stored at `path` through a conversion, read back through its inverse.
    static func at<Target>(
        _ path: WritableKeyPath<ResolvedSettings, Target> & Sendable,
        to convert: @escaping @Sendable (Value) -> Target, back: @escaping @Sendable (Target) -> Value?
    ) -> Self {
        Self(
            apply: { value, _, _, resolved in if let value { resolved[keyPath: path] = convert(value) } },
            current: { back($0[keyPath: path]) }
        )
    }
}
