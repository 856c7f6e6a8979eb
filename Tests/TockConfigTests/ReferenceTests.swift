import Foundation
import Glibc
import Testing
import TockConfig
import TockProtocol
import TockServer

/// The generated reference (docs/configuration.md, deploy/tockd.toml), the defaults it shows,
/// the error codes callers compare on, and the Roughtime worker setting.
@Suite("The configuration reference and defaults")
struct ReferenceTests {
    @Test("Every setting is in the generated Markdown, with its key, flag, default and reloadability")
    func markdownHasEverySetting() {
        let text = SettingsReference.text(.markdown)
        for setting in Setting.all {
            #expect(text.contains("\n### `\(setting.key)`\n"), "\(setting.key) has no section")
            #expect(text.contains("| `\(setting.key)` | `\(setting.flag)` |"), "\(setting.key) is not in the index")
            #expect(text.contains("- Flag: `\(setting.flag)"), "\(setting.flag) is not shown")
        }
        #expect(text.contains("- Reloadable: yes (SIGHUP)") && text.contains("- Reloadable: no (needs a restart)"))
    }

    @Test("Every setting is in the generated TOML, under its table, commented out with a value that reads")
    func tomlHasEverySetting() throws {
        let text = SettingsReference.text(.toml)
        var table = ""
        var found: Set<String> = []
        var uncommented = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("[") { table = String(line.dropFirst().dropLast()) }
            if line.hasPrefix("# "), let eq = line.range(of: " = "), !line.dropFirst(2)[..<eq.lowerBound].contains(" ") {
                found.insert("\(table).\(line.dropFirst(2)[..<eq.lowerBound])")
                uncommented += line.dropFirst(2) + "\n"
            } else {
                uncommented += line + "\n"
            }
        }
        #expect(found == Set(Setting.all.map(\.key)), "keys in the TOML")
        // Commented out, the file is the defaults; uncommented, every example reads.
        #expect(try ConfigFile.parse(text, path: "tockd.toml") == TockdSettings())
        let everything = try ConfigFile.parse(uncommented, path: "tockd.toml")
        for setting in Setting.all {
            #expect(setting.isSet(everything), "\(setting.key)")
            #expect(setting.defaultValue != nil || setting.example != nil, "\(setting.key) shows neither a default nor an example")
        }
    }

    @Test("The committed docs/configuration.md and deploy/tockd.toml are what the table generates (run scripts/generate-reference)")
    func committedFilesMatch() throws {
        for (format, path) in [(SettingsReference.Format.markdown, "docs/configuration.md"), (.toml, "deploy/tockd.toml")] {
            let committed = try String(contentsOfFile: repositoryRoot.appendingPathComponent(path).path, encoding: .utf8)
            #expect(committed == SettingsReference.text(format), "\(path) differs from the table: run scripts/generate-reference")
        }
    }

    @Test("Each default is read from the configuration types' constants")
    func defaultsFromConstants() throws {
        let library = TockServerConfiguration()
        #expect(library.tcpMaxConnections == TockServerConfiguration.defaultTCPMaxConnections)
        #expect(library.tcpConnectionTimeout == TockServerConfiguration.defaultTCPConnectionTimeout)
        #expect(library.clientTableBytes == TockServerConfiguration.defaultClientTableBytes)
        #expect(library.clockSource == TockServerConfiguration.defaultClockSource)
        #expect(library.daytimeFormat == TockServerConfiguration.defaultDaytimeFormat && library.daytimeZone == TockServerConfiguration.defaultDaytimeZone)
        #expect(library.ntpInterleaved == TockServerConfiguration.defaultNTPInterleaved)
        #expect(library.roughtimeWorkers == TockServerConfiguration.defaultWorkers && library.ntpWorkers == TockServerConfiguration.defaultWorkers)
        let keys = NTSCookieKeys.random()
        #expect(keys.periodSeconds == NTSServerConfiguration.defaultKeyPeriodSeconds && keys.keptPeriods == NTSServerConfiguration.defaultKeptKeyPeriods)
        #expect(try TockdSettings().resolve().nts.keyPeriod == NTSServerConfiguration.defaultKeyPeriodSeconds)
        #expect(ResolvedSettings().logLevel == ResolvedSettings.defaultLogLevel)
        // --help's defaults are the same constants, as text.
        #expect(Setting.tcpMaxConnections.defaultText == "\(TockServerConfiguration.defaultTCPMaxConnections)")
        #expect(Setting.clientTableSize.defaultText == "\(TockServerConfiguration.defaultClientTableBytes >> 20)")
        #expect(Setting.ntsKeyPeriod.defaultText == "\(NTSServerConfiguration.defaultKeyPeriodSeconds)")
        #expect(Setting.ntsKeyPeriod.summary.contains("the \(NTSServerConfiguration.defaultKeptKeyPeriods) periods before"))
        #expect(Setting.tcpTimeout.helpText.contains("Default: 5.0."))
        #expect(Setting.interleaved.shownDefault == "on" && Setting.rateLimit.shownDefault == "off")
        #expect(Setting.logLevel.defaultText == "\(ResolvedSettings.defaultLogLevel)")
        #expect(Setting.workers.allowed == "\(TockServerConfiguration.workerRange.lowerBound)-\(TockServerConfiguration.workerRange.upperBound)")
    }

    @Test("roughtime.workers and --roughtime-workers land in roughtimeWorkers, apart from NTP's workers")
    func roughtimeWorkers() throws {
        let defaults = try TockdSettings().resolve().configuration
        #expect(defaults.roughtimeWorkers == TockServerConfiguration.defaultWorkers)
        #expect(Setting.roughtimeWorkers.key == "roughtime.workers" && Setting.roughtimeWorkers.flag == "--roughtime-workers")
        #expect(Setting.roughtimeWorkers.allowed == Setting.workers.allowed && Setting.roughtimeWorkers.defaultText == Setting.workers.defaultText)

        let file = try ConfigFile.parse("[roughtime]\nworkers = 3\n[ntp]\nworkers = 5\n", path: "t.toml")
        let fromFile = try file.resolve().configuration
        #expect(fromFile.roughtimeWorkers == 3 && fromFile.ntpWorkers == 5)

        var flags = TockdSettings()
        try Setting.roughtimeWorkers.read(flag: ["7"], into: &flags)
        let merged = try file.overridden(by: flags).resolve().configuration
        #expect(merged.roughtimeWorkers == 7 && merged.ntpWorkers == 5, "the flag overrides the file's value, NTP's stays")

        var onlyNTP = TockdSettings()
        onlyNTP.workers = 4
        #expect(try onlyNTP.resolve().configuration.roughtimeWorkers == TockServerConfiguration.defaultWorkers)

        for bad in ["0", "1025"] {
            var scratch = TockdSettings()
            do throws(SettingError) {
                try Setting.roughtimeWorkers.read(flag: [bad], into: &scratch)
                Issue.record("accepted --roughtime-workers \(bad)")
            } catch {
                #expect(error.code == .outOfRange && error.description == "--roughtime-workers \(bad): out of range; allowed: 1-1024")
            }
        }
        let outOfRange = ConfigFileTestsSupport.errors("[roughtime]\nworkers = 0\n")
        #expect(outOfRange.map(\.code) == [.outOfRange] && outOfRange.first?.key == "roughtime.workers")
        #expect(Setting.roughtimeWorkers.isReloadable == false)
    }

    @Test("Settings errors carry a code callers compare on")
    func errorCodes() throws {
        func code(_ layer: TockdSettings) -> (SettingError.Code, Setting, String)? {
            do throws(SettingError) {
                _ = try layer.resolve()
                return nil
            } catch {
                return (error.code, error.setting, error.value)
            }
        }
        var layer = TockdSettings()
        layer.clockSource = .unsynchronized
        layer.stratum = 3
        #expect(code(layer).map { $0.0 == .conflict && $0.1 == .stratum } == true)

        layer = TockdSettings()
        layer.ntsKE = ["127.0.0.1:0"]
        #expect(code(layer).map { $0.0 == .missing && $0.1 == .ntsCertificate } == true)

        layer = TockdSettings()
        layer.roughtime = ["127.0.0.1:0"]
        #expect(code(layer).map { $0.0 == .missing && $0.1 == .roughtimeKey } == true)

        layer = TockdSettings()
        layer.stratum = 99
        #expect(code(layer).map { $0.0 == .outOfRange && $0.1 == .stratum } == true)

        // A file NTS-KE cannot use is blamed on the setting that names it, by the load
        // error's code: the private key when it is missing, the certificate when it is.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tock-reference-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = directory.appendingPathComponent("key.pem").path
        let certificate = directory.appendingPathComponent("cert.pem").path
        layer = TockdSettings()
        layer.ntsKE = ["127.0.0.1:0"]
        layer.ntsCertificate = certificate
        layer.ntsPrivateKey = key
        #expect(code(layer).map { $0.0 == .unusableFile && $0.1 == .ntsPrivateKey && $0.2 == key } == true, "no key file")

        #expect(FileManager.default.createFile(atPath: key, contents: Data("not a key".utf8), attributes: [.posixPermissions: 0o600]))
        #expect(code(layer).map { $0.0 == .unusableFile && $0.1 == .ntsCertificate && $0.2 == certificate } == true, "no certificate file")

        #expect(FileManager.default.createFile(atPath: certificate, contents: Data("not a certificate".utf8)))
        #expect(code(layer).map { $0.0 == .unusableFile && $0.1 == .ntsCertificate } == true, "not a certificate")
    }

    @Test("Every table of the file is introduced in the reference")
    func tablesIntroduced() {
        let text = SettingsReference.text(.markdown)
        for table in Set(Setting.all.map { String($0.key.split(separator: ".")[0]) }) {
            let header = "\n## [\(table)]\n\n"
            #expect(text.contains(header), "[\(table)]")
            if let range = text.range(of: header) {
                #expect(!text[range.upperBound...].hasPrefix("###"), "[\(table)] has no summary")
            }
        }
    }
}

/// The file errors a text gives, for tests outside ConfigFileTests.
enum ConfigFileTestsSupport {
    static func errors(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [ConfigFileError] {
        do {
            let settings = try ConfigFile.parse(text, path: "test.toml")
            Issue.record("parsed, expected an error: \(settings)", sourceLocation: sourceLocation)
            return []
        } catch {
            return error.all
        }
    }
}
