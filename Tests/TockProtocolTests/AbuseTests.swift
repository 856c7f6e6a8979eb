import Testing
import TockProtocol

@Suite struct RateLimitBucketTests {
    static let second: Int64 = 1_000_000_000

    /// Runs `count` requests `spacing` apart from one client and returns the decisions.
    static func run(_ policy: RateLimitPolicy, count: Int, spacing: Int64, start: Int64 = 1_000 * second, random: UInt64 = 1) -> [RateLimitDecision] {
        var bucket = RateLimitBucket(rawValue: 0)
        var out: [RateLimitDecision] = []
        for i in 0..<count {
            let (next, decision) = RateLimitBucket.decide(bucket, fingerprint: 0xABCDEF, nowNanoseconds: start + Int64(i) * spacing, policy: policy, random: random)
            bucket = next
            out.append(decision)
        }
        return out
    }

    @Test func burstThenDrop() {
        let policy = RateLimitPolicy(intervalLog2: 3, burst: 4, leakLog2: 0)
        let decisions = Self.run(policy, count: 10, spacing: 1_000_000)
        #expect(decisions.prefix(4).allSatisfy { $0 == .allow })
        #expect(decisions.dropFirst(4).allSatisfy { $0 == .drop })
    }

    @Test func tokensAreEarnedOnePerInterval() {
        // One request per second against one response per 2 s, burst 1: every other is answered.
        let policy = RateLimitPolicy(intervalLog2: 1, burst: 1, leakLog2: 0)
        let decisions = Self.run(policy, count: 20, spacing: Self.second)
        let allowed = decisions.filter { $0 == .allow }.count
        #expect(allowed == 10)
    }

    @Test func leakAnswersOneInTwoToTheLeak() {
        let policy = RateLimitPolicy(intervalLog2: 10, burst: 1, leakLog2: 2)
        var bucket = RateLimitBucket(rawValue: 0)
        var random = FastRandom(seed: 3)
        var allowed = 0
        for i in 0..<4000 {
            let (next, d) = RateLimitBucket.decide(bucket, fingerprint: 1, nowNanoseconds: Self.second * 100 + Int64(i) * 1000, policy: policy, random: random.next())
            bucket = next
            if d == .allow { allowed += 1 }
        }
        // 1 from the burst, then about 1 in 4 of 3999.
        #expect((900...1100).contains(allowed))
    }

    @Test func oneKissPerEmptiedBucket() {
        let policy = RateLimitPolicy(intervalLog2: 3, burst: 2, leakLog2: 0, kissOfDeath: true)
        let decisions = Self.run(policy, count: 6, spacing: 1_000_000)
        #expect(decisions == [.allow, .allow, .kiss, .drop, .drop, .drop])
        // After an interval the bucket has a token again, and may kiss again once it is empty.
        let later = Self.run(policy, count: 12, spacing: Self.second * 2)
        #expect(later.contains(.kiss))
    }

    @Test func anotherClientInTheSlotStartsAFullBucket() {
        let policy = RateLimitPolicy(intervalLog2: 3, burst: 1, leakLog2: 0)
        let (afterA, first) = RateLimitBucket.decide(RateLimitBucket(rawValue: 0), fingerprint: 1, nowNanoseconds: Self.second, policy: policy, random: 1)
        #expect(first == .allow)
        #expect(RateLimitBucket.decide(afterA, fingerprint: 1, nowNanoseconds: Self.second + 1000, policy: policy, random: 1).1 == .drop)
        #expect(RateLimitBucket.decide(afterA, fingerprint: 2, nowNanoseconds: Self.second + 1000, policy: policy, random: 1).1 == .allow)
    }

    @Test func aLongSilenceRefillsAndTheClockWrapsHarmlessly() {
        let policy = RateLimitPolicy(intervalLog2: 3, burst: 2, leakLog2: 0)
        var bucket = RateLimitBucket(rawValue: 0)
        for i in 0..<3 { bucket = RateLimitBucket.decide(bucket, fingerprint: 9, nowNanoseconds: Self.second + Int64(i), policy: policy, random: 1).0 }
        #expect(bucket.tokens == 0)
        // 30 days later (past the packed clock's span): full again.
        let later = Self.second + 30 * 86_400 * Self.second
        #expect(RateLimitBucket.decide(bucket, fingerprint: 9, nowNanoseconds: later, policy: policy, random: 1).1 == .allow)
    }

    @Test func policyRangesAreChecked() {
        #expect(RateLimitPolicy().problems.isEmpty)
        #expect(!RateLimitPolicy(intervalLog2: 13).problems.isEmpty)
        #expect(!RateLimitPolicy(burst: 0).problems.isEmpty)
        #expect(!RateLimitPolicy(leakLog2: 5).problems.isEmpty)
        #expect(!RateLimitPolicy(ipv6PrefixLength: 129).problems.isEmpty)
    }
}

@Suite struct AccessListTests {
    static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> [UInt8] { [a, b, c, d] }
    static func parse(_ text: String) throws -> AddressPrefix {
        try AddressPrefix(parsing: text) { s in
            let parts = s.split(separator: ".").compactMap { UInt8($0) }
            if parts.count == 4 { return parts }
            if s == "2001:db8::" { return [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 12) }
            return nil
        }
    }

    @Test func prefixesMatch() throws {
        let p = try Self.parse("192.0.2.0/24")
        #expect(p.contains(ClientAddress(bytes: Self.v4(192, 0, 2, 77), port: 1)!))
        #expect(!p.contains(ClientAddress(bytes: Self.v4(192, 0, 3, 1), port: 1)!))
        let odd = try Self.parse("10.128.0.0/9")
        #expect(odd.contains(ClientAddress(bytes: Self.v4(10, 200, 1, 1), port: 1)!))
        #expect(!odd.contains(ClientAddress(bytes: Self.v4(10, 127, 1, 1), port: 1)!))
        let v6 = try Self.parse("2001:db8::/32")
        let inside: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 9, 9] + [UInt8](repeating: 1, count: 10)
        #expect(v6.contains(ClientAddress(bytes: inside, port: 1)!))
        #expect(!v6.contains(ClientAddress(bytes: Self.v4(192, 0, 2, 1), port: 1)!))  // families never match
        #expect((try Self.parse("0.0.0.0/0")).length == 0)
    }

    @Test func badPrefixesAreRejected() {
        #expect(throws: AddressPrefix.ParseError.self) { try Self.parse("192.0.2.0/33") }
        #expect(throws: AddressPrefix.ParseError.self) { try Self.parse("not-an-address/8") }
        #expect(throws: AddressPrefix.ParseError.self) { try Self.parse("192.0.2.0/8/1") }
    }

    @Test func denyWinsAndAllowRestricts() throws {
        let list = AccessList(allow: [try Self.parse("10.0.0.0/8")], deny: [try Self.parse("10.9.0.0/16")])
        #expect(list.permits(ClientAddress(bytes: Self.v4(10, 1, 1, 1), port: 1)!))
        #expect(!list.permits(ClientAddress(bytes: Self.v4(10, 9, 1, 1), port: 1)!))
        #expect(!list.permits(ClientAddress(bytes: Self.v4(192, 0, 2, 1), port: 1)!))
        #expect(AccessList().permits(ClientAddress(bytes: Self.v4(192, 0, 2, 1), port: 1)!))
    }

    @Test func reflectionPorts() {
        for port: UInt16 in [0, 7, 13, 19, 37, 123, 1900, 5353, 11211] { #expect(ReflectionPorts.isReflectionRisk(port)) }
        for port: UInt16 in [1024, 40000, 65535, 8080] { #expect(!ReflectionPorts.isReflectionRisk(port)) }
    }
}

/// A rate-limit table in plain memory, deciding with the core's bucket arithmetic.
final class TestRateLimitTable: RateLimitTable {
    let policy: RateLimitPolicy
    var buckets: [ClientAddress: RateLimitBucket] = [:]
    init(_ policy: RateLimitPolicy) { self.policy = policy }
    func decide(_ client: ClientAddress, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision {
        let key = client.prefix(ipv4Length: policy.ipv4PrefixLength, ipv6Length: policy.ipv6PrefixLength)
        let (next, decision) = RateLimitBucket.decide(buckets[key] ?? RateLimitBucket(rawValue: 0), fingerprint: 1, nowNanoseconds: now, policy: policy, random: random)
        buckets[key] = next
        return decision
    }
}

@Suite struct NTPDecisionTests {
    static let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)
    static let client = ClientAddress(ipv4: 0xC000_0207, port: 40000)
    static let request = NTPClientExchange(version: 3, requestTransmit: NTPTimestamp(rawValue: 0x1122_3344_5566_7788)).requestBytes

    func decide<T: RateLimitTable>(_ request: [UInt8] = NTPDecisionTests.request, admission: ClientAdmission<T>) -> (NTPServerAction, [UInt8]) {
        var random = FastRandom(seed: 1)
        var reply = [UInt8](repeating: 0xAA, count: NTPServer.maximumReplyLength)
        let action = request.withUnsafeBytes { req in
            reply.withUnsafeMutableBytes { out in
                NTPServer(precision: -20).handle(req, from: Self.client, receiveTime: Self.now, clock: .local(stratum: 2, now: Self.now, precisionNanoseconds: 1), admission: admission, reply: out, random: &random)
            }
        }
        return (action, reply)
    }

    @Test func deniedClientsGetTheConfiguredKissWithTheOriginEchoed() throws {
        let deny = AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)])
        let (action, reply) = decide(admission: ClientAdmission(policy: ServicePolicy(access: deny, denyKissCode: .deny)))
        #expect(action == .respond(length: 48, kind: .kissOfDeath(.deny, reason: .denied)))
        let p = try NTPPacket(decoding: reply)
        #expect(p.leap == .unsynchronized && p.stratum == 0 && p.version == 3 && p.mode == .server)
        #expect(p.kissCode == .deny)
        #expect(p.originTimestamp.rawValue == 0x1122_3344_5566_7788)
        #expect(p.receiveTimestamp.isZero && p.transmitTimestamp.isZero)
        let exchange = NTPClientExchange(version: 3, requestTransmit: NTPTimestamp(rawValue: 0x1122_3344_5566_7788))
        #expect(exchange.evaluate(reply: Array(reply[..<48]), t1: Self.now, t4: Self.now) == .failure(.kissOfDeath(.deny)))
        // Without a kiss code, silence.
        #expect(decide(admission: ClientAdmission(policy: ServicePolicy(access: deny))).0 == .ignore(.denied))
        // Another client is served.
        let other = ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [198, 51, 100, 0], length: 24)]), denyKissCode: .deny)
        #expect(decide(admission: ClientAdmission(policy: other)).0 == .respond(length: 48, kind: .time))
    }

    @Test func validationComesBeforeAdmission() {
        let deny = ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]), denyKissCode: .deny)
        var server = Self.request
        server[0] = 0x24  // mode 4: never answered, not even with a kiss
        #expect(decide(server, admission: ClientAdmission(policy: deny)).0 == .ignore(.notClientMode))
        #expect(decide(Array(Self.request[..<47]), admission: ClientAdmission(policy: deny)).0 == .ignore(.tooShort))
    }

    @Test func rateLimitKissesOncePerEmptiedBucketThenDrops() {
        let limit = RateLimitPolicy(intervalLog2: 12, burst: 2, leakLog2: 0, kissOfDeath: true)
        let table = TestRateLimitTable(limit)
        let admission = ClientAdmission(policy: ServicePolicy(rateLimit: limit), table: table, monotonicNanoseconds: 1 << 40)
        let actions = (0..<5).map { _ in decide(admission: admission).0 }
        #expect(actions == [
            .respond(length: 48, kind: .time), .respond(length: 48, kind: .time),
            .respond(length: 48, kind: .kissOfDeath(.rate, reason: .rateLimited)),
            .ignore(.rateLimited), .ignore(.rateLimited),
        ])
        // A denied client never spends a bucket.
        let denied = ClientAdmission(policy: ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]), rateLimit: limit), table: TestRateLimitTable(limit), monotonicNanoseconds: 0)
        _ = decide(admission: denied)
        #expect(denied.table!.buckets.isEmpty)
    }
}

@Suite struct TextTimeDecisionTests {
    static let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000)

    func decide<T: RateLimitTable>(_ service: TockService, port: UInt16 = 40000, transport: TextTimeServer.Transport = .datagram, clock: ServerClockState = .local(stratum: 2, now: TextTimeDecisionTests.now, precisionNanoseconds: 1), admission: ClientAdmission<T>) -> (TextTimeServer.Action, [UInt8]) {
        var reply = [UInt8](repeating: 0, count: TextTimeServer.maximumReplyLength)
        let action = reply.withUnsafeMutableBytes { out in
            TextTimeServer(service: service, format: .iso8601, zone: .utc).handle(from: ClientAddress(ipv4: 0xC000_0207, port: port), transport: transport, now: Self.now, localZone: .utc, clock: clock, admission: admission, random: 0, reply: out)
        }
        if case .respond(let n) = action { return (action, Array(reply[..<n])) }
        return (action, [])
    }

    @Test func answersWithTheTime() {
        let open = ClientAdmission(policy: ServicePolicy())
        let (action, text) = decide(.daytime, admission: open)
        #expect(action == .respond(length: 22))
        #expect(String(decoding: text, as: UTF8.self) == Daytime.text(Self.now, format: .iso8601))
        #expect(decide(.time, admission: open).1 == RFC868.value(for: Self.now).bigEndianBytes)
    }

    @Test func dropsInOrderReflectionAdmissionClock() {
        let open = ClientAdmission(policy: ServicePolicy())
        let deny = ClientAdmission(policy: ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]), denyKissCode: .deny))
        #expect(decide(.time, port: 19, admission: deny).0 == .ignore(.reflectionPort))
        #expect(decide(.time, port: 19, transport: .stream, admission: open).0 == .respond(length: 4), "TCP peers completed a handshake")
        #expect(decide(.daytime, clock: .unsynchronized, admission: deny).0 == .ignore(.denied), "a kiss is a drop outside NTP")
        #expect(decide(.daytime, clock: .unsynchronized, admission: open).0 == .ignore(.unsynchronized))
    }
}

extension UInt32 {
    var bigEndianBytes: [UInt8] { [UInt8(self >> 24), UInt8(self >> 16 & 0xFF), UInt8(self >> 8 & 0xFF), UInt8(self & 0xFF)] }
}

@Suite struct LeapSecondTests {
    @Test func kernelLeapInProgressIsPassedOn() {
        let now = UTCInstant(secondsSinceUnixEpoch: 1_483_228_799)
        let oop = KernelClockReading(status: KernelClockReading.statusInsertLeap, state: KernelClockReading.stateLeapInProgress, maxErrorMicroseconds: 1000, estimatedErrorMicroseconds: 1)
        let state = oop.serverState(stratum: 2, referenceID: 0, now: now)
        #expect(state.leap == .insertSecond)
        #expect(state.leapSecondInProgress)
        let ok = KernelClockReading(status: 0, state: 0, maxErrorMicroseconds: 1000, estimatedErrorMicroseconds: 1)
        #expect(!ok.serverState(stratum: 2, referenceID: 0, now: now).leapSecondInProgress)
    }

    @Test func daytimeShowsSecondSixtyDuringTheLeap() {
        // 2016-12-31 23:59:59 UTC, repeated by the kernel during the inserted second.
        let instant = UTCInstant(secondsSinceUnixEpoch: 1_483_228_799)
        var out = [UInt8](repeating: 0, count: Daytime.maximumReplyLength)
        let n = out.withUnsafeMutableBytes { Daytime.write(instant, format: .iso8601, utcOffsetSeconds: 0, zoneAbbreviation: nil, leapSecond: true, into: $0) }
        #expect(String(decoding: out[..<n], as: UTF8.self) == "2016-12-31T23:59:60Z\r\n")
    }
}
