import Testing
import TockProtocol

/// What `NTPServer` did with one request: its decision and the whole reply buffer.
struct Served {
    var action: NTPServerAction
    /// The reply buffer (`maximumReplyLength` bytes, pre-filled with 0xAA).
    var reply: [UInt8]

    var receive: UInt64 { be64(reply, 32) }
    var transmit: UInt64 { be64(reply, 40) }
    var origin: UInt64 { be64(reply, 24) }
}

enum ServerFixture {
    /// T2: 2026-11-24 18:36:20.123456789 UTC.
    static let receiveTime = utc(Instants.tuesday2026, 123_456_789)
    /// T3: 50 µs later.
    static let transmitTime = receiveTime.advanced(byNanoseconds: 50_000)
    static let referenceTime = utc(Instants.tuesday2026 - 64, 250_000_000)
    /// Stratum 2, root delay 0.5 s, root dispersion 1.5 s, reference 192.0.2.1.
    static let clock = ServerClockState(
        leap: .noWarning, stratum: 2, referenceID: 0xC000_0201, referenceTime: referenceTime,
        rootDelayNanoseconds: 500_000_000, rootDispersionNanoseconds: 1_500_000_000
    )
    static let v4Client = firstByte(version: 4, mode: 3)
}

/// Runs `request` through `respond` and, when it answers, `stampTransmitTime`.
func serve(
    _ request: [UInt8],
    sourcePort: UInt16 = 50_000,
    precision: Int8 = -20,
    clock: ServerClockState = ServerFixture.clock,
    receiveTime: UTCInstant = ServerFixture.receiveTime,
    transmitTime: UTCInstant = ServerFixture.transmitTime,
    seed: UInt64 = 1
) -> Served {
    let responder = NTPServer(precision: precision)
    var random = FastRandom(seed: seed)
    var reply = [UInt8](repeating: 0xAA, count: NTPServer.maximumReplyLength)
    let action = request.withUnsafeBytes { request in
        reply.withUnsafeMutableBytes { reply in
            responder.respond(to: request, sourcePort: sourcePort, receiveTime: receiveTime, clock: clock, reply: reply, random: &random)
        }
    }
    if case .respond = action {
        reply.withUnsafeMutableBytes { responder.stampTransmitTime(transmitTime, reply: $0, random: &random) }
    }
    return Served(action: action, reply: reply)
}

@Suite("NTPServer")
struct NTPServerTests {
    /// 2^-20 s, the width of the randomised bits at precision -20, in nanoseconds (rounded up):
    /// the bits below the precision are replaced, so a timestamp is within this of the instant.
    static let precisionNanoseconds: Int64 = 954

    @Test func answersAVersion4ClientRequest() throws {
        let request = ntpRequest(ServerFixture.v4Client, poll: 10, transmit: 0xDEAD_BEEF_0123_4567)
        let served = serve(request)
        #expect(served.action == .respond(length: 48, kind: .time))
        let reply = served.reply
        #expect(reply[0] == 0x24)  // LI 0, VN 4, mode 4
        #expect(reply[1] == 2)
        #expect(reply[2] == 10)  // poll echoed
        #expect(reply[3] == 0xEC)  // precision -20
        #expect(be32(reply, 4) == 0x0000_8000)  // root delay 0.5 s
        #expect(be32(reply, 8) == 0x0001_8000)  // root dispersion 1.5 s
        #expect(be32(reply, 12) == 0xC000_0201)
        #expect(be64(reply, 16) == NTPTimestamp(ServerFixture.referenceTime).rawValue)
        #expect(reply[24..<32] == request[40..<48])  // origin = the request's transmit, verbatim

        let t2 = NTPTimestamp(rawValue: served.receive).instant(near: ServerFixture.receiveTime)
        #expect(abs(t2.nanoseconds(since: ServerFixture.receiveTime)) <= Self.precisionNanoseconds)
        let t3 = NTPTimestamp(rawValue: served.transmit).instant(near: ServerFixture.transmitTime)
        #expect(abs(t3.nanoseconds(since: ServerFixture.transmitTime)) <= Self.precisionNanoseconds)
        #expect(served.transmit > served.receive)
        #expect(served.transmit != served.origin)

        let decoded = try NTPPacket(decoding: Array(reply.prefix(48)))
        #expect(decoded.mode == .server)
        #expect(decoded.version == 4)
        #expect(decoded.leap == .noWarning)
    }

    @Test func transmitEarlierThanReceiveBecomesReceivePlusOne() {
        let earlier = ServerFixture.receiveTime.advanced(byNanoseconds: -1_000_000)
        let served = serve(ntpRequest(ServerFixture.v4Client), transmitTime: earlier)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.transmit == served.receive + 1)
    }

    @Test func transmitIsAfterReceiveEvenForTheSameInstant() {
        for seed: UInt64 in 1...64 {
            let served = serve(ntpRequest(ServerFixture.v4Client), transmitTime: ServerFixture.receiveTime, seed: seed)
            #expect(served.transmit > served.receive, "seed \(seed)")
        }
    }

    @Test func transmitAndReceiveNeverEqualTheOrigin() {
        // Precision -32 randomises nothing, so the timestamps are predictable.
        let t2 = NTPTimestamp(ServerFixture.receiveTime).rawValue
        // The receive timestamp's lowest bit is set and the transmit timestamp's clear
        // (chrony's marking, for interleaved mode), so each moves by at most 2^-31 s.
        let sameAsReceive = serve(ntpRequest(ServerFixture.v4Client, transmit: t2 | 1), precision: -32)
        #expect(sameAsReceive.receive == (t2 | 1) + 2)
        #expect(sameAsReceive.origin == t2 | 1)

        let t3 = NTPTimestamp(ServerFixture.transmitTime).rawValue & ~1
        let sameAsTransmit = serve(ntpRequest(ServerFixture.v4Client, transmit: t3), precision: -32)
        #expect(sameAsTransmit.receive == t2 | 1)
        #expect(sameAsTransmit.transmit == t3 + 2)
    }

    @Test func transmitAcrossTheEraRolloverIsNotBumped() {
        let t2 = utc(Instants.eraOneStart - 1, 999_999_000)
        let t3 = utc(Instants.eraOneStart, 1_000)
        let served = serve(ntpRequest(ServerFixture.v4Client), precision: -32, receiveTime: t2, transmitTime: t3)
        #expect(served.receive >> 32 == 0xFFFF_FFFF)
        #expect(served.transmit == NTPTimestamp(t3).rawValue)
        #expect(served.transmit >> 32 == 0)
    }

    @Test(arguments: [UInt8(1), 2, 3, 4])
    func versionIsEchoed(version: UInt8) {
        let served = serve(ntpRequest(firstByte(version: version, mode: 3)))
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.reply[0] == firstByte(version: version, mode: 4))
    }

    @Test(arguments: [UInt8(0xE3), 0x63, 0xA3])
    func clientLeapBitsAreIgnored(first: UInt8) {
        // ntpd and chrony clients send LI 3 (unsynchronised) in their requests.
        let served = serve(ntpRequest(first))
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.reply[0] == 0x24)
    }

    @Test(arguments: [UInt8(0), 5, 6, 7])
    func unsupportedVersionsAreDropped(version: UInt8) {
        for mode: UInt8 in [0, 3, 4] {
            #expect(serve(ntpRequest(firstByte(version: version, mode: mode))).action == .ignore(.badVersion))
        }
    }

    @Test(arguments: [UInt8(0), 1, 2, 4, 5, 6, 7])
    func nonClientModesAreDropped(mode: UInt8) {
        for version: UInt8 in 1...4 where !(mode == 0 && version == 1) {
            #expect(serve(ntpRequest(firstByte(version: version, mode: mode))).action == .ignore(.notClientMode))
        }
    }

    @Test func monlistAndControlQueriesAreDropped() {
        let monlist: [UInt8] = [0x17, 0x00, 0x03, 0x2A]
        let readstat: [UInt8] = [0x16, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        for probe in [monlist, readstat] {
            let padded = probe + [UInt8](repeating: 0, count: 48 - probe.count)
            #expect(serve(padded).action == .ignore(.notClientMode))
            #expect(serve(padded + mac(length: 20)).action == .ignore(.notClientMode))
            #expect(serve(probe).action == .ignore(.tooShort))
        }
    }

    @Test func ntpVersion1ModeZeroIsAnsweredOnlyFromAClientPort() {
        #expect(serve(ntpRequest(0x08), sourcePort: 123).action == .ignore(.notClientMode))
        #expect(serve(ntpRequest(0xC8), sourcePort: 123).action == .ignore(.notClientMode))
        let served = serve(ntpRequest(0x08, poll: 6), sourcePort: 50_000)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.reply[0] == 0x0C)  // LI 0, VN 1, mode 4
        #expect(served.reply[2] == 6)
    }

    @Test(arguments: [0, 1, 8, 47])
    func shortRequestsAreDropped(length: Int) {
        #expect(serve(Array(ntpRequest(ServerFixture.v4Client).prefix(length))).action == .ignore(.tooShort))
    }

    @Test(arguments: [1, 2, 3, 4, 8, 12, 16 + 1])
    func trailingBytesThatAreNeitherFieldNorMACAreDropped(extra: Int) {
        let request = ntpRequest(ServerFixture.v4Client, trailer: [UInt8](repeating: 0, count: extra))
        #expect(serve(request).action == .ignore(.malformed))
        #expect(serve(ntpRequest(firstByte(version: 3, mode: 3), trailer: [UInt8](repeating: 0, count: extra))).action == .ignore(.malformed))
    }

    @Test func malformedExtensionFieldIsDropped() {
        let request = ntpRequest(ServerFixture.v4Client, trailer: extensionField(length: 28, declaredLength: 0xFFFF))
        #expect(serve(request).action == .ignore(.malformed))
        let v3 = ntpRequest(firstByte(version: 3, mode: 3), trailer: extensionField(length: 28))
        #expect(serve(v3).action == .ignore(.malformed))
    }

    @Test(arguments: [(UInt8(4), 20), (4, 24), (3, 20), (1, 24)])
    func requestWithAMACGetsACryptoNAK(version: UInt8, macLength: Int) {
        let request = ntpRequest(firstByte(version: version, mode: 3), trailer: mac(length: macLength))
        let served = serve(request)
        #expect(served.action == .respond(length: 52, kind: .time))
        #expect(served.reply[48..<52] == [0, 0, 0, 0])
        #expect(served.reply[24..<32] == request[40..<48])
    }

    @Test func extensionFieldsAreValidatedAndIgnored() {
        let withField = ntpRequest(ServerFixture.v4Client, trailer: extensionField(length: 28))
        let plain = serve(ntpRequest(ServerFixture.v4Client))
        let served = serve(withField)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.reply.prefix(48) == plain.reply.prefix(48))
        let withFieldAndMAC = ntpRequest(ServerFixture.v4Client, trailer: extensionField(length: 16) + mac(length: 24))
        #expect(serve(withFieldAndMAC).action == .respond(length: 52, kind: .time))
    }

    @Test func replyIsNeverLongerThanTheRequest() {
        var random = FastRandom(seed: 0xA5A5)
        let firstBytes: [UInt8] = [0x23, 0x1B, 0x13, 0x0B, 0x08, 0xE3, 0x24, 0x17, 0x16]
        var answered = 0
        for _ in 0..<10_000 {
            // Mostly any length; sometimes one a well-formed request could have.
            let length = Bool.random(using: &random) ? Int.random(in: 0...200, using: &random) : [47, 48, 49, 68, 72, 76, 96].randomElement(using: &random)!
            var request = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            if length > 0, Bool.random(using: &random) {
                request[0] = firstBytes.randomElement(using: &random)!
            }
            if length >= 52, Bool.random(using: &random) {
                // Sometimes a plausible extension-field length, so the trailer parser gets past the first field.
                let declared = Int.random(in: 1...((length - 48) / 4), using: &random) * 4
                request[50] = UInt8(declared >> 8)
                request[51] = UInt8(declared & 0xFF)
            }
            let action = serve(request, sourcePort: UInt16.random(in: 122...124, using: &random), seed: UInt64(length)).action
            if case .respond(let n, _) = action {
                answered += 1
                #expect(n <= length && (n == 48 || n == 52), "request \(request) got \(action)")
            }
        }
        #expect(answered > 500)  // the property was exercised
    }

    @Test func unsynchronisedClockSaysSo() {
        let served = serve(ntpRequest(ServerFixture.v4Client), clock: .unsynchronized)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.reply[0] >> 6 == 3)
        #expect(served.reply[0] & 0x3F == 0x24)
        #expect(served.reply[1] == 0)
        #expect(be32(served.reply, 12) == 0x494E_4954)  // INIT
        #expect(be64(served.reply, 16) == 0)
        let exchange = NTPClientExchange(version: 4, requestTransmit: NTPTimestamp(rawValue: be64(served.reply, 24)))
        #expect(exchange.evaluate(reply: Array(served.reply[..<48]), t1: ServerFixture.receiveTime, t4: ServerFixture.transmitTime) == .failure(.unsynchronized), "tock reads INIT as unsynchronised, not as a kiss")
    }

    @Test(arguments: [(LeapIndicator.insertSecond, UInt8(1)), (.deleteSecond, 2), (.noWarning, 0)])
    func pendingLeapIsAnnounced(leap: LeapIndicator, bits: UInt8) {
        var clock = ServerFixture.clock
        clock.leap = leap
        let served = serve(ntpRequest(ServerFixture.v4Client), clock: clock)
        #expect(served.reply[0] == bits << 6 | 0x24)
        #expect(be64(served.reply, 16) == NTPTimestamp(ServerFixture.referenceTime).rawValue)
    }

    @Test func onlyTheBitsBelowThePrecisionAreRandom() {
        let request = ntpRequest(ServerFixture.v4Client)
        let a = serve(request, precision: -20, seed: 1)
        let b = serve(request, precision: -20, seed: 2)
        #expect(a.reply[0..<32] == b.reply[0..<32])
        #expect(a.receive ^ b.receive != 0)
        #expect((a.receive ^ b.receive) & ~0xFFF == 0)
        #expect((a.transmit ^ b.transmit) & ~0xFFF == 0)
        #expect(a.receive & ~0xFFF == NTPTimestamp(ServerFixture.receiveTime).rawValue & ~0xFFF)

        let exactA = serve(request, precision: -32, seed: 1)
        let exactB = serve(request, precision: -32, seed: 2)
        #expect(exactA.reply == exactB.reply)
        #expect(exactA.receive == NTPTimestamp(ServerFixture.receiveTime).rawValue | 1)
        #expect(exactA.reply[3] == 0xE0)
    }

    @Test func randomBitsVaryAcrossReplies() {
        let request = ntpRequest(ServerFixture.v4Client)
        let receives = (1...64).map { serve(request, seed: $0).receive }
        #expect(Set(receives).count > 60)
        // Each of the 12 bits below 2^-20 s varies, and nothing above them, but the lowest,
        // which marks a receive timestamp (always 1, chrony's marking for interleaved mode).
        let varied = receives.reduce(0) { $0 | ($1 ^ receives[0]) }
        #expect(varied == 0xFFE)
    }

    @Test(arguments: [
        (Int64(1), Int8(-30)),  // log2(1 ns) = -29.9
        (0, -30),  // treated as 1 ns
        (20, -26),  // a clock read in 20 ns: log2 = -25.6, 2^-26 s = 14.9 ns
        (25, -25),  // log2 = -25.25
        (1_000, -20),  // 2^-20 s = 0.95 µs
        (1_000_000, -10),  // 2^-10 s = 0.98 ms
        (4_000_000, -8),  // a 250 Hz tick: 2^-8 s = 3.9 ms
        (674, -21),  // just under 2^-20.5 s = 674.3 ns, where the rounding turns
        (675, -20),
        (1_000_000_000, 0),
        (10_000_000_000, 0),  // never above 0
    ])
    func precisionFromResolution(nanoseconds: Int64, precision: Int8) {
        #expect(NTPServer.precision(resolutionNanoseconds: nanoseconds) == precision)
    }
}
