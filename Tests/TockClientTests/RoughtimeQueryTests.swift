import Testing
import TockClient
import TockCrypto
import TockProtocol
import TockSockets

/// `RoughtimeQuery` offering the draft versions Cloudflare's deployment speaks, against a fake
/// server that answers in draft 11's layout with the core's batch (the layout checked byte for
/// byte against cloudflare/roughtime's published replies in RoughtimeTests).
@Suite("Roughtime query in draft 11 and 08")
struct RoughtimeQueryDraftTests {
    /// A server that answers one request per batch in `version`, at midpoint `midpoint`, under
    /// a certificate from `longTerm`; requests not offering `version` get nothing.
    static func draftServer(version: RoughtimeVersion, longTerm: [UInt8], online: [UInt8], midpoint: UInt64) -> FakeBehaviour {
        { request, _ in
            guard var root = try? RoughtimeEd25519Signer(seed: longTerm), var signer = try? RoughtimeEd25519Signer(seed: online),
                  let certificate = try? RoughtimeCertificate(onlinePublicKey: signer.publicKey, minimumTime: midpoint - 3600,
                                                              maximumTime: midpoint + 3600, dialect: .draft11, longTermSigner: &root),
                  let (offered, nonce) = request.withUnsafeBytes({ bytes -> ([UInt8], Int)? in
                      guard let message = try? RoughtimeMessage(packet: bytes), let ver = message.range(of: .VER),
                            let nonce = message.range(of: .NONC) else { return nil }
                      return (Array(bytes[(12 + ver.lowerBound)..<(12 + ver.upperBound)]), 12 + nonce.lowerBound)
                  }),
                  offered.withUnsafeBytes({ ver in stride(from: 0, to: ver.count, by: 4).contains { RoughtimeWire.load32(ver, $0) == version.rawValue } })
            else { return nil }
            var batch = RoughtimeBatch(version: version, certificate: certificate, maximumDepth: 0)
            var hasher = RoughtimeSHA512()
            guard request.withUnsafeBytes({ batch.append(request: $0, nonceOffset: nonce, hasher: &hasher) }) == 0,
                  (try? batch.seal(midpoint: midpoint, radius: 5, signer: &signer, hasher: &hasher)) != nil else { return nil }
            var reply = [UInt8](repeating: 0, count: 1024)
            let length = reply.withUnsafeMutableBytes { batch.writeReply(0, into: $0) }
            return Array(reply[0..<length])
        }
    }

    @Test("A draft-11 or draft-08 query is answered and verified in that draft's layout", arguments: [RoughtimeVersion.draft11, .draft08])
    func draftQuery(version: RoughtimeVersion) async throws {
        let longTerm = [UInt8](repeating: 7, count: 32), online = [UInt8](repeating: 9, count: 32)
        let publicKey = try RoughtimeEd25519Signer(seed: longTerm).publicKey
        let midpoint = UInt64(SystemClock.now().nanosecondsSinceUnixEpoch / 1_000_000_000)
        try await FakeUDPServer.with(Self.draftServer(version: version, longTerm: longTerm, online: online, midpoint: midpoint)) { server in
            let address = server.address
            let result = await blocking { () -> Result<RoughtimeQuery.Answer, ClientError> in
                do throws(ClientError) {
                    return .success(try RoughtimeQuery(publicKey: publicKey, timeoutNanoseconds: 2_000_000_000, versions: [version]).run(server: address))
                } catch { return .failure(error) }
            }
            let answer = try result.get()
            #expect(answer.time == RoughtimeVerifiedTime(midpoint: midpoint, radius: 5, version: version))
            // The request offered only that version, in draft 11's shape: no TYPE tag.
            let request = try #require(server.requests.first)
            #expect(request.count == 1024)
            let hasType = try request.withUnsafeBytes { try RoughtimeMessage(packet: $0).range(of: .TYPE) != nil }
            #expect(!hasType)

            // The default offer (1 and 0x8000000c) gets nothing from a draft-only server.
            let silent = await blocking { () -> Bool in
                do { _ = try RoughtimeQuery(publicKey: publicKey, timeoutNanoseconds: 300_000_000).run(server: address); return false }
                catch { return "\(error)".contains("timeout") || "\(error)".contains("no reply") }
            }
            #expect(silent)
        }
    }
}

/// Reading a server list (RFC 10049 §8.3): which address and transport `tock roughtime check`
/// uses for each entry.
@Suite("Roughtime server list addresses")
struct RoughtimeServerListAddressTests {
    static let key = "SSM38R/rN62smY3UMfdhvcgYTrjVARi3JMfSwZwkTVc="

    static func parse(_ addresses: String) throws(RoughtimeServerList.ParseError) -> [RoughtimeListedServer] {
        let json = #"{"servers": [{"name": "a", "publicKeyType": "ed25519", "publicKey": "\#(key)", "addresses": \#(addresses)}]}"#
        return try RoughtimeServerList.parse(Array(json.utf8))
    }

    @Test("UDP first when both are listed, whatever the order; TCP when only TCP is; neither is an error")
    func transports() throws {
        let both = try Self.parse(#"[{"protocol": "tcp", "address": "h:2"}, {"protocol": "udp", "address": "h:1"}]"#)
        #expect(both.map(\.address) == ["h:1"] && both.map(\.tcp) == [false])
        let tcp = try Self.parse(#"[{"protocol": "TCP", "address": "h:2"}]"#)
        #expect(tcp.map(\.address) == ["h:2"] && tcp.map(\.tcp) == [true])
        let unnamed = try Self.parse(#"[{"address": "h:3"}]"#)
        #expect(unnamed.map(\.tcp) == [false], "an address without a protocol is UDP")
        #expect(throws: RoughtimeServerList.ParseError.self) { try Self.parse(#"[{"protocol": "quic", "address": "h:4"}]"#) }
    }
}
