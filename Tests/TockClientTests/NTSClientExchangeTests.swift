import Testing
import TockClient
import TockProtocol

/// A server's NTS crypto for tests: real AES-SIV-CMAC (the client's own `NTSSessionCipher`,
/// keyed with the same key both ways) for the packets, and transparent cookies (a key
/// generation byte, the algorithm, then C2S ‖ S2C in clear) that stop opening once
/// `generation` moves on, as a server's cookies do when its cookie keys rotate out.
struct TestServerCrypto: NTSServerCrypto {
    var generation: UInt8 = 1

    func cookieLength(for algorithm: NTSAEADAlgorithm) -> Int { 4 + 2 * algorithm.keyLength }

    func openCookie(_ cookie: UnsafeRawBufferPointer, keys: UnsafeMutableRawBufferPointer) -> NTSAEADAlgorithm? {
        guard cookie.count > 4, cookie[0] == generation,
              let algorithm = NTSAEADAlgorithm(rawValue: UInt16(cookie[2]) << 8 | UInt16(cookie[3])),
              cookie.count == cookieLength(for: algorithm)
        else { return nil }
        keys.copyMemory(from: UnsafeRawBufferPointer(rebasing: cookie[4...]))
        return algorithm
    }

    func sealCookie(algorithm: NTSAEADAlgorithm, keys: UnsafeRawBufferPointer, into cookie: UnsafeMutableRawBufferPointer) -> Int {
        let made = Self.cookie(generation: generation, algorithm: algorithm, keys: Array(keys))
        UnsafeMutableRawBufferPointer(rebasing: cookie[0..<made.count]).copyBytes(from: made)
        return made.count
    }

    func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool {
        let aead = NTSSessionCipher(c2s: Array(key), s2c: Array(key))
        return aead.open(nonce: nonce, associatedData: associatedData, ciphertext: ciphertext, into: plaintext)
    }

    func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int {
        let aead = NTSSessionCipher(c2s: Array(key), s2c: Array(key))
        return aead.seal(nonce: nonce, associatedData: associatedData, plaintext: plaintext, into: ciphertext)
    }

    static func cookie(generation: UInt8, algorithm: NTSAEADAlgorithm, keys: [UInt8]) -> [UInt8] {
        [generation, 0, UInt8(algorithm.rawValue >> 8), UInt8(algorithm.rawValue & 0xFF)] + keys
    }
}

/// An NTS session as NTS-KE would leave it, and the server that answers it through the real
/// decision, `NTPServer.handle(... nts:)`, and seal, `sealAuthenticatedReply`.
struct NTSFixture {
    static let receiveTime = UTCInstant(secondsSinceUnixEpoch: 1_795_545_380, nanoseconds: 123_456_789)
    static let transmitTime = receiveTime.advanced(byNanoseconds: 30_000)
    /// T1 and T4 one millisecond either side: offset about zero, delay about 2 ms.
    static let t1 = receiveTime.advanced(byNanoseconds: -1_000_000)
    static let t4 = transmitTime.advanced(byNanoseconds: 1_000_000)
    static let clock = ServerClockState(
        leap: .noWarning, stratum: 2, referenceID: 0xC000_0201, referenceTime: receiveTime.advanced(byNanoseconds: -64_000_000_000),
        rootDelayNanoseconds: 1_000_000, rootDispersionNanoseconds: 2_000_000
    )

    var algorithm = NTSAEADAlgorithm.aesSIVCMAC256
    var c2s: [UInt8]
    var s2c: [UInt8]
    var server = TestServerCrypto()

    init(algorithm: NTSAEADAlgorithm = .aesSIVCMAC256) {
        self.algorithm = algorithm
        c2s = (0..<algorithm.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        s2c = (0..<algorithm.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
    }

    var cookie: [UInt8] { TestServerCrypto.cookie(generation: server.generation, algorithm: algorithm, keys: c2s + s2c) }
    func cipher() -> NTSSessionCipher { NTSSessionCipher(c2s: c2s, s2c: s2c) }

    /// A request with fixed random values (transmit timestamp, Unique Identifier, nonce).
    func exchange(cookiesWanted: Int = 1, uidByte: UInt8 = 0x42, cipher: NTSSessionCipher? = nil) -> NTSClientExchange {
        var cipher = cipher ?? self.cipher()
        return NTSClientExchange(
            ntp: NTPClientExchange(requestTransmit: NTPTimestamp(rawValue: 0x1122_3344_5566_7788)),
            uniqueIdentifier: [UInt8](repeating: uidByte, count: 32),
            nonce: (0..<16).map { UInt8($0) },
            cookie: cookie, cookiesWanted: cookiesWanted, cipher: &cipher
        )
    }

    /// What the server's decision does with `request`, and the reply it sends (sealed).
    mutating func serve(_ request: [UInt8], nts: Bool = true) -> (action: NTPServerAction, reply: [UInt8]) {
        let core = NTPServer(precision: -20)
        var random = FastRandom(seed: 7)
        var slot = [UInt8](repeating: 0xAA, count: NTSReplyScratch.slotLength)
        var crypto: TestServerCrypto? = nts ? server : nil
        let action = request.withUnsafeBytes { request in
            slot.withUnsafeMutableBytes { slot in
                core.handle(
                    request, from: ClientAddress(ipv4: 0x7F00_0001, port: 40_000), receiveTime: Self.receiveTime, clock: Self.clock,
                    admission: ClientAdmission<NoRateLimit>(policy: ServicePolicy()), nts: &crypto, reply: slot, random: &random
                )
            }
        }
        guard case .respond(let length, let kind) = action else { return (action, []) }
        slot.withUnsafeMutableBytes { slot in
            switch kind {
            case .authenticatedTime: core.sealAuthenticatedReply(Self.transmitTime, slot: slot, length: length, crypto: &crypto!, random: &random)
            case .time, .timeForInterleavedClient: core.stampTransmitTime(Self.transmitTime, reply: slot, random: &random)
            case .kissOfDeath, .interleavedTime: break
            }
        }
        return (action, Array(slot[..<length]))
    }

    func evaluate(_ exchange: NTSClientExchange, _ reply: [UInt8], cipher: NTSSessionCipher? = nil) -> Result<NTSClientSample, NTSReplyProblem> {
        var cipher = cipher ?? self.cipher()
        return exchange.evaluate(reply: reply, t1: Self.t1, t4: Self.t4, cipher: &cipher)
    }
}

@Suite("NTS client exchange (RFC 8915 §5.7) against the server's decision")
struct NTSClientExchangeTests {
    @Test("The request carries UID, cookie, placeholders and an Authenticator the server's parser accepts", arguments: [1, 2, 8])
    func requestLayout(wanted: Int) throws {
        let fixture = NTSFixture()
        let exchange = fixture.exchange(cookiesWanted: wanted)
        let bytes = exchange.requestBytes
        #expect(bytes.count == NTSClientPacket.requestLength(cookieLength: fixture.cookie.count, cookiesWanted: wanted))
        #expect(bytes[0] == 0x23)  // LI 0, NTPv4, mode 3
        #expect(bytes[1..<40].allSatisfy { $0 == 0 })  // nothing about our clock
        let fields = try bytes.withUnsafeBytes { try NTSRequestFields(parsing: $0) }
        #expect(fields.placeholders == wanted - 1)
        #expect(Array(bytes[fields.cookie]) == fixture.cookie)
        #expect(Array(bytes[fields.uniqueIdentifier].dropFirst(4)) == exchange.uniqueIdentifier)
        #expect(fields.nonce.count == 16)
        #expect(fields.ciphertext.count == 16)  // the tag alone: nothing encrypted
        #expect(fields.ciphertext.upperBound == bytes.count)  // the Authenticator is last
    }

    @Test("A request and its reply round-trip: authenticated time and the cookies asked for", arguments: [(NTSAEADAlgorithm.aesSIVCMAC256, 1), (.aesSIVCMAC256, 3), (.aesSIVCMAC256, 8), (.aesSIVCMAC512, 2)])
    func roundTrip(algorithm: NTSAEADAlgorithm, wanted: Int) throws {
        var fixture = NTSFixture(algorithm: algorithm)
        let exchange = fixture.exchange(cookiesWanted: wanted)
        let (action, reply) = fixture.serve(exchange.requestBytes)
        guard case .respond(let length, .authenticatedTime) = action else {
            Issue.record("the server did not authenticate: \(action)")
            return
        }
        #expect(length <= exchange.requestBytes.count)
        let answer = try fixture.evaluate(exchange, reply).get()
        #expect(abs(answer.sample.offsetNanoseconds) < 10_000)
        #expect(answer.sample.delayNanoseconds > 1_900_000 && answer.sample.delayNanoseconds < 2_100_000)
        #expect(answer.sample.packet.stratum == 2)
        #expect(answer.cookies.count == wanted)
        // Each new cookie holds this session's keys: the server can use it for the next request.
        for cookie in answer.cookies { #expect(cookie == fixture.cookie) }
    }

    @Test("Any altered byte of an authentic reply: refused, never time")
    func tamperedByte() throws {
        var fixture = NTSFixture()
        let exchange = fixture.exchange(cookiesWanted: 2)
        let reply = fixture.serve(exchange.requestBytes).reply
        #expect((try? fixture.evaluate(exchange, reply).get()) != nil)
        for index in reply.indices {
            var altered = reply
            altered[index] ^= 0x01
            switch fixture.evaluate(exchange, altered) {
            case .success:
                Issue.record("byte \(index) altered and still accepted")
            case .failure(let problem):
                switch index {
                case 0: #expect(problem == .ntp(.wrongMode(5)))  // checked before anything else
                case 24..<32: #expect(problem == .ntp(.bogusOrigin))  // matched before the NTS checks
                case 1..<48: #expect(problem == .authenticationFailed, "header byte \(index): \(problem)")  // under the tag
                default: break  // lengths, types, the UID, the nonce and the ciphertext: any refusal
                }
            }
        }
    }

    @Test("The reply to another request (different Unique Identifier, same origin): refused")
    func wrongUniqueIdentifier() {
        var fixture = NTSFixture()
        let mine = fixture.exchange(uidByte: 0x42)
        let theirs = fixture.exchange(uidByte: 0x43)
        let reply = fixture.serve(theirs.requestBytes).reply
        #expect(fixture.evaluate(mine, reply) == .failure(.uniqueIdentifierMismatch))
    }

    @Test("A reply whose keys are not the session's: authentication fails")
    func wrongServerToClientKey() {
        var fixture = NTSFixture()
        let exchange = fixture.exchange()
        let reply = fixture.serve(exchange.requestBytes).reply
        let stranger = NTSSessionCipher(c2s: fixture.c2s, s2c: [UInt8](repeating: 9, count: 32))
        #expect(fixture.evaluate(exchange, reply, cipher: stranger) == .failure(.authenticationFailed))
    }

    @Test("A request sealed under another C2S key gets no answer from the server")
    func wrongClientToServerKey() {
        var fixture = NTSFixture()
        let stranger = NTSSessionCipher(c2s: [UInt8](repeating: 9, count: 32), s2c: fixture.s2c)
        let exchange = fixture.exchange(cipher: stranger)
        #expect(fixture.serve(exchange.requestBytes).action == .ignore(.ntsBadAuthenticator))
    }

    @Test("A cookie from rotated-out keys: the server's NTS NAK is recognised")
    func nak() throws {
        var fixture = NTSFixture()
        let exchange = fixture.exchange(cookiesWanted: 4)
        fixture.server.generation = 2  // the server's cookie keys moved on
        let (action, reply) = fixture.serve(exchange.requestBytes)
        #expect(action == .respond(length: 48 + 36, kind: .kissOfDeath(.ntsNak, reason: .ntsBadCookie)))
        #expect(fixture.evaluate(exchange, reply) == .failure(.nak))
        // A NAK naming another request's Unique Identifier is not ours...
        let other = fixture.exchange(uidByte: 0x43)
        #expect(fixture.evaluate(other, reply) == .failure(.uniqueIdentifierMismatch))
        // ...nor one echoing another origin.
        var forged = reply
        forged[31] ^= 1
        #expect(fixture.evaluate(exchange, forged) == .failure(.ntp(.bogusOrigin)))
    }

    @Test("A plain NTP reply to an NTS request: not authenticated, refused")
    func plainReply() {
        var fixture = NTSFixture()
        let exchange = fixture.exchange()
        // A server without NTS ignores the extension fields and answers with a bare header.
        let (action, reply) = fixture.serve(exchange.requestBytes, nts: false)
        #expect(action == .respond(length: 48, kind: .time))
        #expect(fixture.evaluate(exchange, reply) == .failure(.uniqueIdentifierMismatch))
        // The same with our Unique Identifier copied in by an attacker: still no Authenticator.
        let uid = Array(exchange.requestBytes[48..<84])
        #expect(fixture.evaluate(exchange, reply + uid) == .failure(.notAuthenticated))
    }

    @Test("An unauthenticated RATE kiss with our Unique Identifier: refused, not obeyed")
    func unauthenticatedKiss() {
        let fixture = NTSFixture()
        let exchange = fixture.exchange()
        var kiss = NTPPacket(leap: .unsynchronized, version: 4, mode: .server, stratum: 0, referenceID: KissCode.rate.rawValue, originTimestamp: exchange.ntp.requestTransmit).bytes
        kiss += exchange.requestBytes[48..<84]
        #expect(fixture.evaluate(exchange, kiss) == .failure(.notAuthenticated))
    }

    @Test("An extension field after the Authenticator: malformed")
    func fieldAfterAuthenticator() {
        var fixture = NTSFixture()
        let exchange = fixture.exchange()
        let reply = fixture.serve(exchange.requestBytes).reply
        let extra: [UInt8] = [0x12, 0x34, 0x00, 0x10] + [UInt8](repeating: 0, count: 12)
        guard case .failure(.malformed) = fixture.evaluate(exchange, reply + extra) else {
            Issue.record("accepted a field after the Authenticator")
            return
        }
    }

    @Test("Truncated replies: refused")
    func truncated() {
        var fixture = NTSFixture()
        let exchange = fixture.exchange()
        let reply = fixture.serve(exchange.requestBytes).reply
        for length in stride(from: 0, to: reply.count, by: 3) {
            if case .success = fixture.evaluate(exchange, Array(reply.prefix(length))) {
                Issue.record("accepted the first \(length) bytes")
            }
        }
    }

    @Test("The buffer API writes the same request and reads the same cookies")
    func bufferAPI() throws {
        var fixture = NTSFixture()
        let exchange = fixture.exchange(cookiesWanted: 3)
        var cipher = fixture.cipher()
        var buffer = [UInt8](repeating: 0xEE, count: 2048)
        let uid = exchange.uniqueIdentifier
        let cookie = fixture.cookie
        let nonce: [UInt8] = (0..<16).map { UInt8($0) }
        let length = buffer.withUnsafeMutableBytes { out in
            uid.withUnsafeBytes { uid in
                cookie.withUnsafeBytes { cookie in
                    nonce.withUnsafeBytes { nonce in
                        NTSClientPacket.writeRequest(transmit: exchange.ntp.requestTransmit, uniqueIdentifier: uid, cookie: cookie, cookiesWanted: 3, nonce: nonce, cipher: &cipher, into: out)
                    }
                }
            }
        }
        #expect(Array(buffer[..<length]) == exchange.requestBytes)
        let reply = fixture.serve(exchange.requestBytes).reply
        var plaintext = [UInt8](repeating: 0, count: 2048)
        let verdict = reply.withUnsafeBytes { reply in
            uid.withUnsafeBytes { uid in
                plaintext.withUnsafeMutableBytes { NTSClientPacket.checkReply(reply, uniqueIdentifier: uid, cipher: &cipher, plaintext: $0) }
            }
        }
        guard case .authentic(let plaintextLength) = verdict else {
            Issue.record("\(verdict)")
            return
        }
        var cookies: [[UInt8]] = []
        let wellFormed = plaintext.withUnsafeBytes { plain in
            NTSClientPacket.forEachCookie(in: UnsafeRawBufferPointer(rebasing: plain[..<plaintextLength])) { cookies.append(Array($0)) }
        }
        #expect(wellFormed)
        #expect(cookies == [[UInt8]](repeating: fixture.cookie, count: 3))
    }
}

@Suite("NTS-KE certificate names")
struct NTSKENameTests {
    @Test("DNS names match exactly or by a leftmost wildcard label (RFC 6125 §6.4.3)", arguments: [
        ("ntp.example.org", "ntp.example.org", true),
        ("NTP.Example.ORG", "ntp.example.org.", true),
        ("*.example.org", "ntp.example.org", true),
        ("*.example.org", "a.b.example.org", false),
        ("*.example.org", "example.org", false),
        ("*.org", "example.org", false),
        ("example.org", "ntp.example.org", false),
        ("ntp.example.org", "ntp.example.com", false),
        ("", "", false),
    ])
    func matching(pattern: String, host: String, matches: Bool) {
        #expect(NTSKEClient.dnsNameMatches(pattern, host) == matches)
    }
}
