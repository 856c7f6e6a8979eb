// libFuzzer target: the server's whole per-packet decision, `NTPServer.handle`, on untrusted
// input — protocol validation, access list, rate-limit bucket and kiss-o'-death, in the order
// the server runs them — then transmit stamping, asserting that a reply never exceeds the
// request and always has a valid shape. The first bytes of the input choose the source port,
// address, clock and policy; the rest is the datagram.

/// A one-bucket-per-address table in plain memory, with the core's bucket arithmetic.
final class FuzzRateLimitTable: RateLimitTable {
    let policy: RateLimitPolicy
    var buckets: [ClientAddress: RateLimitBucket] = [:]
    init(_ policy: RateLimitPolicy, seed: UInt64) {
        self.policy = policy
        buckets[ClientAddress(ipv4: 0x0A00_0001, port: 0)] = RateLimitBucket(rawValue: seed)
    }
    func decide(_ client: ClientAddress, nowNanoseconds now: Int64, random: UInt64) -> RateLimitDecision {
        let key = client.prefix(ipv4Length: policy.ipv4PrefixLength, ipv6Length: policy.ipv6PrefixLength)
        let (next, decision) = RateLimitBucket.decide(buckets[key] ?? RateLimitBucket(rawValue: 0), fingerprint: 7, nowNanoseconds: now, policy: policy, random: random)
        buckets[key] = next
        return decision
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNTPServer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 8 else { return 0 }
    let control = UnsafeRawBufferPointer(start: data, count: 8)
    let request = UnsafeRawBufferPointer(start: data + 8, count: size - 8)
    let sourcePort = UInt16(control[0]) << 8 | UInt16(control[1])
    let client = ClientAddress(ipv4: UInt32(control[2]) << 24 | UInt32(control[3]) << 16 | UInt32(control[4]) << 8 | UInt32(control[5]), port: sourcePort)
    let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000 + Int64(control[6]) * 86_400 * 365)
    let clock: ServerClockState = control[7] & 1 == 0 ? .unsynchronized : .local(stratum: control[7] >> 4 | 1, now: now, precisionNanoseconds: 30)
    let server = NTPServer(precision: Int8(bitPattern: control[7]) >> 2)
    let limit = RateLimitPolicy(burst: 1, leakLog2: Int(control[6] & 3), kissOfDeath: control[6] & 4 != 0)
    let policy = ServicePolicy(
        access: AccessList(deny: [AddressPrefix(bytes: [10, 0, 0, 0], length: 8)]),
        rateLimit: control[7] & 2 == 0 ? nil : limit,
        denyKissCode: control[7] & 4 == 0 ? nil : .deny
    )
    let admission = ClientAdmission(policy: policy, table: FuzzRateLimitTable(limit, seed: UInt64(control[3]) << 32), monotonicNanoseconds: Int64(control[5]) << 30)
    var random = FastRandom(seed: UInt64(size))
    var reply = [UInt8](repeating: 0xEE, count: NTPServer.maximumReplyLength)
    reply.withUnsafeMutableBytes { out in
        let action = server.handle(request, from: client, receiveTime: now, clock: clock, admission: admission, reply: out, random: &random)
        guard case .respond(let length, let kind) = action else { return }
        precondition(length <= request.count, "reply longer than request")
        precondition(length == 48 || length == 52, "reply length \(length)")
        if case .time = kind { server.stampTransmitTime(now.advanced(byNanoseconds: Int64(control[6])), reply: out, random: &random) }
        let packet = try! NTPPacket(decoding: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out).prefix(48)))
        precondition(packet.mode == .server, "reply mode")
        precondition(packet.originTimestamp.rawValue == UInt64(bigEndian: request.loadUnaligned(fromByteOffset: 40, as: UInt64.self)), "origin not echoed")
        switch kind {
        case .authenticatedTime:
            preconditionFailure("an NTS reply from a server without NTS")
        case .interleavedTime, .timeForInterleavedClient:
            preconditionFailure("an interleaved-mode reply from a server without a client log")
        case .time:
            precondition(packet.stratum != 0 || clock.leap == .unsynchronized, "time reply at stratum 0 from a synchronised clock")
            precondition(packet.transmitTimestamp != packet.originTimestamp && packet.receiveTimestamp != packet.originTimestamp, "timestamp equals origin")
            precondition(Int64(bitPattern: packet.transmitTimestamp.rawValue &- packet.receiveTimestamp.rawValue) > 0, "T3 not after T2")
        case .kissOfDeath(let code, let reason):
            precondition(packet.stratum == 0 && packet.kissCode == code, "kiss shape")
            precondition(packet.receiveTimestamp.isZero && packet.transmitTimestamp.isZero, "kiss carries time")
            precondition(reason == .denied ? client.high == 0 && (client.low >> 24) & 0xFF == 10 : reason == .rateLimited, "kiss reason")
        }
    }
    return 0
}
