// libFuzzer target: the NTP wire parsers a client uses on untrusted replies — the header
// decoder, the extension-field/MAC walker, and the RFC 5905 reply checks. Compiled together
// with Sources/TockProtocol by scripts/fuzz (one module, so no import).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNTPPacket(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if let packet = try? NTPPacket(decoding: bytes) {
        // Whatever decodes must re-encode to the same 48 bytes.
        precondition(packet.bytes.elementsEqual(bytes.prefix(48)), "header round trip")
        _ = try? NTPTrailer(validating: bytes, version: packet.version)
        let exchange = NTPClientExchange(version: 4, requestTransmit: packet.originTimestamp)
        let t1 = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
        if case .success(let sample) = exchange.evaluate(reply: Array(bytes), t1: t1, t4: t1.advanced(byNanoseconds: 1000)) {
            _ = sample.offsetNanoseconds
            _ = sample.rootDistanceNanoseconds
        }
    }
    _ = RFC868.decode(Array(bytes), near: UTCInstant(secondsSinceUnixEpoch: 2_085_978_496))
    return 0
}
