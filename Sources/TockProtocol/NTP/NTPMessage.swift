/// Why an NTP datagram could not be decoded or validated.
///
/// The server's decision (`NTPServer.handle`) checks length and version itself and counts
/// every trailer error as `DropReason.malformed`; these cases say more, for clients and tests.
public enum NTPParseError: Error, Sendable, Hashable {
    /// Shorter than the 48-byte header.
    case tooShort(Int)
    /// Version 0 or 5...7.
    case unsupportedVersion(UInt8)
    /// What follows the header is neither well-formed extension fields (RFC 7822) nor a MAC.
    case malformedExtensionField(offset: Int)
    /// Extra bytes after the header of an NTPv1–v3 packet that are not a MAC.
    case trailingGarbage(Int)
}

/// What follows the 48-byte header: extension fields (RFC 7822) and an optional legacy MAC
/// (RFC 5905 §7.3).
public struct NTPTrailer: Sendable, Hashable {
    /// The number of extension fields.
    public var extensionFieldCount: Int
    /// The length of the MAC (key ID plus digest): 0 when absent, 20 for MD5, 24 for SHA-1.
    public var macLength: Int

    /// Validates the bytes after the header without copying them.
    ///
    /// RFC 7822 §7.5: an extension field is a 16-bit type, a 16-bit length that counts the whole
    /// field, is a multiple of 4 and at least 16, and must not run past the datagram. A
    /// remainder of exactly 20 or 24 bytes is a MAC, never an extension field (an extension
    /// field that ends a packet without a MAC must be at least 28 bytes, so the two can be told
    /// apart). Versions before 4 have no extension fields: only a MAC may follow.
    public init(validating bytes: UnsafeRawBufferPointer, version: UInt8) throws(NTPParseError) {
        var offset = NTPPacket.headerLength
        var fields = 0
        let end = bytes.count
        while offset < end {
            let remaining = end - offset
            if remaining == 20 || remaining == 24 {
                self.extensionFieldCount = fields
                self.macLength = remaining
                return
            }
            guard version == 4 else { throw .trailingGarbage(remaining) }
            guard remaining >= 16 else { throw .malformedExtensionField(offset: offset) }
            let length = Int(NTPWire.load16(bytes, offset + 2))
            guard length >= 16, length % 4 == 0, length <= remaining else {
                throw .malformedExtensionField(offset: offset)
            }
            fields += 1
            offset += length
        }
        self.extensionFieldCount = fields
        self.macLength = 0
    }
}
