import Testing

@testable import TockCrypto

@Suite struct CookieKeyTests {
    /// Known answers from Tests/TockCryptoTests/make_vectors.py: Python's `cryptography` HKDF
    /// with SHA-256, no salt, info "tock nts cookie key" ‖ key id (big-endian), 32 bytes.
    @Test(arguments: [
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", UInt32(0x0000_0000), "ec2a56e924d74681a69bd20945e34199d60e2a973230a1e0372b43b4c4a50127"),
        ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", UInt32(0x0000_0001), "8d2bae8027ba2ca26beedc66df8d5a36b1cbe09108fca2302fd62dedfaaec2ba"),
        ("55565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f7071727374", UInt32(0x0102_0304), "254a74128aefe4dabdabb049c732476949d61837aa623f54a09ce09a65bd54cc"),
    ])
    func matchesIndependentHKDF(master: String, keyID: UInt32, expected: String) {
        #expect(hexString(cookieKey(master: hex(master), keyID: keyID)) == expected)
    }

    /// Two servers with the same master agree on every period's key without talking.
    @Test func sameMasterAndIDGiveTheSameKey() {
        let master = [UInt8](repeating: 0x42, count: 32)
        for id: UInt32 in [0, 1, 0xFFFF_FFFF] {
            let key = cookieKey(master: master, keyID: id)
            #expect(key.count == 32)
            #expect(cookieKey(master: Array(master), keyID: id) == key)
        }
    }

    @Test func differentIDsOrMastersGiveDifferentKeys() {
        let master = [UInt8](repeating: 0x42, count: 32)
        var other = master
        other[0] ^= 1
        let ids: [UInt32] = [0, 1, 2, 0x100, 0x1_0000, 0x100_0000, 0xFFFF_FFFF]
        let keys = ids.map { cookieKey(master: master, keyID: $0) }
        #expect(Set(keys.map(hexString)).count == ids.count)
        for id in ids {
            #expect(cookieKey(master: other, keyID: id) != cookieKey(master: master, keyID: id))
        }
    }

    /// A cookie key is an AEAD_AES_SIV_CMAC_256 key.
    @Test func keysAnAESSIVContext() {
        let key = cookieKey(master: [UInt8](repeating: 9, count: 32), keyID: 7)
        var siv = AESSIVCMAC()
        key.withUnsafeBytes { siv.setKey($0) }
        #expect(siv.algorithm == .aesSIVCMAC256)
    }
}
