import Testing
import TockCrypto
import TockProtocol

/// CERT read back as a server that did not sign it reads an offline delegation (RFC 10049
/// §5.2.6): parsed, its signature checked under the long-term key, its window against a time.
@Suite struct CertificateTests {
    @Test("A certificate parses back to what was signed, and verifies under the long-term key only")
    func roundTrip() throws {
        let keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        let parsed = try RoughtimeCertificate(parsing: keys.certificate.bytes)
        #expect(parsed == keys.certificate)
        #expect(parsed.isSigned(by: keys.longTerm.publicKey, verifier: RoughtimeEd25519Verifier()))
        #expect(!parsed.isSigned(by: keys.online.publicKey, verifier: RoughtimeEd25519Verifier()))
        // Read as draft 11, the context differs, so the signature does not verify.
        let draft = try RoughtimeCertificate(parsing: keys.certificate.bytes, dialect: .draft11)
        #expect(!draft.isSigned(by: keys.longTerm.publicKey, verifier: RoughtimeEd25519Verifier()))
    }

    @Test("Any flipped bit of SIG or DELE breaks the signature")
    func tampered() throws {
        let keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        let bytes = keys.certificate.bytes
        // The header is 4 + 4 + 8 bytes (N, one offset, two tags); SIG and DELE follow.
        for i in stride(from: 16, to: bytes.count, by: 7) {
            var bad = bytes
            bad[i] ^= 0x01
            guard let parsed = try? RoughtimeCertificate(parsing: bad) else { continue }
            #expect(!parsed.isSigned(by: keys.longTerm.publicKey, verifier: RoughtimeEd25519Verifier()), "byte \(i)")
        }
    }

    @Test("Malformed CERT values are refused with the reason")
    func malformed() {
        #expect(throws: RoughtimeMessageError.tooShort) { try RoughtimeCertificate(parsing: []) }
        let noDele = RoughtimeEncoder.message([.SIG: [UInt8](repeating: 0, count: 64)])
        #expect(throws: RoughtimeMessageError.missingTag(.DELE)) { try RoughtimeCertificate(parsing: noDele) }
        let shortKey = RoughtimeEncoder.message([
            .SIG: [UInt8](repeating: 0, count: 64),
            .DELE: RoughtimeEncoder.message([.PUBK: [UInt8](repeating: 1, count: 16), .MINT: RoughtimeEncoder.bytes(UInt64(1)), .MAXT: RoughtimeEncoder.bytes(UInt64(2))]),
        ])
        #expect(throws: RoughtimeMessageError.nested(.DELE, .badValueLength(.PUBK))) { try RoughtimeCertificate(parsing: shortKey) }
    }

    @Test("Status against MINT…MAXT: before, inside (edges included), after")
    func status() {
        let certificate = TestServerKeys(minimumTime: 1000, maximumTime: 2000).certificate
        #expect(certificate.status(atUnixSeconds: 990) == .notYetValid(startsInSeconds: 10))
        #expect(certificate.status(atUnixSeconds: 1000) == .valid(remainingSeconds: 1000))
        #expect(certificate.status(atUnixSeconds: 2000) == .valid(remainingSeconds: 0))
        #expect(certificate.status(atUnixSeconds: 2005) == .expired(secondsAgo: 5))
    }
}
