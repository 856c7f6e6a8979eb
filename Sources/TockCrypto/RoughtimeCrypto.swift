import CNettle
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
/// nettle's public Ed25519 (`ed25519_sha512_public_key`, `ed25519_sha512_sign`) does the work:
/// the public key is derived once, when the key is made (RFC 8032 §5.1.5), and each signature
/// (§5.1.6) is written straight into the caller's buffer, with nettle's scratch memory lent
/// from a per-thread buffer (`Ed25519Scratch`), so signing allocates nothing. Ed25519 is
/// deterministic (§5.1.6): a key from a known seed makes the same signatures as any other
/// RFC 8032 signer, which is how the tests reproduce cloudflare/roughtime's replies byte for
/// byte.
package struct RoughtimeEd25519Signer: RoughtimeSigner {
    /// The 32-byte public key.
    package let publicKey: [UInt8]
    /// The 32-byte seed, RFC 8032's private key (§5.1.5), as nettle takes it.
    package let seed: [UInt8]

    /// Why a key could not be made.
    package enum KeyError: Error, Sendable, Hashable {
        /// The seed is not 32 bytes.
        case badSeed
    }

    /// A fresh random key: 32 bytes from the system's cryptographically secure generator
    /// (getrandom on Linux), as RFC 8032 §5.1.5 asks of a private key.
    package init() {
        var generator = SystemRandomNumberGenerator()
        try! self.init(seed: (0..<Int(ED25519_KEY_SIZE)).map { _ in generator.next() })
    }

    /// The key whose RFC 8032 private key (seed) is these 32 bytes.
    package init(seed: [UInt8]) throws(KeyError) {
        guard seed.count == Int(ED25519_KEY_SIZE) else { throw .badSeed }
        Ed25519Scratch.install()
        var publicKey = [UInt8](repeating: 0, count: Int(ED25519_KEY_SIZE))
        publicKey.withUnsafeMutableBufferPointer { out in
            seed.withUnsafeBufferPointer { nettle_ed25519_sha512_public_key(out.baseAddress!, $0.baseAddress!) }
        }
        self.publicKey = publicKey
        self.seed = seed
    }

    /// Signs `message` and writes the 64-byte signature into `signature`; allocates nothing
    /// once this thread has signed before.
    package mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool {
        guard signature.count >= RoughtimeWire.signatureLength else { return false }
        let out = signature.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let bytes = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        publicKey.withUnsafeBufferPointer { publicKey in
            seed.withUnsafeBufferPointer { seed in
                Ed25519Scratch.withScratch {
                    nettle_ed25519_sha512_sign(publicKey.baseAddress!, seed.baseAddress!, message.count, bytes, out)
                }
            }
        }
        return true
    }
}

/// Ed25519 verification (RFC 8032 §5.1.7) for Roughtime clients, over nettle's public
/// `ed25519_sha512_verify`, with its scratch memory lent as for signing.
package struct RoughtimeEd25519Verifier: RoughtimeSignatureVerifier {
    /// A verifier; it holds no state.
    package init() {
        Ed25519Scratch.install()
    }

    /// Whether `signature` is `publicKey`'s Ed25519 signature of `message`.
    package func isValidSignature(_ signature: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer, publicKey: UnsafeRawBufferPointer) -> Bool {
        guard signature.count == RoughtimeWire.signatureLength, publicKey.count == RoughtimeWire.publicKeyLength else { return false }
        let key = publicKey.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let bytes = message.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let signed = signature.baseAddress!.assumingMemoryBound(to: UInt8.self)
        return Ed25519Scratch.withScratch { nettle_ed25519_sha512_verify(key, message.count, bytes, signed) == 1 }
    }
}
