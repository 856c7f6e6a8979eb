// libFuzzer target: the text parsers that read user or peer input — Daytime replies (as
// `tock` displays them), RFC 868 values, access-list prefixes — and the Daytime writer for
// any instant, which must stay within its buffer — and the real Daytime/Time decision,
// `TextTimeServer.handle`, for any client, port, zone and clock.

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
        // The decision both transports run: a reply fits the buffer; reflection ports, denied
        // clients and an unsynchronised clock get nothing.
        let client = ClientAddress(ipv4: UInt32(bytes[2]) << 24 | UInt32(bytes[3]) << 16, port: UInt16(bytes[4]) << 8 | UInt16(bytes[5]))
        let admission = ClientAdmission(policy: ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [10, 0, 0, 0], length: 8)])))
        let clock: ServerClockState = bytes[1] & 2 == 0 ? .unsynchronized : .local(stratum: 2, now: instant, precisionNanoseconds: 1)
        let zone = LocalZone(offsetSeconds: Int(Int8(bitPattern: bytes[0])) * 900, abbreviation: bytes.prefix(Int(bytes[6] % 12)))
        for service in [TockService.daytime, .time] {
            for transport in [TextTimeServer.Transport.datagram, .stream] {
                var out = [UInt8](repeating: 0, count: TextTimeServer.maximumReplyLength)
                let format = DaytimeFormat.allCases[Int(bytes[7]) % DaytimeFormat.allCases.count]
                let action = out.withUnsafeMutableBytes {
                    TextTimeServer(service: service, format: format, zone: bytes[1] & 4 == 0 ? .utc : .local).handle(from: client, transport: transport, now: instant, localZone: zone, clock: clock, admission: admission, random: 0, reply: $0)
                }
                switch action {
                case .respond(let n):
                    precondition(n > 0 && n <= TextTimeServer.maximumReplyLength, "text reply length")
                    precondition(clock.isSynchronized && bytes[2] != 10, "answered when it must not")
                    precondition(transport == .stream || !ReflectionPorts.isReflectionRisk(client.port), "answered a reflection port")
                case .ignore(let reason):
                    precondition([.reflectionPort, .denied, .unsynchronized].contains(reason), "text drop reason \(reason)")
                }
            }
        }
        let value = RFC868.value(for: instant)
        precondition(RFC868.instant(value, near: instant) == UTCInstant(secondsSinceUnixEpoch: instant.secondsSinceUnixEpoch), "RFC 868 round trip")
    }
    return 0
}
