import Glibc
import TockClient
import TockProtocol
import TockSockets

/// Renders query results for people and for scripts.
enum QueryReport {
    /// Seconds with a sign and microsecond digits: `+0.000123`.
    static func seconds(_ nanoseconds: Int64, signed: Bool = false) -> String {
        TimeFigure.seconds(nanoseconds, signed: signed)
    }

    /// `2026-11-24T18:36:20.123456Z` and the same instant in the local zone.
    static func times(_ instant: UTCInstant) -> (utc: String, local: String) {
        let utc = CivilTime(instant, utcOffsetSeconds: 0).iso8601(fractionDigits: 6, nanosecond: instant.nanosecondOfSecond)
        var t = time_t(instant.secondsSinceUnixEpoch)
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        let local = CivilTime(instant, utcOffsetSeconds: Int(tm.tm_gmtoff)).iso8601(fractionDigits: 6, nanosecond: instant.nanosecondOfSecond)
        let zone = tm.tm_zone.map { String(cString: $0) } ?? ""
        return (utc, zone.isEmpty ? local : "\(local) \(zone)")
    }

    static var localPrecision: Int8 {
        NTPServer.precision(resolutionNanoseconds: SystemClock.measuredResolutionNanoseconds(samples: 20))
    }

    static func ntpText(_ result: NTPQueryResult, best: NTPSample, host: String) -> String {
        let p = best.packet
        let (utc, local) = times(best.serverTimeAtReceipt)
        let error = best.errorNanoseconds(localPrecision: localPrecision)
        var lines = [
            "server        \(host == result.server.ipString ? result.server.description : "\(host) (\(result.server))")",
            "time          \(utc)",
            "local time    \(local)",
            "offset        \(seconds(best.offsetNanoseconds, signed: true)) s ± \(seconds(error)) s",
            "delay         \(seconds(best.delayNanoseconds)) s",
            "stratum       \(p.stratum)",
            "reference     \(ReferenceID.display(p.referenceID, stratum: p.stratum))",
            "leap          \(p.leap)",
            "root delay    \(seconds(p.rootDelay.nanoseconds)) s",
            "root disp.    \(seconds(p.rootDispersion.nanoseconds)) s",
            "precision     \(TimeFigure.precision(p.precision))",
            "version       \(p.version)",
        ]
        if result.sent > 1 {
            lines.append("samples       \(result.samples.count) of \(result.sent) valid; best by delay; offset spread \(seconds(result.offsetSpreadNanoseconds)) s")
        }
        return lines.joined(separator: "\n")
    }

    static func ntpJSON(_ result: NTPQueryResult, best: NTPSample, host: String) -> String {
        object(ntpFields(result, best: best, host: host))
    }

    static func ntpFields(_ result: NTPQueryResult, best: NTPSample, host: String) -> [(String, String)] {
        let p = best.packet
        return [
            ("protocol", quote("ntp")),
            ("host", quote(host)),
            ("address", quote(result.server.description)),
            ("time", quote(times(best.serverTimeAtReceipt).utc)),
            ("offset", decimal(best.offsetNanoseconds)),
            ("error", decimal(best.errorNanoseconds(localPrecision: localPrecision))),
            ("delay", decimal(best.delayNanoseconds)),
            ("stratum", "\(p.stratum)"),
            ("reference_id", quote(ReferenceID.display(p.referenceID, stratum: p.stratum))),
            ("leap", "\(p.leap.rawValue)"),
            ("root_delay", decimal(p.rootDelay.nanoseconds)),
            ("root_dispersion", decimal(p.rootDispersion.nanoseconds)),
            ("precision", "\(p.precision)"),
            ("version", "\(p.version)"),
            ("samples", "\(result.samples.count)"),
            ("sent", "\(result.sent)"),
            ("offset_spread", decimal(result.offsetSpreadNanoseconds)),
            ("synchronized", "true"),
        ]
    }

    /// The NTS part of a query, after the plain NTP lines: that the answer was authenticated,
    /// with which AEAD, and the key establishment and cookies behind it.
    static func ntsText(_ result: NTSQueryResult, best: NTPSample, host: String) -> String {
        let session = result.session
        var lines = [ntpText(result.ntp, best: best, host: host)]
        lines.append("nts           authenticated (\(session.algorithm)): Unique Identifier echoed, Authenticator verified under the S2C key")
        lines.append("nts-ke        \(session.keServer) in \(seconds(session.keNanoseconds)) s: \(session.cookies.count) cookies, NTP at \(result.ntp.server)")
        lines.append("cookies       \(result.cookiesReceived) received in \(result.ntp.samples.count == 1 ? "the reply" : "\(result.ntp.samples.count) replies"), \(result.cookiesLeft) unused")
        if !session.warnings.isEmpty {
            lines.append("nts warnings  \(session.warnings.map(String.init).joined(separator: ", "))")
        }
        return lines.joined(separator: "\n")
    }

    /// `ntpJSON` with the NTS fields: `authenticated`, `aead`, `cookies` (from NTS-KE),
    /// `reply_cookies`, `ke_seconds`, `ke_server`.
    static func ntsJSON(_ result: NTSQueryResult, best: NTPSample, host: String) -> String {
        let session = result.session
        let fields: [(String, String)] = ntpFields(result.ntp, best: best, host: host) + [
            ("authenticated", "true"),
            ("aead", quote(session.algorithm.description)),
            ("cookies", "\(session.cookies.count)"),
            ("reply_cookies", "\(result.cookiesReceived)"),
            ("ke_seconds", decimal(session.keNanoseconds)),
            ("ke_server", quote(session.keServer.description)),
        ]
        return object(fields)
    }

    static func textTimeText(_ answer: TextTimeAnswer, tcp: Bool, host: String) -> String {
        let transport = tcp ? "TCP" : "UDP"
        switch answer.payload {
        case .daytime(let text):
            return """
                server        \(answer.server) (Daytime over \(transport))
                daytime       \(text)
                delay         \(seconds(answer.t4.nanoseconds(since: answer.t1))) s
                """
        case .time(let instant):
            let (utc, local) = times(instant)
            return """
                server        \(answer.server) (Time over \(transport))
                time          \(utc)
                local time    \(local)
                offset        \(seconds(answer.offsetNanoseconds ?? 0, signed: true)) s ± 0.5 s (RFC 868 has whole seconds)
                delay         \(seconds(answer.t4.nanoseconds(since: answer.t1))) s
                """
        }
    }

    static func textTimeJSON(_ answer: TextTimeAnswer, tcp: Bool, host: String) -> String {
        var fields: [(String, String)] = [
            ("host", quote(host)),
            ("address", quote(answer.server.description)),
            ("transport", quote(tcp ? "tcp" : "udp")),
            ("delay", decimal(answer.t4.nanoseconds(since: answer.t1))),
        ]
        switch answer.payload {
        case .daytime(let text):
            fields.insert(("protocol", quote("daytime")), at: 0)
            fields.append(("text", quote(text)))
        case .time(let instant):
            fields.insert(("protocol", quote("time")), at: 0)
            fields.append(("time", quote(times(instant).utc)))
            fields.append(("offset", decimal(answer.offsetNanoseconds ?? 0)))
        }
        return object(fields)
    }

    static func errorJSON(_ error: ClientError, host: String) -> String {
        var fields: [(String, String)] = [("host", quote(host)), ("error", quote(error.description)), ("synchronized", "false")]
        if case .rejected(_, .kissOfDeath(let code)) = error { fields.append(("kiss_code", quote(code.description))) }
        switch error {
        case .ntsRejected(_, let problem):
            fields.append(("authenticated", "false"))
            if problem == .nak { fields.append(("kiss_code", quote(KissCode.ntsNak.description))) }
        case .ntsKeyEstablishment:
            fields.append(("authenticated", "false"))
        default:
            break
        }
        return object(fields)
    }

    static func roughtimeText(_ answer: RoughtimeQuery.Answer, host: String) -> String {
        let midpoint = UTCInstant(secondsSinceUnixEpoch: Int64(answer.time.midpoint))
        return [
"server        \(host == answer.server.ipString ? answer.server.description : "\(host) (\(answer.server))") (Roughtime over \(answer.tcp ? "TCP" : "UDP"))",
            "midpoint      \(CivilTime(midpoint, utcOffsetSeconds: 0).iso8601(fractionDigits: 0, nanosecond: 0))",
            "radius        \(answer.time.radius) s",
            "local offset  \(seconds(answer.localOffsetNanoseconds, signed: true)) s (local clock minus midpoint)",
            "round trip    \(seconds(answer.received.nanosecondsSinceUnixEpoch - answer.sent.nanosecondsSinceUnixEpoch)) s",
            "version       \(answer.time.version)",
            "verified      signatures, MINT..MAXT, Merkle proof, nonce",
        ].joined(separator: "\n")
    }

    static func roughtimeJSON(_ answer: RoughtimeQuery.Answer, host: String) -> String {
        let midpoint = UTCInstant(secondsSinceUnixEpoch: Int64(answer.time.midpoint))
        return object([
            ("host", quote(host)),
            ("server", quote(answer.server.description)),
            ("protocol", quote("roughtime")),
            ("transport", quote(answer.tcp ? "tcp" : "udp")),
            ("version", quote(answer.time.version.description)),
            ("midpoint", String(answer.time.midpoint)),
            ("midpoint_utc", quote(CivilTime(midpoint, utcOffsetSeconds: 0).iso8601(fractionDigits: 0, nanosecond: 0))),
            ("radius_s", String(answer.time.radius)),
            ("local_offset_s", decimal(answer.localOffsetNanoseconds)),
            ("round_trip_s", decimal(answer.received.nanosecondsSinceUnixEpoch - answer.sent.nanosecondsSinceUnixEpoch)),
            ("verified", "true"),
        ])
    }

    static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(quote($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// Seconds as a JSON number with nanosecond digits.
    static func decimal(_ nanoseconds: Int64) -> String {
        let sign = nanoseconds < 0 ? "-" : ""
        let a = nanoseconds.magnitude
        let frac = String(a % 1_000_000_000)
        return "\(sign)\(a / 1_000_000_000).\(String(repeating: "0", count: 9 - frac.count))\(frac)"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
