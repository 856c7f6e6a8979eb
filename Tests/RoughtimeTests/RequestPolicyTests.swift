import Testing
import TockCrypto
import TockProtocol

/// A request packet of exactly `length` bytes holding `fields`, padded with ZZZZ.
func requestPacket(_ fields: [RoughtimeTag: [UInt8]], length: Int = 1024) -> [UInt8] {
    var fields = fields
    let unpadded = 12 + RoughtimeMessageWriter.messageLength(valueLengths: fields.values.map(\.count) + [0])
    fields[.ZZZZ] = [UInt8](repeating: 0, count: length - unpadded)
    return RoughtimeEncoder.packet(fields)
}

/// `rawMessage` framed and padded (values of zero bytes) to exactly 1024 bytes.
func rawRequest(count: UInt32, offsets: [UInt32], tags: [RoughtimeTag]) -> [UInt8] {
    let header = 4 + 4 * offsets.count + 4 * tags.count
    return RoughtimeEncoder.packet(message: rawMessage(count: count, offsets: offsets, tags: tags, valuesLength: 1024 - 12 - header))
}

/// Hostile and odd requests against the server's checks (RFC 10049 §5.1, §5.2): each gets its
/// own reason, and nothing crashes.
@Suite struct RequestPolicyTests {
    let srv = Array(repeating: UInt8(0x5A), count: 32)
    var policy: RoughtimeRequestPolicy { RoughtimeRequestPolicy(srv: srv) }
    let nonce = Array(UInt8(1)...UInt8(32))

    /// The fields of a good request, to break one at a time.
    var good: [RoughtimeTag: [UInt8]] {
        [.VER: RoughtimeEncoder.bytes([.rfc, .draft12]), .NONC: nonce, .TYPE: RoughtimeEncoder.bytes(UInt32(0)), .SRV: srv]
    }

    @Test func goodRequestsAreAnswered() {
        let packet = requestPacket(good)
        // N = 5: VER (8 bytes) and SRV (32) come before NONC.
        #expect(decide(policy, packet) == .respond(.init(version: .rfc, nonceOffset: 12 + 40 + 8 + 32)))
        #expect(Array(packet[(12 + 40 + 8 + 32)..<(12 + 40 + 8 + 64)]) == nonce)
        var noSRV = good
        noSRV[.SRV] = nil
        #expect(decide(policy, requestPacket(noSRV)) == .respond(.init(version: .rfc, nonceOffset: 12 + 32 + 8)))
        // Longer than 1024 is fine, and unknown tags are ignored (§5.1).
        var extra = good
        extra[RoughtimeTag(rawValue: 0x4B4E_4E55)] = [1, 2, 3, 4]
        guard case .respond = decide(policy, requestPacket(extra, length: 1472)) else { Issue.record("long request refused"); return }
        // The builder's requests pass.
        #expect(decide(policy, RoughtimeRequestBuilder.packet(nonce: nonce, srv: srv)) == .respond(.init(version: .rfc, nonceOffset: 12 + 40 + 8 + 32)))
    }

    @Test func versionChoice() {
        func chosen(_ versions: [UInt32]) -> RoughtimeRequestDecision {
            var fields = good
            fields[.VER] = versions.flatMap(RoughtimeEncoder.bytes)
            return decide(policy, requestPacket(fields))
        }
        func version(_ d: RoughtimeRequestDecision) -> RoughtimeVersion? {
            if case .respond(let a) = d { return a.version }
            return nil
        }
        #expect(version(chosen([1])) == .rfc)
        #expect(version(chosen([0x8000_000C])) == .draft12)
        #expect(version(chosen([1, 0x8000_000C])) == .rfc)
        #expect(version(chosen([0x8000_0008, 0x8000_000B, 0x8000_000C])) == .draft12)
        #expect(version(chosen([1, 2, 0x8000_0008])) == .rfc)
        // No common version, or a VER that breaks §5.1.1.
        #expect(chosen([0x8000_0008]) == .ignore(.version))
        #expect(chosen([0x8000_0008, 0x8000_000B]) == .ignore(.version))
        #expect(chosen([]) == .ignore(.version))
        #expect(chosen([0x8000_000C, 1]) == .ignore(.version))
        #expect(chosen([1, 1]) == .ignore(.version))
        #expect(chosen(Array(1...33)) == .ignore(.version))
        #expect(version(chosen(Array(1...32))) == .rfc)
        var noVER = good
        noVER[.VER] = nil
        #expect(decide(policy, requestPacket(noVER)) == .ignore(.version))
    }

    @Test func shortRequestsAreTooShort() {
        #expect(decide(policy, []) == .ignore(.tooShort))
        #expect(decide(policy, Array(repeating: 0, count: 11)) == .ignore(.tooShort))
        #expect(decide(policy, requestPacket(good, length: 1020)) == .ignore(.tooShort))
        #expect(decide(policy, RoughtimeRequestBuilder.packet(nonce: nonce, length: 512)) == .ignore(.tooShort))
    }

    @Test func badFramingIsFraming() {
        let packet = requestPacket(good)
        #expect(decide(policy, Array(repeating: 0, count: 1024)) == .ignore(.framing(.badMagic)))
        var magic = packet
        magic[0] = UInt8(ascii: "r")
        #expect(decide(policy, magic) == .ignore(.framing(.badMagic)))
        var longer = packet
        longer[8] &+= 4
        #expect(decide(policy, longer) == .ignore(.framing(.badLength)))
        var shorter = packet
        shorter[8] &-= 4
        #expect(decide(policy, shorter) == .ignore(.framing(.badLength)))
        #expect(decide(policy, packet + [0, 0, 0, 0]) == .ignore(.framing(.badLength)))
    }

    @Test func badHeadersAreFraming() {
        #expect(decide(policy, rawRequest(count: 0, offsets: [], tags: [])) == .ignore(.framing(.noTags)))
        var huge = rawRequest(count: 1, offsets: [], tags: [.NONC])
        huge[12] = 0xFF; huge[13] = 0xFF; huge[14] = 0xFF; huge[15] = 0xFF
        #expect(decide(policy, huge) == .ignore(.framing(.tooManyTags)))
        var justTooMany = rawRequest(count: 1, offsets: [], tags: [.NONC])
        justTooMany[12] = 127  // 127 · 8 = 1016 header bytes > the 1012-byte message
        #expect(decide(policy, justTooMany) == .ignore(.framing(.tooManyTags)))
        #expect(decide(policy, rawRequest(count: 3, offsets: [36, 4], tags: [.VER, .NONC, .TYPE])) == .ignore(.framing(.offsetsOutOfOrder)))
        #expect(decide(policy, rawRequest(count: 3, offsets: [4, 4000], tags: [.VER, .NONC, .TYPE])) == .ignore(.framing(.offsetOutOfBounds)))
        #expect(decide(policy, rawRequest(count: 3, offsets: [4, 37], tags: [.VER, .NONC, .TYPE])) == .ignore(.framing(.offsetNotMultipleOfFour)))
        #expect(decide(policy, rawRequest(count: 3, offsets: [4, 36], tags: [.NONC, .VER, .TYPE])) == .ignore(.framing(.tagsOutOfOrder)))
        #expect(decide(policy, rawRequest(count: 3, offsets: [4, 36], tags: [.VER, .NONC, .NONC])) == .ignore(.framing(.repeatedTag)))
        // The same header, well formed, gets past framing to the fields: TYPE runs to the end.
        #expect(decide(policy, rawRequest(count: 3, offsets: [4, 36], tags: [.VER, .NONC, .TYPE])) == .ignore(.wrongType))
    }

    @Test func badFieldsHaveTheirReasons() {
        var fields = good
        fields[.NONC] = nil
        #expect(decide(policy, requestPacket(fields)) == .ignore(.missingNonce))
        fields[.NONC] = Array(repeating: 7, count: 16)
        #expect(decide(policy, requestPacket(fields)) == .ignore(.badNonce))
        fields[.NONC] = Array(repeating: 7, count: 64)
        #expect(decide(policy, requestPacket(fields)) == .ignore(.badNonce))
        fields[.NONC] = []
        #expect(decide(policy, requestPacket(fields)) == .ignore(.badNonce))

        fields = good
        fields[.TYPE] = RoughtimeEncoder.bytes(UInt32(1))
        #expect(decide(policy, requestPacket(fields)) == .ignore(.wrongType))
        fields[.TYPE] = RoughtimeEncoder.bytes(UInt64(0))
        #expect(decide(policy, requestPacket(fields)) == .ignore(.wrongType))
        fields[.TYPE] = nil
        #expect(decide(policy, requestPacket(fields)) == .ignore(.wrongType))

        fields = good
        fields[.SRV] = Array(repeating: 0x5B, count: 32)
        #expect(decide(policy, requestPacket(fields)) == .ignore(.unknownSRV))
        fields[.SRV] = Array(repeating: 0x5A, count: 16)
        #expect(decide(policy, requestPacket(fields)) == .ignore(.unknownSRV))
        fields[.SRV] = []
        #expect(decide(policy, requestPacket(fields)) == .ignore(.unknownSRV))
    }

    /// Random corruption of a good request, and random bytes: the decision is always a value,
    /// and an accepted request always has its nonce inside the packet.
    @Test func corruptedRequestsNeverCrash() {
        let base = requestPacket(good)
        var rng = SystemRandomNumberGenerator()
        for round in 0..<20_000 {
            var packet = base
            if round % 4 == 0 {
                packet = (0..<Int.random(in: 0...1100, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if round % 8 == 0, packet.count >= 12 { packet.replaceSubrange(0..<8, with: Array("ROUGHTIM".utf8)) }
            } else {
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    // Bias towards the header, where the structure is.
                    let i = Int.random(in: 0..<(Bool.random(using: &rng) ? 72 : packet.count), using: &rng)
                    packet[i] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            switch decide(policy, packet) {
            case .respond(let accepted):
                #expect(accepted.nonceOffset >= 12 && accepted.nonceOffset + 32 <= packet.count)
            case .ignore:
                break
            }
            packet.withUnsafeBytes { _ = try? RoughtimeReply(packet: $0) }
        }
    }
}
