/// NTS-protected NTPv4, client side (RFC 8915 §5.7): the request a client sends with a cookie
/// and the checks its reply must pass before its time is believed. No I/O and no clock reads;
/// the AEAD comes in through `NTSClientCipher`, so this module needs no crypto library.
///
/// Two layers: `NTSClientPacket` writes requests and checks replies in caller buffers without
/// allocating (a load generator's per-packet path), and `NTSClientExchange` wraps it in values
/// for a query, adding the time checks of `NTPClientExchange`.

/// The AEAD of one NTS session as a client uses it: sealing under the client-to-server key and
/// opening under the server-to-client key that NTS-KE exported (RFC 8915 §5.1), in the caller's
/// buffers.
///
/// A conformer is keyed for one session when it is made; the core never sees the keys. For
/// AES-SIV-CMAC (RFC 5297) the output is the 16-byte synthetic IV (the tag) followed by the
/// ciphertext, the layout RFC 8915 §5.6 puts in the Authenticator field.
public protocol NTSClientCipher {
    /// AEAD encryption under C2S: writes the tag then the ciphertext (`plaintext.count + 16`
    /// bytes) into `ciphertext` and returns that length.
    mutating func seal(nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int

    /// AEAD decryption under S2C: writes `ciphertext.count - 16` bytes of plaintext and returns
    /// whether the tag verified. The plaintext must not be used when it did not.
    mutating func open(nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool
}

/// Why a client refused an NTS-protected reply (RFC 8915 §5.7, client side), or the NAK that
/// tells it to run NTS-KE again.
public enum NTSReplyProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// The header failed RFC 5905's checks (`NTPClientExchange`): bogus origin, a kiss, an
    /// unsynchronised server, zero timestamps, a root distance too large.
    case ntp(NTPReplyProblem)
    /// The Unique Identifier is missing or not ours: not an answer to this request (§5.7: the
    /// client discards it).
    case uniqueIdentifierMismatch
    /// No Authenticator: a plain NTP reply or an unauthenticated kiss. An NTS client must never
    /// take its time (§5.7: "MUST discard unprotected responses to NTS-protected requests").
    case notAuthenticated
    /// The Authenticator did not verify under the S2C key: forged or altered on the way.
    case authenticationFailed
    /// The NTS extension fields break RFC 8915 §5 or RFC 7822 (lengths that do not add up, a
    /// field after the Authenticator, a repeated Unique Identifier).
    case malformed(String)
    /// An NTS NAK (§5.7): the kiss `NTSN` with our Unique Identifier. The server could not
    /// open the cookie (its keys rotated, or another server's cookie), so the client's cookies
    /// are useless: run NTS-KE again.
    case nak

    /// What went wrong, for a person.
    public var description: String {
        switch self {
        case .ntp(let problem): problem.description
        case .uniqueIdentifierMismatch: "NTS reply does not echo our Unique Identifier"
        case .notAuthenticated: "reply is not NTS-authenticated (no Authenticator field): refused"
        case .authenticationFailed: "NTS Authenticator does not verify under the S2C key: reply forged or altered, refused"
        case .malformed(let why): "malformed NTS reply: \(why)"
        case .nak: "NTS NAK (kiss NTSN): the server cannot use our cookie (its cookie keys rotated, or the cookie is another server's); run NTS-KE again"
        }
    }
}

/// NTS request writing and reply checking in buffers the caller owns (RFC 8915 §5.3–§5.7),
/// allocation-free for a load generator; `NTSClientExchange` is the friendly form.
public enum NTSClientPacket {
    /// The Unique Identifier body length this client sends: 32 bytes, the least RFC 8915 §5.3
    /// allows and what chrony sends.
    public static let uniqueIdentifierLength = 32
    /// The Authenticator nonce length this client sends: 16 bytes, the least RFC 8915 §5.6
    /// allows for the AES-SIV algorithms.
    public static let nonceLength = 16
    /// The AES-SIV tag (synthetic IV) length (RFC 5297 §2.6).
    public static let tagLength = 16
    /// The most cookies a client holds and asks for at once: eight, what NTS-KE hands out
    /// (RFC 8915 §4.1.6 suggests eight) and what the server returns at most per reply.
    public static let maximumCookies = 8

    /// An extension field's length for a body of `bodyLength` bytes, padded to a multiple of 4
    /// (RFC 7822 §3).
    @inlinable
    public static func fieldLength(body bodyLength: Int) -> Int {
        4 + (bodyLength + 3) & ~3
    }

    /// The length of a request with a cookie of `cookieLength` bytes asking for `cookiesWanted`
    /// cookies back: header, Unique Identifier, cookie, `cookiesWanted - 1` placeholders of the
    /// cookie's length (§5.5), Authenticator with nonce and tag.
    @inlinable
    public static func requestLength(cookieLength: Int, cookiesWanted: Int) -> Int {
        NTPPacket.headerLength + fieldLength(body: uniqueIdentifierLength) + cookiesWanted * fieldLength(body: cookieLength) + 8 + nonceLength + tagLength
    }

    /// Writes an NTS-protected NTPv4 request (RFC 8915 §5.7) into `buffer` and returns its
    /// length (`requestLength`).
    ///
    /// The header is a mode-3 NTPv4 request whose only non-zero field is `transmit` (RFC 4330
    /// §5: it says nothing about our clock; the server echoes it as the origin). Then the
    /// Unique Identifier (`uniqueIdentifier`, 32 bytes), the cookie, `cookiesWanted - 1`
    /// Cookie Placeholders as long as the cookie (§5.5: the server returns one cookie for the
    /// cookie and one per placeholder), and last the Authenticator: `nonce` and the AEAD tag
    /// under C2S over everything before it with an empty plaintext (§5.6). `cookiesWanted` is
    /// clamped to 1...8; `buffer` must hold `requestLength` bytes.
    @inlinable
    public static func writeRequest<Cipher: NTSClientCipher>(
        transmit: NTPTimestamp,
        uniqueIdentifier: UnsafeRawBufferPointer,
        cookie: UnsafeRawBufferPointer,
        cookiesWanted: Int,
        nonce: UnsafeRawBufferPointer,
        cipher: inout Cipher,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let wanted = min(max(cookiesWanted, 1), maximumCookies)
        let cookieField = fieldLength(body: cookie.count)
        let nonceField = (nonce.count + 3) & ~3
        let length = NTPPacket.headerLength + fieldLength(body: uniqueIdentifier.count) + wanted * cookieField + 8 + nonceField + tagLength
        precondition(buffer.count >= length, "an NTS request needs \(length) bytes")
        precondition(!nonce.isEmpty && !cookie.isEmpty, "an NTS request needs a nonce and a cookie")
        // Header: NTPv4, mode 3, everything zero but the transmit timestamp.
        UnsafeMutableRawBufferPointer(rebasing: buffer[0..<NTPPacket.headerLength]).initializeMemory(as: UInt8.self, repeating: 0)
        buffer[0] = 4 << 3 | NTPMode.client.rawValue
        NTPWire.store64(transmit.rawValue, buffer, NTPWire.transmitOffset)
        var offset = NTPPacket.headerLength
        offset = writeField(.uniqueIdentifier, body: uniqueIdentifier, into: buffer, at: offset)
        offset = writeField(.cookie, body: cookie, into: buffer, at: offset)
        for _ in 1..<wanted {
            // A placeholder's body is ignored by the server; zeros, as chrony sends.
            let end = offset + cookieField
            NTPWire.store16(NTSExtensionFieldType.cookiePlaceholder.rawValue, buffer, offset)
            NTPWire.store16(UInt16(cookieField), buffer, offset + 2)
            UnsafeMutableRawBufferPointer(rebasing: buffer[(offset + 4)..<end]).initializeMemory(as: UInt8.self, repeating: 0)
            offset = end
        }
        let authenticator = offset
        NTPWire.store16(NTSExtensionFieldType.authenticator.rawValue, buffer, offset)
        NTPWire.store16(UInt16(length - authenticator), buffer, offset + 2)
        NTPWire.store16(UInt16(nonce.count), buffer, offset + 4)
        NTPWire.store16(UInt16(tagLength), buffer, offset + 6)
        let nonceStart = offset + 8
        UnsafeMutableRawBufferPointer(rebasing: buffer[nonceStart..<(nonceStart + nonceField)]).initializeMemory(as: UInt8.self, repeating: 0)
        UnsafeMutableRawBufferPointer(rebasing: buffer[nonceStart..<(nonceStart + nonce.count)]).copyMemory(from: nonce)
        let tagStart = nonceStart + nonceField
        let sealed = cipher.seal(
            nonce: UnsafeRawBufferPointer(rebasing: buffer[nonceStart..<(nonceStart + nonce.count)]),
            associatedData: UnsafeRawBufferPointer(rebasing: buffer[0..<authenticator]),
            plaintext: UnsafeRawBufferPointer(start: nil, count: 0),
            into: UnsafeMutableRawBufferPointer(rebasing: buffer[tagStart..<(tagStart + tagLength)])
        )
        precondition(sealed == tagLength, "the AEAD wrote \(sealed) bytes for an empty plaintext, not a \(tagLength)-byte tag")
        return length
    }

    /// Writes one extension field with `body` padded with zeros to a multiple of 4; returns the
    /// offset after it.
    @inlinable
    static func writeField(_ type: NTSExtensionFieldType, body: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let length = fieldLength(body: body.count)
        NTPWire.store16(type.rawValue, buffer, offset)
        NTPWire.store16(UInt16(length), buffer, offset + 2)
        let bodyArea = UnsafeMutableRawBufferPointer(rebasing: buffer[(offset + 4)..<(offset + length)])
        bodyArea.initializeMemory(as: UInt8.self, repeating: 0)
        if !body.isEmpty { UnsafeMutableRawBufferPointer(rebasing: bodyArea[0..<body.count]).copyMemory(from: body) }
        return offset + length
    }

    /// What a reply's NTS fields amount to.
    public enum Verdict: Sendable, Hashable {
        /// The Authenticator verified under S2C; the decrypted extension fields are the first
        /// `plaintextLength` bytes of the caller's plaintext buffer (`forEachCookie` reads
        /// them).
        case authentic(plaintextLength: Int)
        /// An NTS NAK with our Unique Identifier (§5.7).
        case nak
        /// Not to be believed.
        case rejected(NTSReplyProblem)
    }

    /// Checks the NTS part of `reply` (RFC 8915 §5.7, client side): our Unique Identifier
    /// echoed, exactly once; the Authenticator present and last; its tag verifying under S2C
    /// with the reply before it as associated data. The decrypted extension fields go into
    /// `plaintext`.
    ///
    /// An NTS NAK carries no Authenticator: a stratum-0 `NTSN` kiss with our Unique Identifier
    /// is reported as `.nak`; any other reply without one is `.notAuthenticated`. The header's
    /// origin is not checked here: the caller matches it first (RFC 5905 §8's order), so a
    /// reply to someone else never gets this far.
    @inlinable
    public static func checkReply<Cipher: NTSClientCipher>(
        _ reply: UnsafeRawBufferPointer,
        uniqueIdentifier: UnsafeRawBufferPointer,
        cipher: inout Cipher,
        plaintext: UnsafeMutableRawBufferPointer
    ) -> Verdict {
        guard reply.count >= NTPPacket.headerLength else { return .rejected(.malformed("shorter than an NTP header")) }
        var offset = NTPPacket.headerLength
        var sawUID = false
        var uidMatches = false
        var authenticator: (start: Int, nonce: Range<Int>, ciphertext: Range<Int>)?
        while offset < reply.count {
            guard authenticator == nil else { return .rejected(.malformed("an extension field after the Authenticator")) }
            guard offset + 4 <= reply.count else { return .rejected(.malformed("a truncated extension field")) }
            let type = NTPWire.load16(reply, offset)
            let length = Int(NTPWire.load16(reply, offset + 2))
            guard length >= 4, length % 4 == 0, offset + length <= reply.count else {
                return .rejected(.malformed("an extension field of length \(length) at byte \(offset)"))
            }
            switch NTSExtensionFieldType(rawValue: type) {
            case .uniqueIdentifier:
                guard !sawUID else { return .rejected(.malformed("two Unique Identifier fields")) }
                sawUID = true
                let body = UnsafeRawBufferPointer(rebasing: reply[(offset + 4)..<(offset + length)])
                uidMatches = body.count == fieldLength(body: uniqueIdentifier.count) - 4 && body.starts(with: uniqueIdentifier)
                    && body.dropFirst(uniqueIdentifier.count).allSatisfy { $0 == 0 }
            case .authenticator:
                guard length >= 8 else { return .rejected(.malformed("an Authenticator field without lengths")) }
                let nonceLength = Int(NTPWire.load16(reply, offset + 4))
                let ciphertextLength = Int(NTPWire.load16(reply, offset + 6))
                let nonceStart = offset + 8
                let ciphertextStart = nonceStart + (nonceLength + 3) & ~3
                guard nonceLength > 0, ciphertextLength >= tagLength, ciphertextStart + (ciphertextLength + 3) & ~3 <= offset + length else {
                    return .rejected(.malformed("Authenticator lengths (nonce \(nonceLength), ciphertext \(ciphertextLength)) do not fit its \(length) bytes"))
                }
                authenticator = (offset, nonceStart..<(nonceStart + nonceLength), ciphertextStart..<(ciphertextStart + ciphertextLength))
            case .cookie, .cookiePlaceholder, nil:
                // Unencrypted cookies mean nothing to a client; unknown fields before the
                // Authenticator are authenticated with the rest and ignored.
                break
            }
            offset += length
        }
        guard sawUID, uidMatches else { return .rejected(.uniqueIdentifierMismatch) }
        guard let authenticator else {
            // A NAK is the one NTS reply without an Authenticator (§5.7): stratum 0, NTSN.
            if reply[1] == 0, NTPWire.load32(reply, NTPWire.referenceIDOffset) == KissCode.ntsNak.rawValue, reply[0] & 7 == NTPMode.server.rawValue {
                return .nak
            }
            return .rejected(.notAuthenticated)
        }
        let plaintextLength = authenticator.ciphertext.count - tagLength
        guard plaintextLength <= plaintext.count else { return .rejected(.malformed("\(plaintextLength) bytes of encrypted fields, more than the \(plaintext.count) expected")) }
        let authentic = cipher.open(
            nonce: UnsafeRawBufferPointer(rebasing: reply[authenticator.nonce]),
            associatedData: UnsafeRawBufferPointer(rebasing: reply[0..<authenticator.start]),
            ciphertext: UnsafeRawBufferPointer(rebasing: reply[authenticator.ciphertext]),
            into: UnsafeMutableRawBufferPointer(rebasing: plaintext[0..<plaintextLength])
        )
        guard authentic else { return .rejected(.authenticationFailed) }
        return .authentic(plaintextLength: plaintextLength)
    }

    /// Calls `body` with each cookie (the body of each NTS Cookie field, type 0x0204) among the
    /// decrypted extension fields of an authentic reply (RFC 8915 §5.7: the server's new cookies
    /// travel encrypted). Other fields are skipped. Returns false, having called `body` for the
    /// cookies before it, when the fields are malformed.
    @inlinable
    public static func forEachCookie(in plaintext: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        var offset = 0
        while offset < plaintext.count {
            guard offset + 4 <= plaintext.count else { return false }
            let type = NTPWire.load16(plaintext, offset)
            let length = Int(NTPWire.load16(plaintext, offset + 2))
            guard length >= 4, length % 4 == 0, offset + length <= plaintext.count else { return false }
            if type == NTSExtensionFieldType.cookie.rawValue, length > 4 {
                body(UnsafeRawBufferPointer(rebasing: plaintext[(offset + 4)..<(offset + length)]))
            }
            offset += length
        }
        return true
    }
}

/// An authenticated NTS answer: the time sample and the cookies the reply brought.
public struct NTSClientSample: Sendable, Hashable {
    /// The measurement, checked as `NTPClientExchange` checks a plain one.
    public var sample: NTPSample
    /// The new cookies, in order (RFC 8915 §5.7), each for one later request.
    public var cookies: [[UInt8]]

    /// A sample with its cookies.
    public init(sample: NTPSample, cookies: [[UInt8]]) {
        self.sample = sample
        self.cookies = cookies
    }
}

/// The client side of one NTS-protected NTP exchange (RFC 8915 §5.7), without I/O: the request
/// bytes for one cookie, and the checks of its reply.
///
/// Each exchange uses a cookie once (§5.7: reusing one would let an observer link requests)
/// and a fresh random Unique Identifier, transmit timestamp and nonce.
public struct NTSClientExchange: Sendable {
    /// The plain NTP part: the random transmit timestamp and the time checks.
    public let ntp: NTPClientExchange
    /// The Unique Identifier the reply must echo.
    public let uniqueIdentifier: [UInt8]
    /// How many cookies the request asks for (its cookie and its placeholders).
    public let cookiesWanted: Int
    /// The request, sealed under C2S.
    public let requestBytes: [UInt8]

    /// Prepares a request that spends `cookie` and asks for `cookiesWanted` cookies back
    /// (1...8: one for the cookie spent, the others with placeholders), drawing the transmit
    /// timestamp, Unique Identifier and nonce from `random` (a cryptographic generator: the
    /// Unique Identifier is what stops an off-path attacker from forging a NAK).
    public init<Cipher: NTSClientCipher, R: RandomNumberGenerator>(cookie: [UInt8], cookiesWanted: Int = 1, cipher: inout Cipher, random: inout R) {
        let ntp = NTPClientExchange(version: 4, random: &random)
        let uid = (0..<NTSClientPacket.uniqueIdentifierLength).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        let nonce = (0..<NTSClientPacket.nonceLength).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        self.init(ntp: ntp, uniqueIdentifier: uid, nonce: nonce, cookie: cookie, cookiesWanted: cookiesWanted, cipher: &cipher)
    }

    /// Prepares a request with chosen random values (tests).
    public init<Cipher: NTSClientCipher>(ntp: NTPClientExchange, uniqueIdentifier: [UInt8], nonce: [UInt8], cookie: [UInt8], cookiesWanted: Int = 1, cipher: inout Cipher) {
        precondition(ntp.version == 4, "NTS protects NTPv4 only (RFC 8915 §5)")
        let wanted = min(max(cookiesWanted, 1), NTSClientPacket.maximumCookies)
        self.ntp = ntp
        self.uniqueIdentifier = uniqueIdentifier
        self.cookiesWanted = wanted
        var bytes = [UInt8](repeating: 0, count: NTSClientPacket.requestLength(cookieLength: cookie.count, cookiesWanted: wanted) + 16)
        let length = bytes.withUnsafeMutableBytes { buffer in
            uniqueIdentifier.withUnsafeBytes { uid in
                nonce.withUnsafeBytes { nonce in
                    cookie.withUnsafeBytes { cookie in
                        NTSClientPacket.writeRequest(transmit: ntp.requestTransmit, uniqueIdentifier: uid, cookie: cookie, cookiesWanted: wanted, nonce: nonce, cipher: &cipher, into: buffer)
                    }
                }
            }
        }
        bytes.removeLast(bytes.count - length)
        self.requestBytes = bytes
    }

    /// Checks a reply received at `t4` for a request sent at `t1`: first the origin (a reply to
    /// another request is `.ntp(.bogusOrigin)`, before anything else, as RFC 5905 §8 orders it),
    /// then the NTS checks (`NTSClientPacket.checkReply`: Unique Identifier, Authenticator under
    /// S2C, or a NAK), and only for an authentic reply the time checks of
    /// `NTPClientExchange.evaluate`. An authenticated kiss-o'-death is `.ntp(.kissOfDeath)`;
    /// an unauthenticated one, other than a NAK, is `.notAuthenticated`.
    public func evaluate<Cipher: NTSClientCipher>(reply: [UInt8], t1: UTCInstant, t4: UTCInstant, cipher: inout Cipher) -> Result<NTSClientSample, NTSReplyProblem> {
        let packet: NTPPacket
        do {
            packet = try NTPPacket(decoding: reply)
        } catch {
            return .failure(.ntp(.malformed(error)))
        }
        guard packet.mode == .server else { return .failure(.ntp(.wrongMode(packet.mode.rawValue))) }
        guard packet.originTimestamp == ntp.requestTransmit else { return .failure(.ntp(.bogusOrigin)) }
        var plaintext = [UInt8](repeating: 0, count: max(0, reply.count - NTPPacket.headerLength))
        let verdict = reply.withUnsafeBytes { reply in
            uniqueIdentifier.withUnsafeBytes { uid in
                plaintext.withUnsafeMutableBytes { NTSClientPacket.checkReply(reply, uniqueIdentifier: uid, cipher: &cipher, plaintext: $0) }
            }
        }
        let plaintextLength: Int
        switch verdict {
        case .nak: return .failure(.nak)
        case .rejected(let problem): return .failure(problem)
        case .authentic(let length): plaintextLength = length
        }
        var cookies: [[UInt8]] = []
        let wellFormed = plaintext.withUnsafeBytes { plain in
            NTSClientPacket.forEachCookie(in: UnsafeRawBufferPointer(rebasing: plain[0..<plaintextLength])) { cookies.append(Array($0)) }
        }
        guard wellFormed else { return .failure(.malformed("the encrypted extension fields do not parse")) }
        switch ntp.evaluate(reply: reply, t1: t1, t4: t4) {
        case .success(let sample): return .success(NTSClientSample(sample: sample, cookies: cookies))
        case .failure(let problem): return .failure(.ntp(problem))
        }
    }
}
