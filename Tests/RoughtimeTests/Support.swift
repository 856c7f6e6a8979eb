import Foundation
import TockCrypto
import TockProtocol

/// The published vectors, kept beside these tests in `Vectors/` (its README names each file's
/// source and licence) and found from this file's path, so a clone of the repository alone runs
/// them with `swift test`.
let vectorsDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().appendingPathComponent("Vectors")

/// The bytes of vector file `name`.
func vectorBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: vectorsDirectory.appendingPathComponent(name)))
}

/// Bytes from hex; traps on a typo in a vector.
func hex(_ string: String) -> [UInt8] {
    let digits = Array(string.utf8)
    precondition(digits.count % 2 == 0, "odd-length hex")
    return stride(from: 0, to: digits.count, by: 2).map { i in
        UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16)!
    }
}

/// Bytes from base64; traps on a typo in a vector.
func base64(_ string: String) -> [UInt8] {
    [UInt8](Data(base64Encoded: string)!)
}

/// Lower-case hex, for readable failures.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// appb.json: RFC 10049 Appendix B's malfeasance report.
struct MalfeasanceReport: Decodable {
    /// One exchange of the report.
    struct Exchange: Decodable {
        let publicKey: String
        let rand: String?
        let request: String
        let response: String
    }
    let responses: [Exchange]
}

/// cloudflare/roughtime's seeded vectors.
struct CloudflareVector: Decodable {
    let info: String
    let root_key: String
    let online_key: String
    let request: [String]
    let replies: [String]
}

/// Decodes vector file `name` as JSON.
func vectorJSON<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: vectorsDirectory.appendingPathComponent(name)))
}

/// roughenough's long-term public key for its rfc-request/rfc-response vectors (vectors README).
let roughenoughLongTermKey = base64("AW5uAoTSTDfG5NfY1bTh08GUnOqlRb+HVhbJ3ODJvsE=")

/// Verifies `reply` to `request` with the real crypto.
func verify(request: [UInt8], reply: [UInt8], key: [UInt8]) throws(RoughtimeVerificationError) -> RoughtimeVerifiedTime {
    var hasher = RoughtimeSHA512()
    return try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: key, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
}

/// The server's decision on `packet`.
func decide(_ policy: RoughtimeRequestPolicy, _ packet: [UInt8]) -> RoughtimeRequestDecision {
    packet.withUnsafeBytes { policy.decide($0) }
}

/// A random 32-byte nonce.
func randomNonce() -> [UInt8] {
    (0..<32).map { _ in UInt8.random(in: 0...255) }
}

/// A server's keys and certificate for the round-trip tests.
struct TestServerKeys {
    /// The long-term key, which signed the certificate.
    var longTerm: RoughtimeEd25519Signer
    /// The online key, which signs SREP.
    var online: RoughtimeEd25519Signer
    /// The certificate delegating `minimumTime`…`maximumTime` to the online key.
    let certificate: RoughtimeCertificate
    /// H(0xff ‖ long-term key).
    let srv: [UInt8]

    init(minimumTime: UInt64 = 1_700_000_000, maximumTime: UInt64 = 1_900_000_000, dialect: RoughtimeDialect = .rfc) {
        var longTerm = RoughtimeEd25519Signer()
        let online = RoughtimeEd25519Signer()
        certificate = try! RoughtimeCertificate(onlinePublicKey: online.publicKey, minimumTime: minimumTime, maximumTime: maximumTime,
                                                dialect: dialect, longTermSigner: &longTerm)
        self.longTerm = longTerm
        self.online = online
        var hasher = RoughtimeSHA512()
        srv = hasher.srv(forLongTermKey: longTerm.publicKey)
    }
}

/// Writes the reply for each ticket and returns them as arrays.
func writeReplies(_ server: RoughtimeServer, _ tickets: [RoughtimeReplyTicket]) -> [[UInt8]] {
    tickets.map { ticket in
        var out = [UInt8](repeating: 0, count: 1024)
        let n = out.withUnsafeMutableBytes { server.writeReply(ticket, into: $0) }
        return Array(out[0..<n])
    }
}
