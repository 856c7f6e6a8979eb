// libFuzzer target: the server's whole per-packet decision on untrusted input — protocol
// validation, access list, rate-limit bucket, kiss-o'-death conversion and transmit stamping —
// asserting that a reply never exceeds the request and always has a valid shape. The first
// bytes of the input choose the source port, address and clock; the rest is the datagram.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNTPServer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 8 else { return 0 }
    let control = UnsafeRawBufferPointer(start: data, count: 8)
    let request = UnsafeRawBufferPointer(start: data + 8, count: size - 8)
    let sourcePort = UInt16(control[0]) << 8 | UInt16(control[1])
    let address: [UInt8] = [control[2], control[3], control[4], control[5]]
    let now = UTCInstant(secondsSinceUnixEpoch: 1_795_546_000 + Int64(control[6]) * 86_400 * 365)
    let clock: ServerClockState = control[7] & 1 == 0 ? .unsynchronized : .local(stratum: control[7] >> 4 | 1, now: now, precisionNanoseconds: 30)
    let responder = NTPResponder(precision: Int8(bitPattern: control[7]) >> 2)
    var random = FastRandom(seed: UInt64(size))
    var reply = [UInt8](repeating: 0xEE, count: NTPResponder.maximumReplyLength)
    reply.withUnsafeMutableBytes { out in
        guard case .respond(let length) = responder.respond(to: request, sourcePort: sourcePort, receiveTime: now, clock: clock, reply: out, random: &random) else { return }
        precondition(length <= request.count, "reply longer than request")
        precondition(length == 48 || length == 52, "reply length \(length)")
        let deny = AccessList(deny: [AddressPrefix(bytes: [10, 0, 0, 0], length: 8)])
        let permitted = address.withUnsafeBytes { deny.permits($0) }
        let (_, decision) = RateLimitBucket.decide(RateLimitBucket(rawValue: UInt64(control[3]) << 32), fingerprint: UInt32(control[4]), nowNanoseconds: Int64(control[5]) << 30, policy: RateLimitPolicy(burst: 1, kissOfDeath: true), random: random.next())
        if !permitted { NTPResponder.convertToKissOfDeath(.deny, reply: out) } else if decision == .kiss { NTPResponder.convertToKissOfDeath(.rate, reply: out) }
        responder.stampTransmitTime(now.advanced(byNanoseconds: Int64(control[6])), reply: out, random: &random)
        let packet = try! NTPPacket(decoding: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out).prefix(48)))
        precondition(packet.mode == .server, "reply mode")
        precondition(packet.originTimestamp.rawValue == UInt64(bigEndian: request.loadUnaligned(fromByteOffset: 40, as: UInt64.self)), "origin not echoed")
        if packet.stratum != 0 {
            precondition(packet.transmitTimestamp != packet.originTimestamp && packet.receiveTimestamp != packet.originTimestamp, "timestamp equals origin")
            precondition(Int64(bitPattern: packet.transmitTimestamp.rawValue &- packet.receiveTimestamp.rawValue) > 0, "T3 not after T2")
        }
    }
    return 0
}
