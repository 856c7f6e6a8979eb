/// Roughtime over TCP (RFC 10049 §5): where a packet ends in a byte stream, decided from the
/// bytes read so far, with no I/O.
///
/// A stream carries the same packet a datagram does: "ROUGHTIM", the uint32 message length,
/// the message. Over UDP the datagram's end is the packet's end; over TCP only the length field
/// says where it ends, so a reader must decide from the header, before the rest arrives,
/// whether the packet is worth reading at all.

/// What the bytes at the start of a Roughtime stream say about the packet they begin.
public enum RoughtimeFrameDecision: Sendable, Hashable {
    /// No decision yet: read until at least `count` bytes are buffered, then ask again.
    case needMore(Int)
    /// The first `length` bytes are one whole packet, to be read as a datagram would be.
    case complete(length: Int)
    /// No acceptable packet can come from these bytes: stop reading, send nothing, and count
    /// `reason`. Bad magic is caught at the first wrong byte, a bad length at the header.
    case reject(RoughtimeDropReason)
}

/// Finding packets in a Roughtime byte stream (RFC 10049 §5).
public enum RoughtimeStream {
    /// The longest packet a server reads from a stream: the datagram engine's receive buffer,
    /// so a request is accepted over TCP exactly when it would be over UDP. Requests are 1024
    /// bytes in practice (§5.1); a length field beyond this is refused from the header alone,
    /// before any of it is read.
    public static let maximumRequestLength = 2048

    /// Decides on `buffered`, the bytes received so far from the start of a packet.
    ///
    /// In order: the bytes present must match "ROUGHTIM" (§5); with the 12-byte header in,
    /// the whole packet, header included, must be no longer than `maximumLength` (else
    /// `.tooLong`) and no shorter than `minimumLength` (else `.tooShort`: a server passes
    /// 1024, as §5.1 lets it ignore shorter requests and §9.7 forbids a reply longer than the
    /// request; a client reading a reply passes the header length). Only then is the rest
    /// awaited. Allocates nothing; a caller that feeds one byte at a time gets the same
    /// decision as one that feeds everything at once.
    public static func frame(_ buffered: UnsafeRawBufferPointer, minimumLength: Int, maximumLength: Int) -> RoughtimeFrameDecision {
        let header = RoughtimeWire.packetHeaderLength
        for i in 0..<min(buffered.count, 8) where buffered[i] != UInt8(truncatingIfNeeded: RoughtimeWire.magic >> (8 * UInt64(i))) {
            return .reject(.framing(.badMagic))
        }
        guard buffered.count >= header else { return .needMore(header) }
        let length = header + Int(RoughtimeWire.load32(buffered, 8))
        guard length <= maximumLength else { return .reject(.tooLong) }
        guard length >= max(minimumLength, header) else { return .reject(.tooShort) }
        guard buffered.count >= length else { return .needMore(length) }
        return .complete(length: length)
    }

    /// `frame` as a server reads requests: at least 1024 bytes (§5.1), at most
    /// `maximumRequestLength`.
    public static func requestFrame(_ buffered: UnsafeRawBufferPointer) -> RoughtimeFrameDecision {
        frame(buffered, minimumLength: RoughtimeWire.minimumRequestLength, maximumLength: maximumRequestLength)
    }
}
