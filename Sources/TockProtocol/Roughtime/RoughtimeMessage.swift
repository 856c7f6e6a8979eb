/// Reading Roughtime packets and messages (RFC 10049 §4, §5) in place: every bound is checked
/// once, up front, and then values are handed out as ranges of the caller's buffer.

/// Why bytes are not a well-formed Roughtime packet or message (RFC 10049 §4.2, §5).
public indirect enum RoughtimeMessageError: Error, Sendable, Hashable {
    /// Fewer bytes than the packet header (12) or the message's tag count (4) needs.
    case tooShort
    /// The packet does not start with "ROUGHTIM" (§5).
    case badMagic
    /// The packet's length field does not match the bytes that follow it (§5).
    case badLength
    /// A message whose length is not a multiple of four: every offset and so every value
    /// but the last is four-aligned (§4.2), and roughenough and cloudflare/roughtime refuse
    /// unaligned messages too.
    case misaligned
    /// A message with N = 0: messages hold one or more pairs (§4).
    case noTags
    /// N too large for the message: the 8·N-byte header alone would not fit (§4.2).
    case tooManyTags
    /// An offset that is not a multiple of four (§4.2).
    case offsetNotMultipleOfFour
    /// An offset smaller than the one before it: values are in tag order (§4.2).
    case offsetsOutOfOrder
    /// An offset past the end of the values section (§4.2).
    case offsetOutOfBounds
    /// Tags not in ascending order (§4.2).
    case tagsOutOfOrder
    /// A tag listed twice (§4.2: "A tag MUST NOT appear more than once").
    case repeatedTag
    /// A tag the message must carry is absent.
    case missingTag(RoughtimeTag)
    /// A tag whose value has the wrong length for its type.
    case badValueLength(RoughtimeTag)
    /// The message nested in this tag's value (SREP, CERT, DELE) is malformed, for this
    /// reason.
    case nested(RoughtimeTag, RoughtimeMessageError)
}

/// A validated Roughtime message (RFC 10049 §4): N tags in ascending order, N−1 aligned,
/// non-decreasing, in-bounds offsets, and the values they delimit.
///
/// A view: it reads the caller's bytes and copies nothing, so it is valid only while they are.
/// Validation happens once, in `init`, so the accessors index without further checks; values
/// come back as ranges of `bytes` or as buffers over them. Nested messages (SREP, CERT, DELE)
/// are validated when `message(_:)` opens them.
public struct RoughtimeMessage {
    /// The message's bytes, from its tag count to the end of its last value.
    public let bytes: UnsafeRawBufferPointer
    /// N, the number of (tag, value) pairs.
    public let count: Int

    /// Validates `bytes` as a bare message (§4.2): a nested value, or a packet's body.
    ///
    /// Checks, in order: at least the 4-byte count; a length that is a multiple of four; N ≥ 1
    /// and a header of 8·N bytes that fits; each offset a multiple of four, inside the values
    /// section and no smaller than the one before; tags strictly ascending. Linear in N, and N
    /// is bounded by the length, so a hostile count costs nothing.
    public init(validating bytes: UnsafeRawBufferPointer) throws(RoughtimeMessageError) {
        guard bytes.count >= 4 else { throw .tooShort }
        guard bytes.count % 4 == 0 else { throw .misaligned }
        let n = Int(RoughtimeWire.load32(bytes, 0))
        guard n > 0 else { throw .noTags }
        guard n <= bytes.count / 8 else { throw .tooManyTags }
        let valuesLength = bytes.count - 8 * n
        var previous = 0
        for i in 1..<n {
            let offset = Int(RoughtimeWire.load32(bytes, 4 * i))
            guard offset % 4 == 0 else { throw .offsetNotMultipleOfFour }
            guard offset <= valuesLength else { throw .offsetOutOfBounds }
            guard offset >= previous else { throw .offsetsOutOfOrder }
            previous = offset
        }
        var last = RoughtimeWire.load32(bytes, 4 * n)
        for i in 1..<n {
            let tag = RoughtimeWire.load32(bytes, 4 * n + 4 * i)
            guard tag != last else { throw .repeatedTag }
            guard tag > last else { throw .tagsOutOfOrder }
            last = tag
        }
        self.bytes = bytes
        self.count = n
    }

    /// Validates a whole packet (§5): the "ROUGHTIM" magic, a length field equal to the bytes
    /// that follow it (a UDP datagram holds exactly one packet), then the message.
    ///
    /// The view covers the message only, so its ranges start after the 12-byte header: add
    /// `RoughtimeWire.packetHeaderLength` for an offset in the packet.
    public init(packet: UnsafeRawBufferPointer) throws(RoughtimeMessageError) {
        guard packet.count >= RoughtimeWire.packetHeaderLength else { throw .tooShort }
        guard RoughtimeWire.load64(packet, 0) == RoughtimeWire.magic else { throw .badMagic }
        let length = Int(RoughtimeWire.load32(packet, 8))
        guard length == packet.count - RoughtimeWire.packetHeaderLength else { throw .badLength }
        try self.init(validating: UnsafeRawBufferPointer(rebasing: packet[RoughtimeWire.packetHeaderLength...]))
    }

    /// The tag of pair `index` (0..<count).
    public func tag(at index: Int) -> RoughtimeTag {
        precondition(index >= 0 && index < count, "tag index out of range")
        return RoughtimeTag(rawValue: RoughtimeWire.load32(bytes, 4 * count + 4 * index))
    }

    /// Where the value of pair `index` lies in `bytes`: from its offset to the next one, the
    /// last running to the end of the message (§4.2).
    public func valueRange(at index: Int) -> Range<Int> {
        precondition(index >= 0 && index < count, "value index out of range")
        let valuesStart = 8 * count
        let start = index == 0 ? 0 : Int(RoughtimeWire.load32(bytes, 4 * index))
        let end = index == count - 1 ? bytes.count - valuesStart : Int(RoughtimeWire.load32(bytes, 4 * (index + 1)))
        return (valuesStart + start)..<(valuesStart + end)
    }

    /// The index of `tag`, found by binary search (tags are sorted, §4.2), or nil.
    public func index(of tag: RoughtimeTag) -> Int? {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            let t = RoughtimeWire.load32(bytes, 4 * count + 4 * mid)
            if t == tag.rawValue { return mid }
            if t < tag.rawValue { low = mid + 1 } else { high = mid }
        }
        return nil
    }

    /// Where `tag`'s value lies in `bytes`, or nil if the message has no such tag.
    public func range(of tag: RoughtimeTag) -> Range<Int>? {
        // Plain control flow rather than `map(valueRange(at:))`: an unoptimised build
        // allocates a context for the partially applied method, on every packet.
        guard let i = index(of: tag) else { return nil }
        return valueRange(at: i)
    }

    /// `tag`'s value, or nil if the message has no such tag.
    public func value(of tag: RoughtimeTag) -> UnsafeRawBufferPointer? {
        guard let range = range(of: tag) else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// `tag`'s value, which must be present and, when `length` is given, exactly that long.
    public func required(_ tag: RoughtimeTag, length: Int? = nil) throws(RoughtimeMessageError) -> UnsafeRawBufferPointer {
        guard let value = value(of: tag) else { throw .missingTag(tag) }
        if let length, value.count != length { throw .badValueLength(tag) }
        return value
    }

    /// `tag`'s value as a uint32 (§4.1.1): present and exactly four bytes.
    public func uint32(_ tag: RoughtimeTag) throws(RoughtimeMessageError) -> UInt32 {
        RoughtimeWire.load32(try required(tag, length: 4), 0)
    }

    /// `tag`'s value as a uint64 (§4.1.2): present and exactly eight bytes.
    public func uint64(_ tag: RoughtimeTag) throws(RoughtimeMessageError) -> UInt64 {
        RoughtimeWire.load64(try required(tag, length: 8), 0)
    }

    /// The message nested in `tag`'s value (SREP, CERT and DELE are messages, §5.2.5,
    /// §5.2.6), validated; a malformed one throws `.nested(tag, reason)`.
    public func message(_ tag: RoughtimeTag) throws(RoughtimeMessageError) -> RoughtimeMessage {
        let value = try required(tag)
        do throws(RoughtimeMessageError) {
            return try RoughtimeMessage(validating: value)
        } catch {
            throw .nested(tag, error)
        }
    }
}
