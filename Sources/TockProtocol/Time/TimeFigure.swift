/// How tock writes time figures for people, in one place, so that the server's log, `tock
/// status` and `tock query` show the same value the same way.
public enum TimeFigure {
    /// Seconds with microsecond resolution, rounded half up: `0.000015`, `-1.234567`, or
    /// `+0.000042` when `signed`. The unit (`s`) is the caller's.
    public static func seconds(_ nanoseconds: Int64, signed: Bool = false) -> String {
        let sign = nanoseconds < 0 ? "-" : (signed ? "+" : "")
        let a = nanoseconds.magnitude
        var whole = a / 1_000_000_000
        var micros = (a % 1_000_000_000 + 500) / 1000
        if micros == 1_000_000 {
            whole += 1
            micros = 0
        }
        let frac = String(micros)
        return "\(sign)\(whole).\(String(repeating: "0", count: 6 - frac.count))\(frac)"
    }

    /// A clock precision as RFC 5905 §7.3 defines it, a power of two, with its value:
    /// `2^-25 s (30 ns)`; the nanoseconds are rounded up, as a bound.
    public static func precision(_ log2Seconds: Int8) -> String {
        "2^\(log2Seconds) s (\(NTPServer.nanoseconds(precision: log2Seconds)) ns)"
    }
}
