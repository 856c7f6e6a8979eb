// libFuzzer target: the text parsers that read user or peer input — Daytime replies (as
// `tock` displays them), RFC 868 values, access-list prefixes — and the Daytime writer for
// any instant, which must stay within its buffer.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzText(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = try? AddressPrefix(parsing: text) { s in
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        let values = parts.compactMap { UInt8($0) }
        return values.count == 4 ? values : nil
    }
    if size >= 8 {
        let seconds = Int64(bitPattern: bytes.loadUnaligned(as: UInt64.self)) % (200 * 365 * 86_400)
        let instant = UTCInstant(secondsSinceUnixEpoch: seconds)
        for format in DaytimeFormat.allCases {
            var out = [UInt8](repeating: 0, count: Daytime.maximumReplyLength)
            let n = out.withUnsafeMutableBytes { Daytime.write(instant, format: format, utcOffsetSeconds: Int(Int8(bitPattern: bytes[0])) * 900, zoneAbbreviation: UnsafeRawBufferPointer(rebasing: bytes.prefix(6)), leapSecond: bytes[1] & 1 == 1, into: $0) }
            precondition(n > 0 && n <= Daytime.maximumReplyLength, "daytime length")
        }
        let value = RFC868.value(for: instant)
        precondition(RFC868.instant(value, near: instant) == UTCInstant(secondsSinceUnixEpoch: instant.secondsSinceUnixEpoch), "RFC 868 round trip")
    }
    return 0
}
