// libFuzzer target: NTS on untrusted input (RFC 8915). The first input byte chooses between
// the NTS-KE message reader and server decision (the rest arrives in pieces of varying size,
// as TLS records do), and the NTS datagram path of `NTPServer.handle` with a stand-in cipher
// (a cookie "opens" when its first byte is 0xC0; an authenticator "verifies" when its tag's
// first byte equals the XOR of the associated data), so the fuzzer reaches every branch of
// field parsing, NAKs and reply layout. Asserts that a reply never exceeds the request, that
// an authenticated reply is laid out as RFC 8915 §5.7 says, and that a KE response ends with
// End of Message.

/// A stand-in for nettle: deterministic, cheap, and easy for the fuzzer to satisfy.
struct FuzzCipher: NTSServerCrypto {
    func cookieLength(for algorithm: NTSAEADAlgorithm) -> Int { 36 + 2 * algorithm.keyLength }
    mutating func openCookie(_ cookie: UnsafeRawBufferPointer, keys: UnsafeMutableRawBufferPointer) -> NTSAEADAlgorithm? {
        guard cookie.count >= 1, cookie[0] == 0xC0, let algorithm = NTSAEADAlgorithm(keyLength: (cookie.count - 36) / 2), cookie.count == cookieLength(for: algorithm) else { return nil }
        for i in 0..<(2 * algorithm.keyLength) { keys[i] = UInt8(truncatingIfNeeded: i) }
        return algorithm
    }
    mutating func sealCookie(algorithm: NTSAEADAlgorithm, keys: UnsafeRawBufferPointer, into cookie: UnsafeMutableRawBufferPointer) -> Int {
        let length = cookieLength(for: algorithm)
        precondition(cookie.count >= length && keys.count == 2 * algorithm.keyLength, "cookie buffer")
        for i in 0..<length { cookie[i] = 0xC0 }
        return length
    }
    mutating func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(plaintext.count == ciphertext.count - 16, "plaintext length")
        var x: UInt8 = 0
        for b in associatedData { x ^= b }
        for i in 0..<plaintext.count { plaintext[i] = ciphertext[16 + i] }
        return ciphertext[0] == x
    }
    mutating func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int {
        precondition(ciphertext.count == plaintext.count + 16, "ciphertext length")
        for i in 0..<16 { ciphertext[i] = 0 }
        for i in 0..<plaintext.count { ciphertext[16 + i] = plaintext[i] }
        return plaintext.count + 16
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNTS(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    if data[0] & 1 == 0 {
        // NTS-KE: pieces of 1 to 16 bytes, the sizes taken from the input itself.
        var reader = NTSKEMessageReader(maximumLength: 1024)
        var offset = 0
        var state = NTSKEMessageReader.State.incomplete
        while offset < input.count {
            let piece = 1 + Int(input[offset] & 15)
            state = reader.append(UnsafeRawBufferPointer(rebasing: input[offset..<min(input.count, offset + piece)]))
            offset += piece
        }
        if case .complete(let records) = state {
            let server = NTSKEServer(ntpServer: data[0] & 2 == 0 ? nil : "ntp.example", ntpPort: data[0] & 4 == 0 ? nil : 1123)
            let decision = server.decide(records)
            let response = server.response(for: decision, cookies: Array(repeating: [UInt8](repeating: 0xC0, count: 100), count: 8))
            precondition(response.last?.type == NTSKERecordType.endOfMessage.rawValue, "response ends with End of Message")
            if case .negotiated = decision {} else { precondition(!response.contains { $0.type == NTSKERecordType.newCookie.rawValue }, "cookies only when negotiated") }
        }
        return 0
    }
    // NTS-protected NTP.
    let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
    let server = NTPServer(precision: -25)
    var crypto: FuzzCipher? = FuzzCipher()
    var random = FastRandom(seed: UInt64(size))
    var slot = [UInt8](repeating: 0xEE, count: NTSReplyScratch.slotLength)
    slot.withUnsafeMutableBytes { out in
        let action = server.handle(input, from: ClientAddress(ipv4: 0xC000_0201, port: 40000), receiveTime: now, clock: .local(stratum: 2, now: now, precisionNanoseconds: 30), admission: ClientAdmission(policy: ServicePolicy()), nts: &crypto, reply: out, random: &random)
        guard case .respond(let length, let kind) = action else { return }
        precondition(length <= input.count, "reply longer than request")
        switch kind {
        case .authenticatedTime:
            server.sealAuthenticatedReply(now.advanced(byNanoseconds: 1000), slot: out, length: length, crypto: &crypto!, random: &random)
            let reply = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out)[0..<length])
            let fields = try? NTSRequestFields(parsing: reply)  // a reply has no cookie field: expect a parse error
            precondition(fields == nil, "a reply is not a request")
            precondition(NTPWire.load16(reply, 48) == NTSExtensionFieldType.uniqueIdentifier.rawValue, "UID first")
            let uid = Int(NTPWire.load16(reply, 50))
            precondition(NTPWire.load16(reply, 48 + uid) == NTSExtensionFieldType.authenticator.rawValue, "authenticator second")
            precondition(48 + uid + Int(NTPWire.load16(reply, 48 + uid + 2)) == length, "authenticator last")
        case .kissOfDeath(let code, _):
            precondition(code != .ntsNak || NTPWire.load16(UnsafeRawBufferPointer(out), 48) == NTSExtensionFieldType.uniqueIdentifier.rawValue, "a NAK echoes the UID")
        case .time:
            break
        case .interleavedTime, .timeForInterleavedClient:
            preconditionFailure("an interleaved-mode reply from a server without a client log")
        }
    }
    return 0
}
