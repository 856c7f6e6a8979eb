import Glibc
import TockProtocol

/// Reads the host's clocks. The only place outside tests where tock asks what time it is.
package enum SystemClock {
    /// `CLOCK_REALTIME` now: the UTC time the server serves.
    @inline(__always)
    package static func now() -> UTCInstant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UTCInstant(secondsSinceUnixEpoch: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
    }

    /// `CLOCK_MONOTONIC` now in nanoseconds: for timeouts and rates, which must not follow steps
    /// of the real-time clock.
    @inline(__always)
    package static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// The smallest step between two readings of `CLOCK_REALTIME` seen over a short sample,
    /// or the clock's advertised resolution if that is coarser: the clock's real precision
    /// (RFC 5905 §7.3 "precision"; chrony measures it the same way).
    package static func measuredResolutionNanoseconds(samples: Int = 200) -> Int64 {
        var res = timespec()
        clock_getres(CLOCK_REALTIME, &res)
        let advertised = Int64(res.tv_sec) * 1_000_000_000 + Int64(res.tv_nsec)
        var smallest = Int64.max
        for _ in 0..<samples {
            let a = now()
            var b = now()
            while b == a { b = now() }
            smallest = min(smallest, b.nanoseconds(since: a))
        }
        return max(advertised, smallest)
    }
}
