// libFuzzer target: Roughtime on untrusted input (RFC 10049). The input is read four ways:
// as the start of a TCP stream by the framing decision (fed one byte at a time, it must decide
// as it does on the whole, and a complete packet must lie within 1024...2048 bytes);
// as a packet and as a bare message by the zero-copy reader (every value also tried as a
// nested message, as SREP, CERT and DELE are); as a reply by the client's checks; and as a
// request by the server core, whose decision, batch and reply template run with stand-in
// crypto. A request the server queues is answered twice in one batch (a PATH of one level),
// and each reply must be no longer than the request and must pass the client's checks, which
// makes the client a second reader of everything the server writes.

/// A stand-in for SHA-512 truncated to 32 bytes: deterministic and cheap, four FNV-1a lanes.
struct FuzzHasher: RoughtimeHasher {
    mutating func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        for lane in 0..<4 {
            var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(lane)
            for part in [first, second, third] {
                for b in part { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
                h = (h ^ 0xFF) &* 0x0000_0100_0000_01B3
            }
            output.storeBytes(of: h, toByteOffset: 8 * lane, as: UInt64.self)
        }
    }
}

/// A stand-in for Ed25519 that the stand-in verifier accepts: the signature is
/// H(key ‖ message) ‖ H(message ‖ key).
struct FuzzSigner: RoughtimeSigner, RoughtimeSignatureVerifier {
    let publicKey: [UInt8]

    static func signature(_ message: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        var hasher = FuzzHasher()
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        hasher.hash(key, message, none, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<32]))
        hasher.hash(message, key, none, into: UnsafeMutableRawBufferPointer(rebasing: out[32..<64]))
    }

    mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool {
        publicKey.withUnsafeBytes { Self.signature(message, key: $0, into: signature) }
        return true
    }

    func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer, publicKey: UnsafeRawBufferPointer) -> Bool {
        guard signature.count == 64 else { return false }
        var expected = [UInt8](repeating: 0, count: 64)
        expected.withUnsafeMutableBytes { Self.signature(message, key: publicKey, into: $0) }
        return expected.withUnsafeBytes { RoughtimeWire.equal($0, signature) }
    }
}

/// Reads every value of `message` as a nested message too, a few levels down.
func walk(_ message: RoughtimeMessage, depth: Int) {
    for i in 0..<message.count {
        let tag = message.tag(at: i)
        let range = message.valueRange(at: i)
        precondition(range.lowerBound >= 8 * message.count && range.upperBound <= message.bytes.count, "value outside the message")
        precondition(message.range(of: tag) == range, "binary search finds the tag")
        if depth < 3, let nested = try? RoughtimeMessage(validating: UnsafeRawBufferPointer(rebasing: message.bytes[range])) {
            walk(nested, depth: depth + 1)
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRoughtime(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)

    // The stream framing, one byte at a time: once it decides, every longer prefix gets the
    // same decision.
    let whole = RoughtimeStream.requestFrame(input)
    var decided: RoughtimeFrameDecision?
    for k in 0...size {
        let decision = RoughtimeStream.requestFrame(UnsafeRawBufferPointer(rebasing: input[0..<k]))
        if let decided {
            precondition(decision == decided, "a longer prefix changed the framing decision")
            continue
        }
        switch decision {
        case .needMore(let count): precondition(count > k && count <= RoughtimeStream.maximumRequestLength, "needMore within bounds")
        case .complete(let length): precondition(length == k && length >= RoughtimeWire.minimumRequestLength && length <= RoughtimeStream.maximumRequestLength, "complete packet within bounds")
        case .reject: break
        }
        if case .needMore = decision { continue }
        decided = decision
    }
    precondition(decided == nil || decided == whole, "the whole input decides as its prefix did")

    // The reader.
    if let message = try? RoughtimeMessage(packet: input) { walk(message, depth: 0) }
    if let message = try? RoughtimeMessage(validating: input) { walk(message, depth: 0) }

    // The client, on the input as a reply to a fixed request.
    var hasher = FuzzHasher()
    let longTermKey = [UInt8](repeating: 0x4C, count: 32)
    var longTerm = FuzzSigner(publicKey: longTermKey)
    var online = FuzzSigner(publicKey: [UInt8](repeating: 0x0E, count: 32))
    let sent = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 0x11, count: 32), length: 1472)
    sent.withUnsafeBytes { request in
        _ = try? RoughtimeClient.verify(request: request, reply: input, longTermPublicKey: longTermKey, verifier: online, hasher: &hasher)
    }

    // The server, on the input as a request.
    let certificate = try! RoughtimeCertificate(onlinePublicKey: online.publicKey, minimumTime: 0, maximumTime: 4_000_000_000, longTermSigner: &longTerm)
    let policy = RoughtimeRequestPolicy(srv: hasher.srv(forLongTermKey: longTermKey))
    var server = RoughtimeServer(policy: policy, certificate: certificate, maximumDepth: 1)
    // The one decision call production makes, with an admitted client and a synchronised clock.
    let readTime = UTCInstant(secondsSinceUnixEpoch: 1_800_000_000)
    let clock = ServerClockState.local(stratum: 1, now: readTime, precisionNanoseconds: 30)
    let admission = ClientAdmission<NoRateLimit>(policy: ServicePolicy())
    let client = ClientAddress(ipv4: 0xC633_6407, port: 40_000)
    let decision = policy.decide(input)
    let first = server.receive(input, from: client, readTime: readTime, clock: clock, admission: admission, random: 0, hasher: &hasher)
    guard case .queued(let ticket) = first else {
        guard case .ignore(let why) = decision, first == .ignore(why.dropReason) else { preconditionFailure("receive follows decide") }
        return 0
    }
    guard case .respond(let accepted) = decision else { preconditionFailure("queued what decide ignored") }
    let second = server.receive(input, from: client, readTime: readTime, clock: clock, admission: admission, random: 0, hasher: &hasher)
    guard case .queued(let again) = second, again.batch == ticket.batch, again.index == 1 else { preconditionFailure("second copy not queued") }
    precondition(server.seal(readTime: readTime, clock: clock, signer: &online, hasher: &hasher) == .sealed(signatures: 1), "sealed")
    var reply = [UInt8](repeating: 0xEE, count: 1024)
    for t in [ticket, again] {
        reply.withUnsafeMutableBytes { out in
            let length = server.writeReply(t, into: out)
            precondition(length <= size, "reply longer than request")
            let written = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out)[0..<length])
            do {
                let time = try RoughtimeClient.verify(request: input, reply: written, longTermPublicKey: longTermKey, verifier: online, hasher: &hasher)
                precondition(time == RoughtimeVerifiedTime(midpoint: 1_800_000_000, radius: 3, version: accepted.version), "verified time")
            } catch {
                preconditionFailure("the client rejects the server's reply: \(error)")
            }
        }
    }
    return 0
}
