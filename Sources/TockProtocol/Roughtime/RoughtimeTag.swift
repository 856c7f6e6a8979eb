/// Roughtime's names and numbers: tags, versions, context strings and wire constants.
///
/// Section numbers in this folder are those of draft-ietf-ntp-roughtime-19, the text published
/// as RFC 10049.

/// A Roughtime tag: one to four capital ASCII letters padded with zero bytes, read as a
/// little-endian uint32 (RFC 10049 §4.1.3).
///
/// The uint32 value is also the sort order: a message lists its tags in ascending numeric
/// order (§4.2), which is why `VER` (0x00524556) sorts before `NONC` (0x434e4f4e).
public struct RoughtimeTag: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The tag as the uint32 it is sorted and registered by (§4.1.3).
    public var rawValue: UInt32

    /// The tag whose uint32 value is `rawValue`.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Orders tags as a message header must list them: by uint32 value (§4.2).
    public static func < (lhs: RoughtimeTag, rhs: RoughtimeTag) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// The tag's ASCII spelling, zero padding dropped; other bytes as `\xNN`.
    public var description: String {
        var text = ""
        var bytes = [UInt8](repeating: 0, count: 4)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: rawValue >> (8 * UInt32(i))) }
        while let last = bytes.last, last == 0 { bytes.removeLast() }
        for b in bytes {
            if b >= 0x20, b < 0x7F {
                text.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                text += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
            }
        }
        return text
    }

    /// Versions a request offers, or the version a response uses (§5.1.1, §5.2.5).
    public static let VER = RoughtimeTag(rawValue: 0x0052_4556)
    /// The client's 32-byte nonce, echoed in the response (§5.1.2, §5.2.2).
    public static let NONC = RoughtimeTag(rawValue: 0x434E_4F4E)
    /// 0 in a request, 1 in a response (§5.1.3, §5.2.3).
    public static let TYPE = RoughtimeTag(rawValue: 0x4550_5954)
    /// Which long-term key the client expects: H(0xff ‖ public key) (§5.1.4).
    public static let SRV = RoughtimeTag(rawValue: 0x0056_5253)
    /// Zero padding that brings a request to 1024 bytes (§5.1.5).
    public static let ZZZZ = RoughtimeTag(rawValue: 0x5A5A_5A5A)
    /// An Ed25519 signature over a context string and a value (§5.2.1).
    public static let SIG = RoughtimeTag(rawValue: 0x0047_4953)
    /// The Merkle tree siblings from a request's leaf up to the root (§5.2.4).
    public static let PATH = RoughtimeTag(rawValue: 0x4854_4150)
    /// The signed response: VER, RADI, MIDP, VERS, ROOT (§5.2.5).
    public static let SREP = RoughtimeTag(rawValue: 0x5045_5253)
    /// The radius of uncertainty around MIDP, in seconds (§5.2.5).
    public static let RADI = RoughtimeTag(rawValue: 0x4944_4152)
    /// The midpoint: the time of processing, in seconds since the Unix epoch (§5.2.5).
    public static let MIDP = RoughtimeTag(rawValue: 0x5044_494D)
    /// The versions the server supports, ascending (§5.2.5).
    public static let VERS = RoughtimeTag(rawValue: 0x5352_4556)
    /// The Merkle tree's root (§5.2.5, §5.3).
    public static let ROOT = RoughtimeTag(rawValue: 0x544F_4F52)
    /// The certificate: SIG and DELE, signed by the long-term key (§5.2.6).
    public static let CERT = RoughtimeTag(rawValue: 0x5452_4543)
    /// The delegation: PUBK, MINT, MAXT (§5.2.6).
    public static let DELE = RoughtimeTag(rawValue: 0x454C_4544)
    /// The online (delegated) Ed25519 public key that signs SREP (§5.2.6).
    public static let PUBK = RoughtimeTag(rawValue: 0x4B42_5550)
    /// The earliest MIDP the online key may sign (§5.2.6).
    public static let MINT = RoughtimeTag(rawValue: 0x544E_494D)
    /// The latest MIDP the online key may sign (§5.2.6).
    public static let MAXT = RoughtimeTag(rawValue: 0x5458_414D)
    /// The request's leaf index in the Merkle tree (§5.2.7).
    public static let INDX = RoughtimeTag(rawValue: 0x5844_4E49)
    /// The padding tag of Google's Roughtime and early drafts ("PAD\xff"); recognised only.
    public static let PAD = RoughtimeTag(rawValue: 0xFF44_4150)
}

/// How a family of versions lays out replies and what it hashes and signs.
///
/// Versions 1 and 0x8000000c share one layout (RFC 10049 §5.2); drafts 08 and 11, as
/// cloudflare/roughtime implements them (and as its published vectors show), differ in four
/// ways, all handled where the layout is written or checked.
public enum RoughtimeDialect: Sendable, Hashable {
    /// RFC 10049 and drafts 12–19 (version 0x8000000c): the response carries TYPE, VER and
    /// VERS live inside SREP, a Merkle leaf is H(0x00 ‖ the whole request packet) (§5.3), and
    /// the delegation context is "RoughTime v1 delegation signature\0" (§5.2.6).
    case rfc
    /// Drafts 08 and 11 as cloudflare/roughtime implements them: VER at the top level of the
    /// response, no TYPE, SREP holds only RADI, MIDP and ROOT, a Merkle leaf is
    /// H(0x00 ‖ nonce), and the delegation context ends "--\0".
    case draft11

    /// The context string the long-term key signs DELE under, zero byte included.
    public var delegationContext: [UInt8] {
        switch self {
        case .rfc: return RoughtimeContext.delegation
        case .draft11: return RoughtimeContext.delegationDraft11
        }
    }

    /// The context string the online key signs SREP under, zero byte included; the same in
    /// both dialects.
    public var responseContext: [UInt8] { RoughtimeContext.response }

    /// Whether `signature` over DELE (`delegation`) verifies under `longTermPublicKey` with this
    /// dialect's delegation context (§5.2.6): the one check of a CERT, for a client reading a
    /// reply (§5.4) and a server loading a delegation it did not sign itself.
    public func isDelegationSigned<Verifier: RoughtimeSignatureVerifier>(
        signature: UnsafeRawBufferPointer, delegation: UnsafeRawBufferPointer, by longTermPublicKey: [UInt8], verifier: Verifier
    ) -> Bool {
        let signed = delegationContext + Array(delegation)
        return signed.withUnsafeBytes { m in
            longTermPublicKey.withUnsafeBytes { verifier.isValidSignature(signature, for: m, publicKey: $0) }
        }
    }
}

/// The signature context strings: each signature covers a context string, its terminating zero
/// byte included, followed by the signed value (RFC 10049 §5.2.1), so a signature made for one
/// purpose can never be replayed for another.
public enum RoughtimeContext {
    /// "RoughTime v1 response signature\0": the online key's signature over SREP (§5.2.1).
    public static let response: [UInt8] = Array("RoughTime v1 response signature\u{0}".utf8)
    /// "RoughTime v1 delegation signature\0": the long-term key's signature over DELE (§5.2.6).
    public static let delegation: [UInt8] = Array("RoughTime v1 delegation signature\u{0}".utf8)
    /// "RoughTime v1 delegation signature--\0": the delegation context of Google's Roughtime,
    /// kept by cloudflare/roughtime for drafts 08 and 11.
    public static let delegationDraft11: [UInt8] = Array("RoughTime v1 delegation signature--\u{0}".utf8)
}

/// A Roughtime version number (RFC 10049 §5, §12.2).
///
/// The RFC is version 1. Drafts used numbers from the experimental range 0x80000000–0xbfffffff
/// (§12.2); drafts 12 to 19 all used 0x8000000c, which deployed servers still answer.
public struct RoughtimeVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The version number as it is on the wire.
    public var rawValue: UInt32

    /// The version numbered `rawValue`.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// Orders versions numerically, the order a VER list in a request and VERS use (§5.1.1).
    public static func < (lhs: RoughtimeVersion, rhs: RoughtimeVersion) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// RFC 10049, Roughtime version 1.
    public static let rfc = RoughtimeVersion(rawValue: 1)
    /// 0x8000000c, the test number of drafts 12 to 19: the RFC's format under a draft number.
    public static let draft12 = RoughtimeVersion(rawValue: 0x8000_000C)
    /// 0x8000000b, draft 11 as cloudflare/roughtime implements it.
    public static let draft11 = RoughtimeVersion(rawValue: 0x8000_000B)
    /// 0x80000008, draft 08 as cloudflare/roughtime implements it.
    public static let draft08 = RoughtimeVersion(rawValue: 0x8000_0008)

    /// The layout this version uses, or nil for a version this package does not know.
    public var dialect: RoughtimeDialect? {
        switch rawValue {
        case Self.rfc.rawValue, Self.draft12.rawValue: return .rfc
        case Self.draft11.rawValue, Self.draft08.rawValue: return .draft11
        default: return nil
        }
    }

    /// "1" for the RFC, hex for the experimental range.
    public var description: String {
        rawValue < 0x8000_0000 ? String(rawValue) : "0x" + String(rawValue, radix: 16)
    }
}

/// Sizes, limits and little-endian accessors of the Roughtime wire format (RFC 10049 §4, §5).
public enum RoughtimeWire {
    /// "ROUGHTIM" read as a little-endian uint64: the first field of every packet (§5).
    public static let magic: UInt64 = 0x4D49_5448_4755_4F52
    /// The packet header: the magic and the uint32 message length (§5).
    public static let packetHeaderLength = 12
    /// The smallest request a server answers: §5.1 makes answering shorter ones optional, and
    /// a reply is never longer than its request (§9.7). Counted over the whole packet, header
    /// included, as roughenough and cloudflare/roughtime count it.
    public static let minimumRequestLength = 1024
    /// Nonces, SRV values, Merkle nodes and ROOT: the first 32 bytes of SHA-512 (§5.1.2, §5.3).
    public static let hashLength = 32
    /// Ed25519 signatures (RFC 8032).
    public static let signatureLength = 64
    /// Ed25519 public keys (RFC 8032).
    public static let publicKeyLength = 32
    /// The most hashes a PATH may hold (§5.2.4).
    public static let maximumPathLength = 32
    /// The most version numbers a VER list or VERS may hold (§5.1.1, §5.2.5).
    public static let maximumVersions = 32

    /// Reads a little-endian uint32 at `offset` (§4.1.1).
    @inlinable @inline(__always)
    public static func load32(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Reads a little-endian uint64 at `offset` (§4.1.2).
    @inlinable @inline(__always)
    public static func load64(_ b: UnsafeRawBufferPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Writes a little-endian uint32 at `offset` (§4.1.1).
    @inlinable @inline(__always)
    public static func store32(_ b: UnsafeMutableRawBufferPointer, _ offset: Int, _ value: UInt32) {
        b.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }

    /// Writes a little-endian uint64 at `offset` (§4.1.2).
    @inlinable @inline(__always)
    public static func store64(_ b: UnsafeMutableRawBufferPointer, _ offset: Int, _ value: UInt64) {
        b.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
    }

    /// Writes the packet header (magic and message length, §5) into the first 12 bytes of
    /// `packet`, which must hold them.
    public static func writePacketHeader(into packet: UnsafeMutableRawBufferPointer, messageLength: Int) {
        precondition(packet.count >= packetHeaderLength, "packet buffer shorter than its header")
        store64(packet, 0, magic)
        store32(packet, 8, UInt32(messageLength))
    }

    /// Whether two buffers hold the same bytes; for nonces, SRV values and roots.
    public static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] { return false }
        return true
    }
}
