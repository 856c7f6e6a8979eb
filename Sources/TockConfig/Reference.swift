import TockProtocol

/// The configuration reference, written from the settings table: docs/configuration.md (every
/// key and flag with its type, range, default and whether a reload applies it) and
/// deploy/tockd.toml (the same keys as a commented file to install).
///
/// Both files are generated (`tockd --print-reference markdown|toml`, run by
/// scripts/generate-reference) and scripts/check-docs fails when either differs, so a setting
/// added to `Setting.all` reaches the documentation with no list kept by hand.
package enum SettingsReference {
    /// Which file to write.
    package enum Format: String, Sendable, CaseIterable {
        /// docs/configuration.md.
        case markdown
        /// deploy/tockd.toml.
        case toml
    }

    /// The file `format` names, ending in a newline.
    package static func text(_ format: Format) -> String {
        switch format {
        case .markdown: markdown()
        case .toml: toml()
        }
    }

    /// The configuration file's tables, in the order of their first setting in `Setting.all`,
    /// each with its settings.
    static var tables: [(name: String, settings: [Setting])] {
        var order: [String] = []
        var members: [String: [Setting]] = [:]
        for setting in Setting.all {
            let table = setting.table
            if members[table] == nil { order.append(table) }
            members[table, default: []].append(setting)
        }
        return order.map { ($0, members[$0]!) }
    }

    /// What each table is for, as the reference introduces it. A table missing here is
    /// introduced by its name alone (a test keeps every table here).
    static let tableSummaries: [String: String] = [
        "ntp": "NTP (RFC 5905) on UDP: where it answers, with how many threads, and what only NTP has (the deny kiss, interleaved mode, hardware timestamps).",
        "daytime": "Daytime (RFC 867) on UDP and TCP: where it answers and how it writes the time.",
        "time": "Time (RFC 868) on UDP and TCP.",
        "clock": "Where the clock state the services serve comes from.",
        "tcp": "Limits of the TCP services: Daytime, Time and Roughtime.",
        "access": "Who is served, for every service; the same keys in a service's own table apply to that service alone.",
        "rate_limit": "A per-client token bucket, as chrony's ratelimit; off unless enabled, as in chrony and NTPsec.",
        "metrics": "Prometheus metrics (/metrics) and live status for `tock status` (/status) over HTTP.",
        "server": "The process itself.",
        "nts": "Network Time Security (RFC 8915): NTS-KE over TLS 1.3 on TCP, and NTS-protected NTP on every NTP listener; off unless listen (or key_file) is set. See docs/nts.md.",
        "roughtime": "Roughtime (RFC 10049) on UDP and TCP: signed time a client can prove; off unless listen is set, and then needs exactly one of key_file and delegation_file. See docs/roughtime.md.",
    ]

    /// How the files say they were made, so no one edits them by hand.
    static let generatedNote = "Generated from the settings table (Setting.all, Sources/TockConfig/TockdSettings.swift) by scripts/generate-reference; edit the table, not this file."

    // MARK: - Markdown

    /// docs/configuration.md.
    static func markdown() -> String {
        var out: [String] = [
            "# tockd configuration reference",
            "",
            "<!-- \(generatedNote) -->",
            "",
            "Every setting is both a key of the TOML configuration file (`tockd --config /etc/tock/tockd.toml`) and a flag; a flag given on the command line overrides the file's value. deploy/tockd.toml lists the same keys as a commented file to start from. Unknown keys, wrong types and out-of-range values are errors that name the key, the value and the line; `tockd --config FILE --check-config` checks a file and prints every setting as it resolves.",
            "",
            "SIGHUP (`systemctl reload tockd`) reads the file again: the settings marked reloadable change live, without closing a socket; a change to any other is logged as needing a restart, and a file that does not check keeps the running configuration.",
            "",
            "| Key | Flag | Default | Reloadable |",
            "|---|---|---|---|",
        ]
        for setting in Setting.all {
            out.append("| `\(setting.key)` | `\(setting.flag)` | \(cell(setting.shownDefault ?? "none")) | \(setting.isReloadable ? "yes" : "no") |")
        }
        for (table, settings) in tables {
            out += ["", "## [\(table)]", ""]
            if let summary = tableSummaries[table] { out += [escaped(summary), ""] }
            for setting in settings {
                out += ["### `\(setting.key)`", "", escaped(setting.summary) + ".", ""]
                out.append("- Flag: \(flagUsage(setting))")
                out.append("- Type: \(setting.kind.description)")
                out.append("- \(setting.kind == .integer || setting.kind == .number ? "Range" : "Allowed"): \(escaped(setting.allowed))")
                out.append("- Default: \(escaped(setting.shownDefault ?? "none"))")
                if setting.defaultValue == nil, let example = setting.example {
                    out.append("- Example: `\(setting.key.split(separator: ".")[1]) = \(example.toml)`")
                }
                out.append("- Reloadable: \(setting.isReloadable ? "yes (SIGHUP)" : "no (needs a restart)")")
                if let tables = serviceTables(setting) { out.append("- Also in \(tables), for that service alone") }
                out.append("")
            }
        }
        while out.last == "" { out.removeLast() }
        return out.joined(separator: "\n") + "\n"
    }

    /// The service tables that may also hold `setting` (access lists), as a list in words; nil
    /// for a setting only its own table holds.
    static func serviceTables(_ setting: Setting) -> String? {
        guard setting.serviceScope != nil else { return nil }
        let tables = TockService.allCases.map { "[\($0)]" }
        return tables.dropLast().joined(separator: ", ") + " and \(tables.last!)"
    }

    /// The flag as a command line writes it.
    static func flagUsage(_ setting: Setting) -> String {
        let value = "<\(setting.valueName ?? String(setting.flag.dropFirst(2)))>"
        return switch setting.flagShape {
        case .value: "`\(setting.flag) \(value)`"
        case .list: "`\(setting.flag) \(value)` (repeatable)"
        case .toggle: "`\(setting.flag)` / `--no-\(setting.flag.dropFirst(2))`"
        }
    }

    /// `text` with the characters Markdown would read as markup escaped.
    static func escaped(_ text: String) -> String {
        text.replacing("\\", with: "\\\\").replacing("*", with: "\\*").replacing("<", with: "&lt;")
    }

    /// `text` for a table cell.
    static func cell(_ text: String) -> String {
        escaped(text).replacing("|", with: "\\|")
    }

    // MARK: - TOML

    /// deploy/tockd.toml: every key commented out, with its default (or, where there is none
    /// to write, an example) and what it does, so the file as shipped runs with the defaults
    /// and never pins one a later release changes.
    static func toml() -> String {
        var out: [String] = [
            "# tockd configuration (TOML). Install as /etc/tock/tockd.toml and start",
            "#   tockd --config /etc/tock/tockd.toml",
            "# Every key is optional and commented out: the value shown is the default, or an example where",
            "# the default is none or depends on the machine. A flag given on the command line overrides the",
            "# file's value. Check a change with",
            "#   tockd --config /etc/tock/tockd.toml --check-config",
            "# and apply it with SIGHUP (systemctl reload tockd): the keys marked reloadable change live;",
            "# the others need a restart. docs/configuration.md describes every key.",
        ] + wrapped(generatedNote)
        for (table, settings) in tables {
            out += ["", "[\(table)]"]
            if let summary = tableSummaries[table] { out += wrapped(summary) }
            for setting in settings {
                out.append("")
                out += wrapped(setting.summary + ".")
                var facts = ["\(setting.kind == .integer || setting.kind == .number ? "Range" : "Allowed"): \(setting.allowed)."]
                facts.append("Default: \(setting.shownDefault ?? "none").")
                facts.append("Flag: \(setting.flag).")
                if setting.isReloadable { facts.append("Reloadable.") }
                if let tables = serviceTables(setting) { facts.append("Also in \(tables), for that service alone.") }
                out += wrapped(facts.joined(separator: " "))
                if let value = setting.defaultValue ?? setting.example {
                    out.append("# \(setting.key.split(separator: ".")[1]) = \(value.toml)")
                }
            }
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// `text` as comment lines of at most `width` characters, broken between words.
    static func wrapped(_ text: String, width: Int = 100) -> [String] {
        var lines: [String] = []
        var line = "#"
        for word in text.split(separator: " ") {
            if line.count + 1 + word.count > width, line != "#" {
                lines.append(line)
                line = "#"
            }
            line += " " + word
        }
        lines.append(line)
        return lines
    }
}

extension Setting {
    /// The table of the configuration file the key is in.
    var table: String { String(key.split(separator: ".")[0]) }
}
