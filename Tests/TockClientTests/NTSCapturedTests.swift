import Testing
import TockClient
import TockProtocol

/// One NTS exchange with chronyd 4.3's NTS server (`ntsport`, `port`, `local stratum 3` on
/// 127.0.0.1), captured with Tests/interop/nts_client.py: the session's keys (from OpenSSL's
/// TLS exporter), the request (one placeholder, so two cookies come back) and chronyd's reply;
/// then a request with a cookie altered in its last byte and chronyd's NAK. Test data of a
/// throwaway local session.
enum ChronyNTSCapture {
    static let c2s = hex("cbbccd6b80275c03c3541d791466781e17e8716aebb242e99615171028ee664b")
    static let s2c = hex("31090b977aa692ce7b2f92af8d367a69727a94595b4f573c98cb207dc6c1817d")
    static let uid = hex("261ad79310183b43010a26bfad434c6ebdb8d848c7fafaf98d73248ac36cfe97")
    static let transmit = NTPTimestamp(rawValue: 0x2aa7_2e29_d07e_1bb9)
    static let t1 = UTCInstant(nanosecondsSinceUnixEpoch: 1_796_003_662_375_288_226)
    static let t4 = UTCInstant(nanosecondsSinceUnixEpoch: 1_796_003_662_375_455_566)
    static let reply = hex("""
        240300e600000000000000007f7f0101eeb755cd418e63892aa72e29d07e1bb9eeb755ce6014d1cbeeb755ce601a250c0104002426\
        1ad79310183b43010a26bfad434c6ebdb8d848c7fafaf98d73248ac36cfe97040400f8001000e0e49c3648b81347dfcbd4fcfd0e594c\
        6b4da20611cb99c3744958dea9b78a25533bd0ca5930b6b13a2bd404d75ac0cf1061a510d3f322c2027b1b339a26dc91e233e65228aa\
        e6fe62e3e6ba2ae7eaa576a7dd95d960178bca3c363a318dd5adf557bdb44b2fe363eba6d4038b44b38495a4d573eb3bdcbf9675a9b1\
        2651feeff3e356de9caea4fba5562833addd95a93d6b563dc1a37e4c15d5db23cfb0a4b95e3e6037e1d10a01035e994fefa0fbf1645e\
        2ef4f12bc0ca3fb94c4240100821b5cd89fa8264ec70e315b68d6b2bd787f58636312e31bfe0b15e0de553417012b05e829adce2e634\
        9007c9856fb3f4f7d4
        """)
    static let nakUID = hex("89b5546247effe6b87fde4dd5a4fccc61c880b01f0b97e2f3e43b25cebedc1cf")
    static let nakTransmit = NTPTimestamp(rawValue: 0xfc03_73e9_651a_2daa)
    static let nakReply = hex("""
        e40000e600000000000000004e54534eeeb755cd418e6389fc0373e9651a2daaeeb755ce602936d7eeb755ce602b0aa40104002489\
        b5546247effe6b87fde4dd5a4fccc61c880b01f0b97e2f3e43b25cebedc1cf
        """)

    static func exchange(uid: [UInt8] = uid, transmit: NTPTimestamp = transmit) -> NTSClientExchange {
        var cipher = NTSSessionCipher(c2s: c2s, s2c: s2c)
        return NTSClientExchange(ntp: NTPClientExchange(requestTransmit: transmit), uniqueIdentifier: uid, nonce: [UInt8](repeating: 1, count: 16), cookie: [UInt8](repeating: 2, count: 100), cipher: &cipher)
    }

    static func evaluate(_ exchange: NTSClientExchange, _ reply: [UInt8], s2c: [UInt8] = s2c) -> Result<NTSClientSample, NTSReplyProblem> {
        var cipher = NTSSessionCipher(c2s: c2s, s2c: s2c)
        return exchange.evaluate(reply: reply, t1: t1, t4: t4, cipher: &cipher)
    }
}

/// Hex text to bytes (test vectors).
func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8).filter { $0 != 10 && $0 != 32 }
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
}

@Suite("NTS replies captured from chronyd 4.3")
struct NTSCapturedTests {
    @Test("chronyd's authenticated reply verifies; its two new cookies are read")
    func authenticatedReply() throws {
        let answer = try ChronyNTSCapture.evaluate(ChronyNTSCapture.exchange(), ChronyNTSCapture.reply).get()
        #expect(answer.cookies.count == 2)
        #expect(answer.cookies.allSatisfy { $0.count == 100 })
        #expect(answer.sample.packet.stratum == 3)
        #expect(abs(answer.sample.offsetNanoseconds) < 1_000_000)
    }

    @Test("chronyd's reply under another S2C key, or altered: refused")
    func refused() {
        var wrongKey = ChronyNTSCapture.s2c
        wrongKey[0] ^= 1
        #expect(ChronyNTSCapture.evaluate(ChronyNTSCapture.exchange(), ChronyNTSCapture.reply, s2c: wrongKey) == .failure(.authenticationFailed))
        var altered = ChronyNTSCapture.reply
        altered[40] ^= 1  // the transmit timestamp (T3)
        #expect(ChronyNTSCapture.evaluate(ChronyNTSCapture.exchange(), altered) == .failure(.authenticationFailed))
        var otherUID = ChronyNTSCapture.uid
        otherUID[31] ^= 1
        #expect(ChronyNTSCapture.evaluate(ChronyNTSCapture.exchange(uid: otherUID), ChronyNTSCapture.reply) == .failure(.uniqueIdentifierMismatch))
    }

    @Test("chronyd's NAK for a cookie it cannot open is recognised")
    func nak() {
        let exchange = ChronyNTSCapture.exchange(uid: ChronyNTSCapture.nakUID, transmit: ChronyNTSCapture.nakTransmit)
        #expect(ChronyNTSCapture.evaluate(exchange, ChronyNTSCapture.nakReply) == .failure(.nak))
    }
}
