import ArgumentParser
import TockConfig

/// tockd's setting flags: one option per entry of `Setting.all`, named and documented by the
/// entry, so a setting added to the table gets its flag and its `--help` text with no code here.
///
/// ArgumentParser learns a type's options by reflecting over an instance (`Mirror`) and reads
/// them back by decoding with the same names. This type answers the reflection with an option
/// per table entry (`CustomReflectable`) instead of one declared property per setting, and
/// decodes each by its flag's name.
struct SettingFlags: ParsableArguments, CustomReflectable {
    /// The settings given, each with its values as typed (a toggle's as `true` or `false`).
    private var given: [(setting: Setting, texts: [String])] = []

    init() {}

    /// The option for each setting, labelled with its flag's name.
    var customMirror: Mirror {
        Mirror(self, children: Setting.all.map { (label: Optional(Self.name(of: $0)), value: Self.option(for: $0) as Any) })
    }

    /// The flag without its dashes: the option's name and coding key.
    static func name(of setting: Setting) -> String {
        String(setting.flag.drop { $0 == "-" })
    }

    static func option(for setting: Setting) -> Any {
        let name = NameSpecification.customLong(name(of: setting))
        let help = ArgumentHelp(setting.helpText, valueName: setting.valueName)
        return switch setting.flagShape {
        case .value(let allowsLeadingDash): Option<String?>(name: name, parsing: allowsLeadingDash ? .unconditional : .next, help: help)
        case .list: Option<[String]>(wrappedValue: [], name: name, parsing: .singleValue, help: help)
        case .toggle: Flag<Bool?>(name: name, inversion: .prefixedNo, help: help)
        }
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for setting in Setting.all {
            let key = Key(stringValue: Self.name(of: setting))
            let texts: [String] = switch setting.flagShape {
            case .value: try container.decode(Option<String?>.self, forKey: key).wrappedValue.map { [$0] } ?? []
            case .list: try container.decode(Option<[String]>.self, forKey: key).wrappedValue
            case .toggle: try container.decode(Flag<Bool?>.self, forKey: key).wrappedValue.map { [$0 ? "true" : "false"] } ?? []
            }
            if !texts.isEmpty { given.append((setting, texts)) }
        }
    }

    /// The command line's settings layer: only what was given, each value checked.
    func layer() throws(SettingError) -> TockdSettings {
        var layer = TockdSettings()
        for (setting, texts) in given {
            try setting.read(flag: texts, into: &layer)
        }
        return layer
    }
}
