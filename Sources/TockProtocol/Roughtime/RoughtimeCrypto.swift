/// The cryptography Roughtime needs, as protocols the core calls: SHA-512 truncated to 32 bytes
/// (RFC 10049 §5.3) and Ed25519 (RFC 8032, §5.2.1). TockCrypto implements them over nettle
/// (SHA-512), BoringSSL (signing) and swift-crypto (keys, verification); the fuzz target uses
/// stand-ins.

/// SHA-512 truncated to its first 32 bytes, the H of RFC 10049 §5.3.
///
/// One primitive over up to three parts covers every use without the caller concatenating:
/// a leaf is H(0x00 ‖ request), a node H(0x01 ‖ left ‖ right), SRV H(0xff ‖ key) (§5.1.4) and a
/// chained nonce H(previous response ‖ rand) (§8.2). Implementations write into the caller's
/// buffer.
public protocol RoughtimeHasher {
    /// Writes the first 32 bytes of SHA-512(`first` ‖ `second` ‖ `third`) into `output`, which
    /// holds at least 32 bytes. Empty parts contribute nothing.
    mutating func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
}

/// Ed25519 signing (RFC 8032) with one key: the long-term key signs DELE, the online key signs
/// SREP once per batch (RFC 10049 §5.2.1, §5.2.6).
public protocol RoughtimeSigner {
    /// The key's 32-byte Ed25519 public key.
    var publicKey: [UInt8] { get }

    /// Signs `message` (a context string followed by the signed value) and writes the 64-byte
    /// signature into `signature`; false if the signature could not be made.
    mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool
}

/// Ed25519 verification (RFC 8032), for clients checking CERT and SREP (RFC 10049 §5.4).
public protocol RoughtimeSignatureVerifier {
    /// Whether `signature` is a valid Ed25519 signature of `message` under the 32-byte
    /// `publicKey`; false for keys or signatures of the wrong length.
    func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer, publicKey: UnsafeRawBufferPointer) -> Bool
}

/// The empty buffer, for unused hash parts.
var roughtimeNoBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

extension RoughtimeHasher {
    /// A Merkle leaf for `data`: H(0x00 ‖ data) (§5.3). `data` is the whole request packet in
    /// the RFC dialect and the nonce in cloudflare/roughtime's draft 11.
    public mutating func hashLeaf(_ data: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        withUnsafeBytes(of: UInt8(0x00)) { hash($0, data, roughtimeNoBytes, into: output) }
    }

    /// A Merkle node: H(0x01 ‖ left ‖ right) (§5.3).
    public mutating func hashNode(left: UnsafeRawBufferPointer, right: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        withUnsafeBytes(of: UInt8(0x01)) { hash($0, left, right, into: output) }
    }

    /// The SRV value naming a long-term key: H(0xff ‖ public key) (§5.1.4).
    public mutating func srv(forLongTermKey publicKey: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: RoughtimeWire.hashLength)
        publicKey.withUnsafeBytes { key in
            out.withUnsafeMutableBytes { o in
                withUnsafeBytes(of: UInt8(0xFF)) { hash($0, key, roughtimeNoBytes, into: o) }
            }
        }
        return out
    }

    /// The nonce of the next request in a measurement sequence: H(resp ‖ rand), where `resp` is
    /// the whole previous response, "ROUGHTIM" header included, and `rand` 32 random bytes
    /// (§8.2). It lets a third party check the order of the responses in a malfeasance report.
    public mutating func chainedNonce(previousResponse: [UInt8], random: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: RoughtimeWire.hashLength)
        previousResponse.withUnsafeBytes { p in
            random.withUnsafeBytes { r in
                out.withUnsafeMutableBytes { hash(p, r, roughtimeNoBytes, into: $0) }
            }
        }
        return out
    }
}
