/// How the Daytime service (RFC 867) writes the time. RFC 867 leaves the syntax free and
/// suggests one; tock offers that one, ISO 8601 and the seed protocol's bare clock.
public enum DaytimeFormat: String, Sendable, CaseIterable {
    /// RFC 867's example style, `Tuesday, February 22, 1982 17:37:43-PST`, with CRLF.
    case rfc867
    /// `2026-11-24T18:36:20Z` (or with a numeric offset in local time), with CRLF.
    case iso8601
    /// `18:36:20` and nothing else, as the seed's server sends it.
    case hms
}

/// Which zone the Daytime text is written in.
public enum DaytimeZone: String, Sendable, CaseIterable {
    /// The host's local time zone (the TZ environment variable or /etc/localtime).
    case local
    /// UTC.
    case utc
}

/// Formats Daytime replies (RFC 867) into buffers the caller owns, without allocating.
public enum Daytime {
    /// The longest reply any format writes: RFC 867 style with the longest names, a 5-digit year
    /// and a 6-character zone.
    public static let maximumReplyLength = 64

    /// Writes the Daytime text for `instant` into `buffer` (at least `maximumReplyLength`
    /// bytes) and returns its length.
    ///
    /// `utcOffsetSeconds` and `zoneAbbreviation` describe the zone to write in (0 and "UTC"
    /// for UTC); `leapSecond` shows an inserted leap second as `23:59:60` while the kernel
    /// repeats `23:59:59`.
    public static func write(
        _ instant: UTCInstant,
        format: DaytimeFormat,
        utcOffsetSeconds: Int,
        zoneAbbreviation: UnsafeRawBufferPointer?,
        leapSecond: Bool = false,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        var civil = CivilTime(instant, utcOffsetSeconds: utcOffsetSeconds)
        if leapSecond, civil.second == 59 { civil.second = 60 }
        var length = 0
        let capacity = min(buffer.count, maximumReplyLength)
        let emit: (UInt8) -> Void = { byte in
            if length < capacity {
                buffer[length] = byte
                length += 1
            }
        }
        switch format {
        case .rfc867:
            CivilTextWriter.appendRFC867(civil, zoneAbbreviation: zoneAbbreviation, emit)
            emit(13)
            emit(10)
        case .iso8601:
            CivilTextWriter.appendISO8601(civil, emit)
            emit(13)
            emit(10)
        case .hms:
            CivilTextWriter.appendHMS(civil, emit)
        }
        return length
    }

    /// The Daytime text for `instant` as a string (tests, tools).
    public static func text(_ instant: UTCInstant, format: DaytimeFormat, utcOffsetSeconds: Int = 0, zoneAbbreviation: String? = "UTC") -> String {
        var out = [UInt8](repeating: 0, count: maximumReplyLength)
        var zone = Array((zoneAbbreviation ?? "").utf8)
        let n = out.withUnsafeMutableBytes { buffer in
            zone.withUnsafeMutableBytes { z in
                write(instant, format: format, utcOffsetSeconds: utcOffsetSeconds, zoneAbbreviation: zoneAbbreviation == nil ? nil : UnsafeRawBufferPointer(z), into: buffer)
            }
        }
        return String(decoding: out[..<n], as: UTF8.self)
    }
}
