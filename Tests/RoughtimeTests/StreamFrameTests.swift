import Testing
import TockProtocol

/// Finding a request in a TCP stream (RFC 10049 §5): the core decides from the header, before
/// the rest is read, and feeding bytes one at a time decides as feeding them all at once.
@Suite struct StreamFrameTests {
    let request = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 7, count: 32))

    func decide(_ bytes: [UInt8]) -> RoughtimeFrameDecision {
        bytes.withUnsafeBytes { RoughtimeStream.requestFrame($0) }
    }

    /// The packet header for a message of `length` bytes, with a valid magic.
    func header(messageLength length: UInt32) -> [UInt8] {
        Array("ROUGHTIM".utf8) + withUnsafeBytes(of: length.littleEndian) { Array($0) }
    }

    @Test("A whole request is complete at exactly its length; bytes after it are not part of it")
    func wholeRequest() {
        #expect(decide(request) == .complete(length: 1024))
        #expect(decide(request + [1, 2, 3]) == .complete(length: 1024))
        #expect(decide(Array(request.prefix(12))) == .needMore(1024))
        #expect(decide(Array(request.prefix(1023))) == .needMore(1024))
        #expect(decide([]) == .needMore(12))
        #expect(decide(Array(request.prefix(5))) == .needMore(12))
    }

    @Test("Bad magic is refused at the first wrong byte")
    func badMagic() {
        #expect(decide(Array("R".utf8)) == .needMore(12))
        #expect(decide(Array("RX".utf8)) == .reject(.framing(.badMagic)))
        #expect(decide(Array("GET / HTTP/1.1\r\n".utf8)) == .reject(.framing(.badMagic)))
        var bad = request
        bad[7] ^= 0x20
        #expect(decide(bad) == .reject(.framing(.badMagic)))
    }

    @Test("A length over 2048 or under 1024 bytes is refused from the header alone")
    func lengthBounds() {
        #expect(decide(header(messageLength: 1012)) == .needMore(1024))
        #expect(decide(header(messageLength: 1011)) == .reject(.tooShort))
        #expect(decide(header(messageLength: 0)) == .reject(.tooShort))
        #expect(decide(header(messageLength: 2036)) == .needMore(2048))
        #expect(decide(header(messageLength: 2037)) == .reject(.tooLong))
        #expect(decide(header(messageLength: .max)) == .reject(.tooLong))
    }

    @Test("A client reading a reply allows short packets and nothing longer than its request")
    func clientBounds() {
        let head = header(messageLength: 400)
        #expect(head.withUnsafeBytes { RoughtimeStream.frame($0, minimumLength: 12, maximumLength: 1024) } == .needMore(412))
        let long = header(messageLength: 1013)
        #expect(long.withUnsafeBytes { RoughtimeStream.frame($0, minimumLength: 12, maximumLength: 1024) } == .reject(.tooLong))
    }

    @Test("Fed one byte at a time, the first decision is the decision on the whole input")
    func byteAtATime() {
        var cases: [[UInt8]] = [request, Array(request.prefix(600)), header(messageLength: 70_000) + [0, 0], Array("ROUGHTIX".utf8)]
        var longer = RoughtimeRequestBuilder.packet(nonce: [UInt8](repeating: 1, count: 32), length: 2048)
        cases.append(longer)
        longer[8] = 0xFF
        cases.append(longer)
        for bytes in cases {
            var first: RoughtimeFrameDecision?
            for k in 0...bytes.count {
                let decision = decide(Array(bytes[..<k]))
                if case .needMore(let n) = decision {
                    #expect(n > k)
                    continue
                }
                first = decision
                break
            }
            if let first { #expect(first == decide(bytes)) } else { #expect(decide(bytes) == .needMore(1024)) }
        }
    }
}
