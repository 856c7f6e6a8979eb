/// Writing Roughtime messages (RFC 10049 §4.2) into caller buffers, and an allocating encoder
/// for clients and tests.

/// Writes one message into a caller's buffer, tag by tag, without allocating.
///
/// The tag count is fixed up front, so the header's size (8·N bytes) is known and each value
/// is written straight to its final place. Tags must come in ascending order and values be
/// multiples of four bytes long (§4.2); breaking either is a programming error and traps. A
/// value can be reserved and filled later (a signature computed after the rest, a nested
/// message written with a second writer over the reserved range).
public struct RoughtimeMessageWriter {
    /// The buffer the message is written into, from its first byte.
    public let buffer: UnsafeMutableRawBufferPointer
    /// N, the number of tags the message will have.
    public let tagCount: Int
    /// How many tags have been written so far.
    public private(set) var written = 0
    /// Bytes of values written so far.
    private var valuesLength = 0
    /// The last tag written, which the next must exceed.
    private var lastTag: UInt32 = 0

    /// The header's length for `tagCount` tags: the count, N−1 offsets and N tags (§4.2).
    public static func headerLength(tagCount: Int) -> Int { 8 * tagCount }

    /// The length of a message with values of these lengths.
    public static func messageLength(valueLengths: some Collection<Int>) -> Int {
        headerLength(tagCount: valueLengths.count) + valueLengths.reduce(0, +)
    }

    /// Starts a message of `tagCount` tags at the start of `buffer`.
    public init(into buffer: UnsafeMutableRawBufferPointer, tagCount: Int) {
        precondition(tagCount >= 1, "a message holds at least one tag")
        precondition(buffer.count >= Self.headerLength(tagCount: tagCount), "buffer shorter than the header")
        self.buffer = buffer
        self.tagCount = tagCount
        RoughtimeWire.store32(buffer, 0, UInt32(tagCount))
    }

    /// Adds `tag` with a value of `length` bytes left for the caller to fill; returns where
    /// the value lies in `buffer`.
    @discardableResult
    public mutating func reserve(_ tag: RoughtimeTag, length: Int) -> Range<Int> {
        precondition(written < tagCount, "more tags than the header declared")
        precondition(written == 0 || tag.rawValue > lastTag, "tags must be written in ascending order")
        precondition(length >= 0 && length % 4 == 0, "values are multiples of four bytes")
        if written > 0 { RoughtimeWire.store32(buffer, 4 * written, UInt32(valuesLength)) }
        RoughtimeWire.store32(buffer, 4 * tagCount + 4 * written, tag.rawValue)
        let start = Self.headerLength(tagCount: tagCount) + valuesLength
        precondition(start + length <= buffer.count, "buffer too short for the message")
        valuesLength += length
        written += 1
        lastTag = tag.rawValue
        return start..<(start + length)
    }

    /// Adds `tag` with a copy of `value`; returns where it lies in `buffer`.
    @discardableResult
    public mutating func append(_ tag: RoughtimeTag, bytes value: UnsafeRawBufferPointer) -> Range<Int> {
        let range = reserve(tag, length: value.count)
        if !value.isEmpty { UnsafeMutableRawBufferPointer(rebasing: buffer[range]).copyMemory(from: value) }
        return range
    }

    /// Adds `tag` with a uint32 value (§4.1.1); returns where it lies in `buffer`.
    @discardableResult
    public mutating func append(_ tag: RoughtimeTag, uint32 value: UInt32) -> Range<Int> {
        let range = reserve(tag, length: 4)
        RoughtimeWire.store32(buffer, range.lowerBound, value)
        return range
    }

    /// Adds `tag` with a uint64 value (§4.1.2); returns where it lies in `buffer`.
    @discardableResult
    public mutating func append(_ tag: RoughtimeTag, uint64 value: UInt64) -> Range<Int> {
        let range = reserve(tag, length: 8)
        RoughtimeWire.store64(buffer, range.lowerBound, value)
        return range
    }

    /// The message's length, once all `tagCount` tags are written.
    public var length: Int {
        precondition(written == tagCount, "fewer tags written than the header declared")
        return Self.headerLength(tagCount: tagCount) + valuesLength
    }
}

/// Builds messages and packets as arrays: for clients, certificates and tests, not for the
/// per-packet path.
public enum RoughtimeEncoder {
    /// A message holding `fields`, sorted by tag as §4.2 requires. Values must be multiples of
    /// four bytes long; `fields` must not be empty.
    public static func message(_ fields: [RoughtimeTag: [UInt8]]) -> [UInt8] {
        let sorted = fields.sorted { $0.key < $1.key }
        let length = RoughtimeMessageWriter.messageLength(valueLengths: sorted.map { $0.value.count })
        var out = [UInt8](repeating: 0, count: length)
        out.withUnsafeMutableBytes { buffer in
            var writer = RoughtimeMessageWriter(into: buffer, tagCount: sorted.count)
            for (tag, value) in sorted {
                value.withUnsafeBytes { _ = writer.append(tag, bytes: $0) }
            }
            precondition(writer.length == length)
        }
        return out
    }

    /// `message` behind the packet header: "ROUGHTIM" and its length (§5).
    public static func packet(message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: RoughtimeWire.packetHeaderLength)
        out.withUnsafeMutableBytes { RoughtimeWire.writePacketHeader(into: $0, messageLength: message.count) }
        return out + message
    }

    /// A packet holding `fields`.
    public static func packet(_ fields: [RoughtimeTag: [UInt8]]) -> [UInt8] {
        packet(message: message(fields))
    }

    /// A uint32 as its four little-endian bytes (§4.1.1).
    public static func bytes(_ value: UInt32) -> [UInt8] {
        (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * UInt32($0))) }
    }

    /// A uint64 as its eight little-endian bytes (§4.1.2).
    public static func bytes(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    /// A list of versions as consecutive uint32s (§5.1.1).
    public static func bytes(_ versions: [RoughtimeVersion]) -> [UInt8] {
        versions.flatMap { bytes($0.rawValue) }
    }
}
