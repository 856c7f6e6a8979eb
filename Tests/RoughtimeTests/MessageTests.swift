import Testing
import TockProtocol

/// A message from raw header fields, for hostile input: N, the offsets and the tags exactly as
/// given, then `valuesLength` bytes of values (0x00).
func rawMessage(count: UInt32, offsets: [UInt32], tags: [RoughtimeTag], valuesLength: Int) -> [UInt8] {
    RoughtimeEncoder.bytes(count) + offsets.flatMap(RoughtimeEncoder.bytes) + tags.flatMap { RoughtimeEncoder.bytes($0.rawValue) }
        + [UInt8](repeating: 0, count: valuesLength)
}

/// How `bytes` fare as a bare message: nil if valid, else the error.
func messageError(_ bytes: [UInt8]) -> RoughtimeMessageError? {
    bytes.withUnsafeBytes { b in
        do throws(RoughtimeMessageError) {
            _ = try RoughtimeMessage(validating: b)
            return nil
        } catch {
            return error
        }
    }
}

/// How `bytes` fare as a packet: nil if valid, else the error.
func packetError(_ bytes: [UInt8]) -> RoughtimeMessageError? {
    bytes.withUnsafeBytes { b in
        do throws(RoughtimeMessageError) {
            _ = try RoughtimeMessage(packet: b)
            return nil
        } catch {
            return error
        }
    }
}

/// The message format (RFC 10049 §4.2) and packet framing (§5): each malformation has its own
/// error, and what the writer writes the reader reads back.
@Suite struct MessageTests {
    @Test func tagsAreTheSpecNumbers() {
        #expect(RoughtimeTag.VER.rawValue == 0x0052_4556)
        #expect(RoughtimeTag.NONC.rawValue == 0x434E_4F4E)
        #expect(RoughtimeTag.VER < RoughtimeTag.NONC)
        #expect(RoughtimeTag.VER.description == "VER")
        #expect(RoughtimeTag.ZZZZ.description == "ZZZZ")
        #expect(RoughtimeTag.PAD.description == "PAD\\xff")
        let all: [RoughtimeTag] = [.VER, .NONC, .TYPE, .SRV, .ZZZZ, .SIG, .PATH, .SREP, .RADI, .MIDP, .VERS, .ROOT, .CERT, .DELE, .PUBK, .MINT, .MAXT, .INDX, .PAD]
        for tag in all {
            // The uint32 is the ASCII spelling read little-endian, zero padded (§4.1.3).
            var name = Array(tag.description.utf8.prefix(while: { $0 != UInt8(ascii: "\\") }))
            if tag == .PAD { name.append(0xFF) }
            while name.count < 4 { name.append(0) }
            #expect(RoughtimeEncoder.bytes(tag.rawValue) == name, "\(tag)")
        }
    }

    @Test func writerOutputReadsBack() throws {
        let fields: [RoughtimeTag: [UInt8]] = [
            .NONC: Array(0..<32), .VER: RoughtimeEncoder.bytes(UInt32(1)), .PATH: [], .MIDP: RoughtimeEncoder.bytes(UInt64(0x0102_0304_0506_0708)),
        ]
        let bytes = RoughtimeEncoder.message(fields)
        #expect(bytes.count == 8 * 4 + 32 + 4 + 0 + 8)
        try bytes.withUnsafeBytes { b in
            let m = try RoughtimeMessage(validating: b)
            #expect(m.count == 4)
            #expect((0..<4).map(m.tag(at:)) == [.VER, .NONC, .PATH, .MIDP])
            #expect(Array(try m.required(.NONC, length: 32)) == Array(0..<32))
            #expect(try m.uint32(.VER) == 1)
            #expect(try m.uint64(.MIDP) == 0x0102_0304_0506_0708)
            #expect(m.value(of: .PATH)?.count == 0)
            #expect(m.value(of: .SIG) == nil)
            #expect(throws: RoughtimeMessageError.missingTag(.SIG)) { try m.required(.SIG) }
            #expect(throws: RoughtimeMessageError.badValueLength(.NONC)) { try m.uint64(.NONC) }
        }
        // One tag: no offsets at all.
        let single = RoughtimeEncoder.message([.INDX: RoughtimeEncoder.bytes(UInt32(7))])
        #expect(single == [1, 0, 0, 0] + RoughtimeEncoder.bytes(RoughtimeTag.INDX.rawValue) + [7, 0, 0, 0])
        #expect(messageError(single) == nil)
    }

    @Test func malformedMessagesEachHaveTheirError() {
        #expect(messageError([]) == .tooShort)
        #expect(messageError([1, 0]) == .tooShort)
        #expect(messageError([1, 0, 0, 0, 0]) == .misaligned)
        #expect(messageError(rawMessage(count: 0, offsets: [], tags: [], valuesLength: 16)) == .noTags)
        #expect(messageError(rawMessage(count: 0xFFFF_FFFF, offsets: [], tags: [], valuesLength: 64)) == .tooManyTags)
        #expect(messageError(rawMessage(count: 3, offsets: [4], tags: [.VER, .NONC], valuesLength: 0)) == .tooManyTags)
        #expect(messageError(rawMessage(count: 2, offsets: [6], tags: [.VER, .NONC], valuesLength: 16)) == .offsetNotMultipleOfFour)
        #expect(messageError(rawMessage(count: 2, offsets: [20], tags: [.VER, .NONC], valuesLength: 16)) == .offsetOutOfBounds)
        #expect(messageError(rawMessage(count: 3, offsets: [8, 4], tags: [.VER, .NONC, .TYPE], valuesLength: 16)) == .offsetsOutOfOrder)
        #expect(messageError(rawMessage(count: 2, offsets: [4], tags: [.NONC, .VER], valuesLength: 16)) == .tagsOutOfOrder)
        #expect(messageError(rawMessage(count: 2, offsets: [4], tags: [.NONC, .NONC], valuesLength: 16)) == .repeatedTag)
        // Equal offsets are a zero-length value, and an offset at the very end is allowed.
        #expect(messageError(rawMessage(count: 3, offsets: [4, 4], tags: [.VER, .NONC, .TYPE], valuesLength: 16)) == nil)
        #expect(messageError(rawMessage(count: 2, offsets: [16], tags: [.VER, .NONC], valuesLength: 16)) == nil)
    }

    @Test func malformedPacketsEachHaveTheirError() {
        let message = RoughtimeEncoder.message([.NONC: Array(repeating: 1, count: 32)])
        let packet = RoughtimeEncoder.packet(message: message)
        #expect(packetError(packet) == nil)
        #expect(Array(packet[0..<8]) == Array("ROUGHTIM".utf8))
        #expect(packetError(Array(packet[0..<11])) == .tooShort)
        var magic = packet
        magic[7] ^= 0x20
        #expect(packetError(magic) == .badMagic)
        #expect(packetError(packet + [0, 0, 0, 0]) == .badLength)
        #expect(packetError(Array(packet.dropLast(4))) == .badLength)
        var length = packet
        length[8] &+= 4
        #expect(packetError(length) == .badLength)
        #expect(packetError(RoughtimeEncoder.packet(message: [0, 0, 0, 0])) == .noTags)
    }

    /// A malformed nested message says where it was.
    @Test func nestedErrorsNameTheirTag() throws {
        let badSREP = rawMessage(count: 2, offsets: [4], tags: [.ROOT, .RADI], valuesLength: 8)
        let reply = RoughtimeEncoder.message([.SREP: badSREP, .CERT: RoughtimeEncoder.message([.DELE: [0, 0, 0, 0]])])
        try reply.withUnsafeBytes { b in
            let m = try RoughtimeMessage(validating: b)
            #expect(throws: RoughtimeMessageError.nested(.SREP, .tagsOutOfOrder)) { try m.message(.SREP) }
            let cert = try m.message(.CERT)
            #expect(throws: RoughtimeMessageError.nested(.DELE, .noTags)) { try cert.message(.DELE) }
        }
        let packet = RoughtimeEncoder.packet(message: reply)
        packet.withUnsafeBytes { b in
            _ = #expect(throws: RoughtimeMessageError.nested(.SREP, .tagsOutOfOrder)) { try RoughtimeReply(packet: b) }
        }
    }

    /// The writer traps on misuse rather than writing a malformed message; here it is used
    /// right, with a nested message written into a reserved range.
    @Test func writerNestsMessages() throws {
        var buffer = [UInt8](repeating: 0xEE, count: 128)
        let length = buffer.withUnsafeMutableBytes { b -> Int in
            var outer = RoughtimeMessageWriter(into: b, tagCount: 2)
            outer.append(.NONC, bytes: UnsafeRawBufferPointer(start: nil, count: 0))
            let srep = outer.reserve(.SREP, length: 8 + 4)
            var inner = RoughtimeMessageWriter(into: UnsafeMutableRawBufferPointer(rebasing: b[srep]), tagCount: 1)
            inner.append(.RADI, uint32: 3)
            #expect(inner.length == 12)
            return outer.length
        }
        #expect(length == 16 + 12)
        try buffer.withUnsafeBytes { b in
            let m = try RoughtimeMessage(validating: UnsafeRawBufferPointer(rebasing: b[0..<length]))
            #expect(try m.message(.SREP).uint32(.RADI) == 3)
            #expect(m.value(of: .NONC)?.isEmpty == true)
        }
    }
}
