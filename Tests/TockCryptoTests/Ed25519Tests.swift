import Foundation
import Testing

@testable import TockCrypto

/// One of RFC 8032's Ed25519 test vectors: the secret key (seed), the public key it gives,
/// the message, and its signature.
struct Ed25519Vector: Sendable, CustomTestStringConvertible {
    let name: String
    let secretKey: [UInt8]
    let publicKey: [UInt8]
    let message: [UInt8]
    let signature: [UInt8]

    var testDescription: String { name }
}

/// RFC 8032 §7.1 ("Test Vectors for Ed25519"), TEST 1, TEST 2 and TEST 3, copied from the RFC;
/// the hex lines are the RFC's, joined.
let rfc8032Vectors = [
    Ed25519Vector(
        name: "RFC 8032 §7.1 TEST 1 (empty message)",
        secretKey: hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        publicKey: hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
        message: [],
        signature: hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            + "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")),
    Ed25519Vector(
        name: "RFC 8032 §7.1 TEST 2 (one byte)",
        secretKey: hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        publicKey: hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
        message: hex("72"),
        signature: hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            + "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")),
    Ed25519Vector(
        name: "RFC 8032 §7.1 TEST 3 (two bytes)",
        secretKey: hex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
        publicKey: hex("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
        message: hex("af82"),
        signature: hex("6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
            + "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")),
]

/// Ed25519 over nettle, as Roughtime uses it: RFC 8032's answers, and the scratch memory that
/// keeps signing off the heap.
@Suite struct Ed25519Tests {
    /// The signature of `message` under `signer`.
    static func signature(_ signer: inout RoughtimeEd25519Signer, _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        let signed = message.withUnsafeBytes { message in
            out.withUnsafeMutableBytes { signer.sign(message, into: $0) }
        }
        #expect(signed)
        return out
    }

    /// Whether `signature` verifies for `message` under `publicKey`.
    static func verifies(_ signature: [UInt8], _ message: [UInt8], _ publicKey: [UInt8]) -> Bool {
        signature.withUnsafeBytes { signature in
            message.withUnsafeBytes { message in
                publicKey.withUnsafeBytes { RoughtimeEd25519Verifier().isValidSignature(signature, for: message, publicKey: $0) }
            }
        }
    }

    /// The seed gives the RFC's public key, and signing gives its signature byte for byte
    /// (Ed25519 is deterministic, RFC 8032 §5.1.6).
    @Test(arguments: rfc8032Vectors)
    func signsAsTheRFCDoes(_ vector: Ed25519Vector) throws {
        var signer = try RoughtimeEd25519Signer(seed: vector.secretKey)
        #expect(hexString(signer.publicKey) == hexString(vector.publicKey))
        #expect(signer.seed == vector.secretKey)
        #expect(hexString(Self.signature(&signer, vector.message)) == hexString(vector.signature))
    }

    /// The RFC's signature verifies under its public key (RFC 8032 §5.1.7).
    @Test(arguments: rfc8032Vectors)
    func verifiesTheRFCSignature(_ vector: Ed25519Vector) {
        #expect(Self.verifies(vector.signature, vector.message, vector.publicKey))
    }

    /// Flipping any one bit of the signature, of the message, or of the public key makes
    /// verification fail.
    @Test(arguments: rfc8032Vectors)
    func tamperedSignatureFails(_ vector: Ed25519Vector) {
        for byte in vector.signature.indices {
            for bit in [0, 7] {
                var tampered = vector.signature
                tampered[byte] ^= 1 << bit
                #expect(!Self.verifies(tampered, vector.message, vector.publicKey), "signature byte \(byte) bit \(bit)")
            }
        }
        var message = vector.message + [0]
        #expect(!Self.verifies(vector.signature, message, vector.publicKey), "message with a byte appended")
        if !vector.message.isEmpty {
            message = vector.message
            message[0] ^= 1
            #expect(!Self.verifies(vector.signature, message, vector.publicKey), "message byte 0 flipped")
        }
        var key = vector.publicKey
        key[0] ^= 1
        #expect(!Self.verifies(vector.signature, vector.message, key), "public key byte 0 flipped")
    }

    /// Signatures and keys of the wrong length are refused, not read past.
    @Test func wrongLengthsAreRefused() throws {
        let vector = rfc8032Vectors[1]
        #expect(!Self.verifies(Array(vector.signature.dropLast()), vector.message, vector.publicKey))
        #expect(!Self.verifies(vector.signature + [0], vector.message, vector.publicKey))
        #expect(!Self.verifies(vector.signature, vector.message, Array(vector.publicKey.dropLast())))
        #expect(throws: RoughtimeEd25519Signer.KeyError.badSeed) { try RoughtimeEd25519Signer(seed: Array(vector.secretKey.dropLast())) }
        var signer = try RoughtimeEd25519Signer(seed: vector.secretKey)
        var short = [UInt8](repeating: 0, count: 63)
        let signed = vector.message.withUnsafeBytes { message in short.withUnsafeMutableBytes { signer.sign(message, into: $0) } }
        #expect(!signed)
    }

    /// A fresh key signs what it verifies, and two fresh keys differ.
    @Test func randomKeysSignAndVerify() {
        var signer = RoughtimeEd25519Signer()
        let message = Array("a Roughtime SREP".utf8)
        #expect(Self.verifies(Self.signature(&signer, message), message, signer.publicKey))
        #expect(RoughtimeEd25519Signer().publicKey != signer.publicKey)
        #expect(RoughtimeEd25519Signer().seed != signer.seed)
    }

    /// nettle's working memory for each signature and verification comes from the thread's
    /// scratch buffer, never from malloc: the buffer is lent once per call, on a thread of its
    /// own so no other test's calls are counted.
    @Test func nettleWorksInTheScratchBuffer() async {
        let vector = rfc8032Vectors[2]
        let counts: (before: Int, afterSign: Int, afterVerify: Int, signature: [UInt8]) = await withCheckedContinuation { done in
            let thread = Thread {
                var signer = try! RoughtimeEd25519Signer(seed: vector.secretKey)
                let before = Ed25519Scratch.lentOnThisThread
                let signature = Self.signature(&signer, vector.message)
                let afterSign = Ed25519Scratch.lentOnThisThread
                _ = Self.verifies(signature, vector.message, vector.publicKey)
                done.resume(returning: (before, afterSign, Ed25519Scratch.lentOnThisThread, signature))
            }
            thread.start()
        }
        #expect(counts.before == 0)
        #expect(counts.afterSign == 1)
        #expect(counts.afterVerify == 2)
        #expect(counts.signature == vector.signature)
    }
}
