import Crypto
import Foundation
import TockProtocol

/// Roughtime's H (RFC 10049 §5.3): SHA-512 truncated to 32 bytes, over swift-crypto.
///
/// swift-crypto's `SHA512` keeps its state in a small heap object, so each hash allocates
/// once; the digest is copied straight into the caller's buffer.
package struct RoughtimeSHA512: RoughtimeHasher {
    /// A hasher; it holds no state between calls.
    package init() {}

    /// Writes the first 32 bytes of SHA-512(`first` ‖ `second` ‖ `third`) into `output`.
    package mutating func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= RoughtimeWire.hashLength, "hash output shorter than 32 bytes")
        var sha = SHA512()
        if !first.isEmpty { sha.update(bufferPointer: first) }
        if !second.isEmpty { sha.update(bufferPointer: second) }
        if !third.isEmpty { sha.update(bufferPointer: third) }
        let digest = sha.finalize()
        digest.withUnsafeBytes {
            UnsafeMutableRawBufferPointer(rebasing: output[0..<RoughtimeWire.hashLength])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<RoughtimeWire.hashLength]))
        }
    }
}

/// An Ed25519 key (RFC 8032) signing for Roughtime, over swift-crypto's `Curve25519.Signing`:
/// the long-term key signing a certificate, or the online key signing SREP once per batch.
///
/// On Linux swift-crypto signs with BoringSSL, whose Ed25519 is deterministic (RFC 8032
/// §5.1.6): a key from a known seed makes the same signatures as any other RFC 8032 signer,
/// which is how the tests reproduce cloudflare/roughtime's replies byte for byte.
package struct RoughtimeEd25519Signer: RoughtimeSigner {
    /// The private key.
    private let key: Curve25519.Signing.PrivateKey
    /// The 32-byte public key.
    package let publicKey: [UInt8]

    /// Why a key could not be made.
    package enum KeyError: Error, Sendable, Hashable {
        /// The seed is not 32 bytes.
        case badSeed
    }

    /// A fresh random key.
    package init() {
        key = Curve25519.Signing.PrivateKey()
        publicKey = Array(key.publicKey.rawRepresentation)
    }

    /// The key whose RFC 8032 private key (seed) is these 32 bytes.
    package init(seed: [UInt8]) throws(KeyError) {
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { throw .badSeed }
        self.key = key
        publicKey = Array(key.publicKey.rawRepresentation)
    }

    /// The 32-byte seed, for storing the key.
    package var seed: [UInt8] { Array(key.rawRepresentation) }

    /// Signs `message` and writes the 64-byte signature into `signature`.
    package mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool {
        guard signature.count >= RoughtimeWire.signatureLength, let made = try? key.signature(for: message),
              made.count == RoughtimeWire.signatureLength else { return false }
        made.withUnsafeBytes { signature.copyMemory(from: $0) }
        return true
    }
}

/// Ed25519 verification (RFC 8032) for Roughtime clients, over swift-crypto.
package struct RoughtimeEd25519Verifier: RoughtimeSignatureVerifier {
    /// A verifier; it holds no state.
    package init() {}

    /// Whether `signature` is `publicKey`'s Ed25519 signature of `message`.
    package func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer, publicKey: UnsafeRawBufferPointer) -> Bool {
        guard signature.count == RoughtimeWire.signatureLength, publicKey.count == RoughtimeWire.publicKeyLength,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: message)
    }
}
