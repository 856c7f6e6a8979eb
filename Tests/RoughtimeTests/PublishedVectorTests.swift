import Foundation
import Testing
import TockCrypto
import TockProtocol

/// Bytes other implementations wrote (`Vectors/`, see its README): what they show is what
/// RFC 10049 means in practice.
@Suite struct PublishedVectorTests {
    // MARK: roughenough (version 0x8000000c)

    /// roughenough's 1024-byte request and its reply verify end to end: CERT under the
    /// published long-term key, SREP under DELE's key, an empty PATH whose root is the
    /// request's own leaf, the nonce echoed, version 0x8000000c offered and listed in VERS.
    @Test func roughenoughReplyVerifies() throws {
        let request = try vectorBytes("rfc-request.071039e5")
        let reply = try vectorBytes("rfc-response.071039e5")
        let time = try verify(request: request, reply: reply, key: roughenoughLongTermKey)
        #expect(time == RoughtimeVerifiedTime(midpoint: 0x682F_8402, radius: 5, version: .draft12))
    }

    /// The same reply fails each check when its request or key is not the one it answers.
    @Test func roughenoughReplyRejectsOtherRequestAndKey() throws {
        let request = try vectorBytes("rfc-request.071039e5")
        let reply = try vectorBytes("rfc-response.071039e5")
        let other = try vectorBytes("rfc-request.SRV.417aa962")
        #expect(throws: RoughtimeVerificationError.nonceMismatch) { try verify(request: other, reply: reply, key: roughenoughLongTermKey) }
        var key = roughenoughLongTermKey
        key[0] ^= 1
        #expect(throws: RoughtimeVerificationError.badDelegationSignature) { try verify(request: request, reply: reply, key: key) }
        // Same nonce, but one more byte of padding: the leaf, and so the Merkle proof, changes.
        let padded = RoughtimeRequestBuilder.packet(nonce: Array(request[48..<80]), versions: [.draft12], length: 1028)
        #expect(throws: RoughtimeVerificationError.merkleProofFailed) { try verify(request: padded, reply: reply, key: roughenoughLongTermKey) }
    }

    /// The 8-level reply parses (PATH of 8 hashes, INDX 2) and its SREP signature verifies
    /// under its DELE key. Its CERT does not verify under the key above, as the README says,
    /// and its request is not published, so the Merkle proof cannot be checked.
    @Test func roughenoughPath8ReplyParses() throws {
        let reply = try vectorBytes("rfc-response.path8.index2.4c16c619")
        try reply.withUnsafeBytes { bytes in
            let parsed = try RoughtimeReply(packet: bytes)
            #expect(parsed.version == .draft12)
            #expect(parsed.dialect == .rfc)
            #expect(parsed.type == 1)
            #expect(parsed.path.count == 8 * 32)
            #expect(parsed.index == 2)
            #expect(parsed.radius == 5)
            #expect(parsed.midpoint == 0x6835_D819)
            #expect(parsed.lists(.draft12))
            #expect(Array(parsed.nonce.prefix(4)) == [0x4C, 0x16, 0xC6, 0x19])
            #expect(parsed.isResponseSigned(verifier: RoughtimeEd25519Verifier()))
            #expect(!parsed.isDelegationSigned(by: roughenoughLongTermKey, verifier: RoughtimeEd25519Verifier()))
        }
    }

    /// A server holding roughenough's key answers its plain request in 0x8000000c, and
    /// ignores the SRV request, which names another key, unless it holds that key.
    @Test func roughenoughRequestsMeetThePolicy() throws {
        var hasher = RoughtimeSHA512()
        let policy = RoughtimeRequestPolicy(srv: hasher.srv(forLongTermKey: roughenoughLongTermKey))
        // Header 8·N bytes (N = 4), then VER's 4 bytes: NONC at 12 + 32 + 4.
        #expect(decide(policy, try vectorBytes("rfc-request.071039e5")) == .respond(.init(version: .draft12, nonceOffset: 12 + 32 + 4)))
        let srvRequest = try vectorBytes("rfc-request.SRV.417aa962")
        #expect(decide(policy, srvRequest) == .ignore(.unknownSRV))
        // N = 5: VER (4) and SRV (32) before NONC.
        let other = RoughtimeRequestPolicy(srv: Array(srvRequest[(12 + 40 + 4)..<(12 + 40 + 4 + 32)]))
        #expect(decide(other, srvRequest) == .respond(.init(version: .draft12, nonceOffset: 12 + 40 + 4 + 32)))
    }

    // MARK: RFC 10049 Appendix B (version 1)

    /// The three exchanges of the malfeasance report verify: each CERT under its server's
    /// key, each SREP under its DELE key, each request's leaf as ROOT (PATH empty), the
    /// nonces echoed, version 1 offered and listed.
    @Test func appendixBExchangesVerify() throws {
        let report = try vectorJSON("appb.json", as: MalfeasanceReport.self)
        #expect(report.responses.count == 3)
        for exchange in report.responses {
            let time = try verify(request: base64(exchange.request), reply: base64(exchange.response), key: base64(exchange.publicKey))
            #expect(time.version == .rfc)
            #expect(time.radius == 3)
        }
    }

    /// Each request's SRV is H(0xff ‖ its server's key) (§5.1.4), and a server holding that
    /// key would answer it in version 1.
    @Test func appendixBSRVValues() throws {
        let report = try vectorJSON("appb.json", as: MalfeasanceReport.self)
        for exchange in report.responses {
            let request = base64(exchange.request)
            var hasher = RoughtimeSHA512()
            let srv = hasher.srv(forLongTermKey: base64(exchange.publicKey))
            let sent = try request.withUnsafeBytes { Array(try RoughtimeMessage(packet: $0).required(.SRV, length: 32)) }
            #expect(sent == srv)
            guard case .respond(let accepted) = decide(RoughtimeRequestPolicy(srv: srv), request) else {
                Issue.record("appendix B request not accepted")
                continue
            }
            #expect(accepted.version == .rfc)
        }
    }

    /// The second and third nonces are H(previous response ‖ rand) over the whole previous
    /// packet, "ROUGHTIM" included (§8.2).
    @Test func appendixBChainedNonces() throws {
        let report = try vectorJSON("appb.json", as: MalfeasanceReport.self)
        for i in 1..<report.responses.count {
            var hasher = RoughtimeSHA512()
            let expected = hasher.chainedNonce(previousResponse: base64(report.responses[i - 1].response),
                                               random: base64(report.responses[i].rand!))
            let request = base64(report.responses[i].request)
            let nonce = try request.withUnsafeBytes { Array(try RoughtimeMessage(packet: $0).required(.NONC, length: 32)) }
            #expect(nonce == expected)
        }
    }

    /// The causal-order check of §8.2 finds the odd one out. The appendix's text names
    /// `lRhHag…` (the third server); the MIDP values put the first server, `FnDyLV…`, 86,400 s
    /// ahead of the other two, and it is the only one inconsistent with both others. This test
    /// follows the bytes, as the vectors' README says.
    @Test func appendixBMalfeasanceIsTheFirstServer() throws {
        let report = try vectorJSON("appb.json", as: MalfeasanceReport.self)
        let times = try report.responses.map { try verify(request: base64($0.request), reply: base64($0.response), key: base64($0.publicKey)) }
        #expect(times[0].midpoint - times[1].midpoint == 86_400)
        #expect(times[1].midpoint == times[2].midpoint)
        #expect(!times[0].isCausallyConsistent(before: times[1]))
        #expect(!times[0].isCausallyConsistent(before: times[2]))
        #expect(times[1].isCausallyConsistent(before: times[2]))
        #expect(report.responses[0].publicKey.hasPrefix("FnDyLV"))
    }

    // MARK: cloudflare/roughtime (drafts 08 and 11, seeded)

    /// From cloudflare's seeds, this server reproduces every reply of the batch byte for byte:
    /// the certificate (MINT 0, MAXT 100, "--" context), the Merkle tree over nonce leaves with
    /// cloudflare's padding, SREP {RADI 5, MIDP 50, ROOT} signed once, and each reply's NONC,
    /// PATH and INDX. Every reply also verifies with the client's checks.
    @Test(arguments: ["cf_draft11_010.json", "cf_draft08_100.json"])
    func cloudflareRepliesReproduced(file: String) throws {
        let vector = try vectorJSON(file, as: CloudflareVector.self)
        var root = try RoughtimeEd25519Signer(seed: hex(vector.root_key))
        var online = try RoughtimeEd25519Signer(seed: hex(vector.online_key))
        let requests = vector.request.map(hex)
        let expected = vector.replies.map(hex)
        #expect(requests.count == expected.count)

        let version = try expected[0].withUnsafeBytes { RoughtimeVersion(rawValue: try RoughtimeMessage(packet: $0).uint32(.VER)) }
        #expect(version == (file.contains("draft11") ? .draft11 : .draft08))
        let certificate = try RoughtimeCertificate(onlinePublicKey: online.publicKey, minimumTime: 0, maximumTime: 100,
                                                   dialect: .draft11, longTermSigner: &root)
        let publishedCertificate = try expected[0].withUnsafeBytes { Array(try RoughtimeMessage(packet: $0).required(.CERT)) }
        #expect(certificate.bytes == publishedCertificate)

        var depth = 0
        while 1 << depth < requests.count { depth += 1 }
        var batch = RoughtimeBatch(version: version, certificate: certificate, maximumDepth: depth)
        var hasher = RoughtimeSHA512()
        for (i, request) in requests.enumerated() {
            let nonceOffset = try request.withUnsafeBytes { 12 + (try RoughtimeMessage(packet: $0).range(of: .NONC)!.lowerBound) }
            let index = request.withUnsafeBytes { batch.append(request: $0, nonceOffset: nonceOffset, hasher: &hasher) }
            #expect(index == i)
        }
        try batch.seal(midpoint: 50, radius: 5, signer: &online, hasher: &hasher)
        #expect(batch.depth == depth)
        for i in requests.indices {
            var reply = [UInt8](repeating: 0, count: 1024)
            let length = reply.withUnsafeMutableBytes { batch.writeReply(i, into: $0) }
            #expect(hexString(reply[0..<length]) == hexString(expected[i]), "reply \(i)")
            let time = try verify(request: requests[i], reply: expected[i], key: root.publicKey)
            #expect(time == RoughtimeVerifiedTime(midpoint: 50, radius: 5, version: version))
        }
    }

    /// cloudflare's draft requests carry no TYPE, so an RFC 10049 server ignores them.
    @Test func cloudflareDraftRequestsAreNotAnswered() throws {
        let vector = try vectorJSON("cf_draft11_010.json", as: CloudflareVector.self)
        var hasher = RoughtimeSHA512()
        let root = try RoughtimeEd25519Signer(seed: hex(vector.root_key))
        let policy = RoughtimeRequestPolicy(srv: hasher.srv(forLongTermKey: root.publicKey))
        #expect(decide(policy, hex(vector.request[0])) == .ignore(.wrongType))
    }
}
