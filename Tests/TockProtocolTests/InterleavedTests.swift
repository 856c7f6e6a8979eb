import Testing
import TockProtocol

/// A client log for tests: what the core recorded, per address, and the transmit timestamps a
/// test says the kernel reported.
struct TestInterleavedLog: NTPInterleavedLog {
    struct Key: Hashable { var high: UInt64; var low: UInt64 }
    var receives: [Key: UInt64] = [:]
    var transmits: [UInt64: UInt64] = [:]  // receive → transmit
    var recorded: [UInt64] = []

    func previousReply(of client: ClientAddress, previousReceive: UInt64) -> NTPPreviousReply {
        guard receives[Key(high: client.high, low: client.low)] == previousReceive else { return .unknown }
        return transmits[previousReceive].map { .transmitted($0) } ?? .transmitPending
    }

    /// Records `receive`; its entry is its index in `recorded`.
    mutating func replied(to client: ClientAddress, receive: UInt64) -> Int {
        receives[Key(high: client.high, low: client.low)] = receive
        recorded.append(receive)
        return recorded.count - 1
    }

    /// The entry the last reply was recorded in, as the core's action must name it.
    var lastEntry: NTPLogEntry { NTPLogEntry(entry: recorded.count - 1, receive: recorded.last ?? 0) }
}

@Suite("Interleaved mode (RFC 9769)")
struct InterleavedTests {
    static let client = ClientAddress(ipv4: 0xC000_0264, port: 50_000)
    static let t2 = ServerFixture.receiveTime
    static let kernelTransmit: UInt64 = NTPTimestamp(ServerFixture.transmitTime).rawValue &+ 12_345

    /// One request through `handle` with `log`; stamps T3 when the reply asks for it.
    static func serve(_ request: [UInt8], log: inout TestInterleavedLog?, from client: ClientAddress = client, receiveTime: UTCInstant = t2, seed: UInt64 = 7) -> Served {
        let server = NTPServer(precision: -20)
        var random = FastRandom(seed: seed)
        var nts: NoNTS?
        var reply = [UInt8](repeating: 0xAA, count: NTPServer.maximumReplyLength)
        let action = request.withUnsafeBytes { request in
            reply.withUnsafeMutableBytes { reply in
                server.handle(request, from: client, receiveTime: receiveTime, clock: ServerFixture.clock, admission: ClientAdmission(policy: ServicePolicy()), nts: &nts, interleaved: &log, reply: reply, random: &random)
            }
        }
        switch action {
        case .respond(_, .time), .respond(_, .timeForInterleavedClient):
            reply.withUnsafeMutableBytes { server.stampTransmitTime(receiveTime.advanced(byNanoseconds: 50_000), reply: $0, random: &random) }
        default:
            break
        }
        return Served(action: action, reply: reply)
    }

    /// A client request with the given origin, receive and transmit fields.
    static func request(origin: UInt64, receive: UInt64, transmit: UInt64, version: UInt8 = 4, trailer: [UInt8] = []) -> [UInt8] {
        var bytes = ntpRequest(firstByte(version: version, mode: 3), transmit: transmit, trailer: trailer)
        bytes.replaceSubrange(24..<32, with: bigEndianBytes(origin))
        bytes.replaceSubrange(32..<40, with: bigEndianBytes(receive))
        return bytes
    }

    /// A log holding one earlier basic reply to `client` and, if `known`, its kernel transmit time.
    static func logAfterFirstReply(known: Bool = true) -> (TestInterleavedLog?, UInt64) {
        var log: TestInterleavedLog? = TestInterleavedLog()
        let first = serve(request(origin: 0, receive: 0, transmit: 0x1111_2222_3333_4444), log: &log, receiveTime: t2.advanced(byNanoseconds: -1_000_000_000))
        if known { log!.transmits[first.receive] = kernelTransmit }
        return (log, first.receive)
    }

    @Test func firstRequestIsBasicAndRecorded() {
        var log: TestInterleavedLog? = TestInterleavedLog()
        let served = Self.serve(Self.request(origin: 0, receive: 0, transmit: 0xDEAD_BEEF_0000_0001), log: &log)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.origin == 0xDEAD_BEEF_0000_0001)
        #expect(log!.recorded == [served.receive])
        // chrony's marking: receive odd, transmit even, so a basic client's origin (our
        // transmit) never matches a recorded receive timestamp.
        #expect(served.receive & 1 == 1)
        #expect(served.transmit & 1 == 0)
        #expect(served.transmit > served.receive)
    }

    @Test func requestCarryingThePreviousReceiveIsInterleaved() {
        var (log, previousReceive) = Self.logAfterFirstReply()
        let clientReceive: UInt64 = 0x5555_6666_7777_8888  // the client's T4 of the previous reply
        let served = Self.serve(Self.request(origin: previousReceive, receive: clientReceive, transmit: 0x9999_AAAA_BBBB_CCCC), log: &log)
        // The action names the log entry and the receive timestamp the reply carries.
        #expect(served.action == .respond(length: 48, kind: .interleavedTime(log!.lastEntry)))
        #expect(log!.lastEntry.receive == served.receive)
        #expect(served.origin == clientReceive)  // origin = the request's receive field
        let t2 = NTPTimestamp(rawValue: served.receive).instant(near: Self.t2)
        #expect(abs(t2.nanoseconds(since: Self.t2)) <= NTPServerTests.precisionNanoseconds)  // this exchange's T2
        #expect(served.transmit == Self.kernelTransmit & ~1)  // the previous reply's kernel TX
        #expect(log!.recorded.last == served.receive)  // and this reply is recorded in turn
    }

    @Test func interleavedIsKeyedByAddressNotPort() {
        var (log, previousReceive) = Self.logAfterFirstReply()
        let newPort = ClientAddress(ipv4: 0xC000_0264, port: 40_123)
        let served = Self.serve(Self.request(origin: previousReceive, receive: 5, transmit: 9), log: &log, from: newPort)
        #expect(served.action == .respond(length: 48, kind: .interleavedTime(log!.lastEntry)))
        let otherAddress = ClientAddress(ipv4: 0xC000_0265, port: 50_000)
        (log, _) = Self.logAfterFirstReply()
        #expect(Self.serve(Self.request(origin: previousReceive, receive: 5, transmit: 9), log: &log, from: otherAddress).action == .respond(length: 48, kind: .time))
    }

    @Test func noInterleaveWithoutAKnownTransmitTimestamp() {
        var (log, previousReceive) = Self.logAfterFirstReply(known: false)
        let served = Self.serve(Self.request(origin: previousReceive, receive: 5, transmit: 0x9999), log: &log)
        // Basic, but the client asked for interleaved mode: this reply's transmit timestamp is wanted.
        #expect(served.action == .respond(length: 48, kind: .timeForInterleavedClient(log!.lastEntry)))
        #expect(log!.lastEntry.receive == served.receive)
        #expect(served.origin == 0x9999)  // basic: origin = the request's transmit
        #expect(served.transmit & 1 == 0 && served.transmit > served.receive)  // T3 stamped as for .time
        #expect(log!.recorded.last == served.receive)
    }

    @Test func chronyXleaveClientGetsTwoBasicRepliesThenInterleaved() {
        // chronyd with xleave: its first request carries a basic origin; the second carries our
        // first reply's T2 (intent), whose transmit timestamp was never requested; the third
        // carries the second reply's T2, whose kernel transmit timestamp is known by then.
        var log: TestInterleavedLog? = TestInterleavedLog()
        let first = Self.serve(Self.request(origin: 0, receive: 0, transmit: 0x1000), log: &log, receiveTime: Self.t2.advanced(byNanoseconds: -2_000_000_000))
        #expect(first.action == .respond(length: 48, kind: .time))
        #expect(!NTPReplyKind.time.wantsTransmitTimestamp)
        let second = Self.serve(Self.request(origin: first.receive, receive: 0x2001, transmit: 0x2000), log: &log, receiveTime: Self.t2.advanced(byNanoseconds: -1_000_000_000))
        #expect(second.action == .respond(length: 48, kind: .timeForInterleavedClient(log!.lastEntry)))
        #expect(NTPReplyKind.timeForInterleavedClient(log!.lastEntry).wantsTransmitTimestamp)
        #expect(second.origin == 0x2000)
        log!.transmits[second.receive] = Self.kernelTransmit  // the transport's report for the second reply
        let third = Self.serve(Self.request(origin: second.receive, receive: 0x3001, transmit: 0x3000), log: &log)
        #expect(third.action == .respond(length: 48, kind: .interleavedTime(log!.lastEntry)))
        #expect(NTPReplyKind.interleavedTime(log!.lastEntry).wantsTransmitTimestamp)
        #expect(third.origin == 0x3001)
        #expect(third.transmit == Self.kernelTransmit & ~1)
    }

    @Test func originMismatchIsBasic() {
        var (log, previousReceive) = Self.logAfterFirstReply()
        let served = Self.serve(Self.request(origin: previousReceive &+ 2, receive: 5, transmit: 0x7777), log: &log)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.origin == 0x7777)
    }

    @Test func receiveEqualToTransmitIsBasic() {
        // chrony's server test: a request whose receive and transmit fields are equal is basic.
        var (log, previousReceive) = Self.logAfterFirstReply()
        let served = Self.serve(Self.request(origin: previousReceive, receive: 0x4242, transmit: 0x4242), log: &log)
        #expect(served.action == .respond(length: 48, kind: .time))
    }

    @Test func onlyPlainNTPv4Interleaves() {
        var (log, previousReceive) = Self.logAfterFirstReply()
        let v3 = Self.serve(Self.request(origin: previousReceive, receive: 5, transmit: 9, version: 3), log: &log)
        #expect(v3.action == .respond(length: 48, kind: .time))
        (log, previousReceive) = Self.logAfterFirstReply()
        let count = log!.recorded.count
        let withMAC = Self.serve(Self.request(origin: previousReceive, receive: 5, transmit: 9, trailer: mac(length: 20)), log: &log)
        #expect(withMAC.action == .respond(length: 52, kind: .time))
        #expect(log!.recorded.count == count)  // a crypto-NAK is not recorded
    }

    @Test func withoutALogEveryReplyIsBasic() {
        var log: TestInterleavedLog? = nil
        let served = Self.serve(Self.request(origin: 3, receive: 5, transmit: 9), log: &log)
        #expect(served.action == .respond(length: 48, kind: .time))
        #expect(served.origin == 9)
    }

    @Test func aBasicClientWalkingThroughExchangesStaysBasic() {
        // A basic client puts our transmit timestamp in its origin: never a recorded receive.
        var log: TestInterleavedLog? = TestInterleavedLog()
        var origin: UInt64 = 0
        for i in 0..<50 {
            let served = Self.serve(Self.request(origin: origin, receive: 0, transmit: UInt64(1000 + i)), log: &log, receiveTime: Self.t2.advanced(byNanoseconds: Int64(i) * 1_000), seed: UInt64(i))
            log!.transmits[served.receive] = served.transmit
            #expect(served.action == .respond(length: 48, kind: .time))
            origin = served.transmit
        }
    }
}
