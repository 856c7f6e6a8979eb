import CNettle
import CTockEd25519
import Crypto
import Foundation
import TockProtocol

/// Roughtime's H (RFC 10049 §5.3): SHA-512 truncated to 32 bytes, over nettle.
///
/// nettle's context is a plain C struct, here on the stack, and nettle writes a truncated
/// digest straight into the caller's buffer, so a hash allocates nothing (swift-crypto's
/// `SHA512` keeps its state in a heap object, one allocation per hash).
package struct RoughtimeSHA512: RoughtimeHasher {
    /// A hasher; it holds no state between calls.
    package init() {}

    /// Writes the first 32 bytes of SHA-512(`first` ‖ `second` ‖ `third`) into `output`.
    package mutating func hash(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count >= RoughtimeWire.hashLength, "hash output shorter than 32 bytes")
        var context = sha512_ctx()
        nettle_sha512_init(&context)
        if !first.isEmpty { nettle_sha512_update(&context, first.count, first.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        if !second.isEmpty { nettle_sha512_update(&context, second.count, second.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        if !third.isEmpty { nettle_sha512_update(&context, third.count, third.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        nettle_sha512_digest(&context, RoughtimeWire.hashLength, output.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }
}

/// An Ed25519 key (RFC 8032) signing for Roughtime: the long-term key signing a certificate,
/// or the online key signing SREP once per batch.
///
/// swift-crypto makes the key and derives its public key; signing calls BoringSSL's
/// `ED25519_sign` (the copy swift-crypto links) with the caller's buffers, because
/// swift-crypto's `signature(for:)` returns a new `Data` and so allocates per batch. Ed25519 is
/// deterministic (RFC 8032 §5.1.6): a key from a known seed makes the same signatures as any
/// other RFC 8032 signer, which is how the tests reproduce cloudflare/roughtime's replies byte
/// for byte.
package struct RoughtimeEd25519Signer: RoughtimeSigner {
    /// The 32-byte public key.
    package let publicKey: [UInt8]
    /// The seed followed by the public key: the private key as BoringSSL takes it.
    private let privateKey: [UInt8]

    /// Why a key could not be made.
    package enum KeyError: Error, Sendable, Hashable {
        /// The seed is not 32 bytes.
        case badSeed
    }

    /// A fresh random key.
    package init() {
        let key = Curve25519.Signing.PrivateKey()
        publicKey = Array(key.publicKey.rawRepresentation)
        privateKey = Array(key.rawRepresentation) + publicKey
    }

    /// The key whose RFC 8032 private key (seed) is these 32 bytes.
    package init(seed: [UInt8]) throws(KeyError) {
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed) else { throw .badSeed }
        publicKey = Array(key.publicKey.rawRepresentation)
        privateKey = seed + publicKey
    }

    /// The 32-byte seed, for storing the key.
    package var seed: [UInt8] { Array(privateKey[0..<32]) }

    /// Signs `message` and writes the 64-byte signature into `signature`; allocates nothing.
    package mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool {
        guard signature.count >= RoughtimeWire.signatureLength else { return false }
        let out = signature.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let bytes = message.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) }
        return privateKey.withUnsafeBufferPointer { key in
            tock_ed25519_sign(out, bytes, message.count, key.baseAddress!) == 1
        }
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
