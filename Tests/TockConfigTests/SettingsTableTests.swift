import Foundation
import Logging
import Testing
import TockConfig
import TockProtocol
import TockServer

/// The settings table: one entry per setting drives the file, the flags, the reload and the
/// printed configuration, and defaults come from the configuration types.
@Suite("The settings table")
struct SettingsTableTests {
    @Test("Every field of the layer has exactly one entry, with a distinct key and flag")
    func oneEntryPerField() {
        let fields = Mirror(reflecting: TockdSettings()).children.count
        #expect(Setting.all.count == fields, "a field without an entry (or the reverse)")
        #expect(Set(Setting.all.map(\.key)).count == Setting.all.count)
        #expect(Set(Setting.all.map(\.flag)).count == Setting.all.count)
        for setting in Setting.all {
            #expect(setting.key.split(separator: ".").count == 2, "\(setting.key) is table.key")
            #expect(setting.flag.hasPrefix("--"))
            #expect(!setting.allowed.isEmpty && !setting.summary.isEmpty)
            #expect(Setting.named(setting.key) == setting)
        }
        // The listeners' and the service tables' names are the services'.
        for service in TockService.allCases where service != .ntsKE {
            #expect(Setting.all.contains { $0.key == "\(service).listen" && $0.flag == "--\(service)" })
        }
        // NTS-KE's listeners sit with the other NTS settings, in [nts].
        #expect(Setting.ntsKE.key == "nts.listen" && Setting.ntsKE.flag == "--nts-ke")
    }

    @Test("Defaults are the configuration types' own")
    func defaults() throws {
        let resolved = try TockdSettings().resolve()
        let c = resolved.configuration
        let library = TockServerConfiguration()
        #expect(c.tcpMaxConnections == library.tcpMaxConnections)
        #expect(c.tcpConnectionTimeout == library.tcpConnectionTimeout)
        #expect(c.clientTableBytes == library.clientTableBytes)
        #expect(c.daytimeFormat == library.daytimeFormat && c.daytimeZone == library.daytimeZone)
        #expect(c.clockSource == library.clockSource && c.ntpWorkers == library.ntpWorkers)
        #expect(c.ntpPolicy == ServicePolicy() && c.daytimePolicy == ServicePolicy() && c.timePolicy == ServicePolicy())
        #expect(resolved.logLevel == ResolvedSettings().logLevel)
        #expect(c.ntpListeners.map(\.port).allSatisfy { $0 == TockService.ntp.wellKnownPort } && !c.ntpListeners.isEmpty)
        // --help's defaults are read from the same place.
        #expect(Setting.tcpMaxConnections.defaultText == "\(library.tcpMaxConnections)")
        #expect(Setting.rateLimitBurst.defaultText == "\(RateLimitPolicy().burst)")
        #expect(Setting.rateLimitInterval.defaultText == "\(RateLimitPolicy().intervalLog2)")
        #expect(Setting.stratum.defaultText?.hasPrefix("\(ClockSource.defaultKernelStratum) for kernel") == true)
        // A rate limit switched on starts from RateLimitPolicy()'s values.
        var on = TockdSettings()
        on.rateLimit = true
        #expect(try on.resolve().configuration.ntpPolicy.rateLimit == RateLimitPolicy())
    }

    @Test("Flags are read by the table: values, lists, toggles and their errors")
    func flags() throws {
        var layer = TockdSettings()
        try Setting.stratum.read(flag: ["9"], into: &layer)
        try Setting.rateLimitInterval.read(flag: ["-4"], into: &layer)
        try Setting.tcpTimeout.read(flag: ["0.5"], into: &layer)
        try Setting.allow.read(flag: ["ntp=10.0.0.0/8", "192.0.2.0/24"], into: &layer)
        try Setting.rateLimit.read(flag: ["false"], into: &layer)
        try Setting.denyKiss.read(flag: ["RSTR"], into: &layer)
        try Setting.logLevel.read(flag: ["debug"], into: &layer)
        #expect(layer.stratum == 9 && layer.rateLimitInterval == -4 && layer.tcpTimeout == 0.5)
        #expect(layer.allow == ["ntp=10.0.0.0/8", "192.0.2.0/24"] && layer.rateLimit == false)
        #expect(layer.denyKiss == .restrict && layer.logLevel == .debug)

        let cases: [(Setting, [String], String)] = [
            (.stratum, ["x"], "--stratum x: not an integer; allowed: 1-15"),
            (.stratum, ["16"], "--stratum 16: out of range; allowed: 1-15"),
            (.tcpTimeout, ["0"], "--tcp-timeout 0: out of range; allowed: 0.1-300 (seconds)"),
            (.allow, ["10.0.0.0/8", "dns=10.0.0.0/8"], "--allow dns=10.0.0.0/8: unknown service 'dns'"),
            (.daytimeFormat, ["rfc3339"], "--daytime-format rfc3339: not one of the choices; allowed: rfc867, iso8601, hms"),
            (.denyKiss, ["RATE"], "--deny-kiss RATE: not a denial kiss code; allowed: DENY or RSTR"),
            (.user, [""], "--user \"\": empty"),
        ]
        for (setting, texts, expected) in cases {
            var scratch = TockdSettings()
            #expect(throws: SettingError.self) { try setting.read(flag: texts, into: &scratch) }
            do {
                try setting.read(flag: texts, into: &scratch)
            } catch {
                #expect(error.description.hasPrefix(expected), "\(error)")
            }
        }
    }

    @Test("--no-rate-limit turns off a limit the file enables, and flags override setting by setting")
    func flagsOverrideFile() throws {
        let file = try ConfigFile.parse("[rate_limit]\nenabled = true\nburst = 3\n[clock]\nsource = \"local\"\nstratum = 7\n", path: "t.toml")
        var flags = TockdSettings()
        try Setting.rateLimit.read(flag: ["false"], into: &flags)
        let merged = file.overridden(by: flags)
        #expect(merged.rateLimit == false && merged.rateLimitBurst == 3 && merged.stratum == 7)
        #expect(try merged.resolve().configuration.ntpPolicy.rateLimit == nil)
        #expect(try file.resolve().configuration.ntpPolicy.rateLimit?.burst == 3)
        #expect(merged.differences(from: file) == [.rateLimit])
    }

    @Test("Per-service tables go through TockService: [ntp], [daytime] and [time] limit their access lists to themselves")
    func serviceTables() throws {
        for service in TockService.allCases {
            let layer = try ConfigFile.parse("[\(service)]\nallow = [\"192.0.2.0/24\"]\n", path: "t.toml")
            #expect(layer.allow == ["\(service)=192.0.2.0/24"])
            let policies = try layer.policies()
            for other in TockService.allCases {
                #expect(policies[other].access.allow.isEmpty == (other != service), "\(service) → \(other)")
            }
        }
    }

    @Test("--check-config prints every setting once, as key = value, with what is in force")
    func description() throws {
        var layer = try ConfigFile.parse("[ntp]\nlisten = [\"127.0.0.1:1123\"]\n[access]\ndeny = [\"ntp=10.0.0.0/8\", \"192.0.2.0/24\"]\n", path: "t.toml")
        layer.stratum = 4
        let text = try layer.resolve().description(layer: layer, file: "t.toml")
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first == "configuration OK (t.toml and flags)")
        #expect(lines.count == Setting.all.count + 1)
        for setting in Setting.all {
            #expect(lines.contains { $0.hasPrefix(setting.key + " ") || $0.hasPrefix("# \(setting.key) ") }, "\(setting.key)")
        }
        #expect(lines.contains { $0.hasPrefix("ntp.listen ") && $0.hasSuffix("= [\"127.0.0.1:1123\"]") })
        #expect(lines.contains { $0.hasPrefix("daytime.listen ") && $0.hasSuffix("= []  # default") })
        #expect(lines.contains { $0.hasPrefix("clock.stratum ") && $0.hasSuffix("= 4") })
        #expect(lines.contains { $0.hasPrefix("access.deny ") && $0.hasSuffix("= [\"ntp=10.0.0.0/8\", \"192.0.2.0/24\"]") })
        #expect(lines.contains("# metrics.listen is not set: off"))
    }
}
