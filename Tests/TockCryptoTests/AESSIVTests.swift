import Testing

@testable import TockCrypto

/// A known answer for AES-SIV-CMAC with nettle's (associated data, nonce) pair.
struct SIVVector: Sendable, CustomTestStringConvertible {
    let name: String
    let key: [UInt8]
    let nonce: [UInt8]
    let associatedData: [UInt8]
    let plaintext: [UInt8]
    /// Synthetic IV (16 bytes) followed by the ciphertext.
    let sealed: [UInt8]
    /// What S2V gives with the nonce first and the associated data second: the answer nettle
    /// would give if it ordered the two the other way round.
    let swapped: [UInt8]

    init(name: String, key: String, nonce: String, associatedData: String, plaintext: String, sealed: String, swapped: String) {
        self.name = name
        self.key = hex(key)
        self.nonce = hex(nonce)
        self.associatedData = hex(associatedData)
        self.plaintext = hex(plaintext)
        self.sealed = hex(sealed)
        self.swapped = hex(swapped)
    }

    var testDescription: String { name }
}

/// Vectors made by Tests/TockCryptoTests/make_vectors.py with Python's `cryptography` 50.0.2
/// (the AES-SIV of the OpenSSL 4.0.3 it bundles, not nettle): `AESSIV(key).encrypt(plaintext, [associatedData, nonce])`
/// gives `sealed`, and `[nonce, associatedData]` gives `swapped`. The inputs cover both key
/// sizes, an NTP header as associated data (RFC 8915 §5.6), empty associated data, an empty
/// plaintext (a client request carries no encrypted fields), a one-byte nonce, and plaintexts
/// shorter than, equal to and longer than one block (S2V's two final-block cases, RFC 5297 §2.4).
let sivVectors: [SIVVector] = [
    SIVVector(name: "cmac256",
        key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        nonce: "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        associatedData: "23000000000000000000000000000000000000000000000000000000000000000000000000000000e0e1e2e3e4e5e6e7",
        plaintext: "404142434445464748494a4b4c4d4e4f50515253",
        sealed: "685f5982a52823b1621f5492aae9a908e84082f3cea27ea268c5d046e02432bda94a18ea",
        swapped: "fcced368603e607a8e32368f1bf53a797ac07c818161adc803634e3b19f34b9530029328"),
    SIVVector(name: "cmac512",
        key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
        nonce: "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        associatedData: "23000000000000000000000000000000000000000000000000000000000000000000000000000000e0e1e2e3e4e5e6e7",
        plaintext: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3",
        sealed: "d6bf14a9cde4343c636d7efc1758ea65730c77ca10cada6dc5b5279492719bfafeccca3e28ecd638fc048a5986e089809f84c04551660c910dfeb0694a3cbb7a792914c50be1d228adba4c86a002d09b66b7d19b3a35cc37ef9ad364a7f8208829e16f2b6801d6044c580a8944d96a9fc2404bea",
        swapped: "807fc0d57ab9aee9d3e4c62be922230e4f3e8ac49548631e98009963f48412981fee8e4963fc45e7cff9af3db782de31850ff1db6e1fecf3fc907709a174befa49c4fc2fd99df5ebe7b41f13bd14e245bb41e68862d79e4baa1e3054daef375b1ff25b49d8caf9e18ac7019de9604a58d57bdda8"),
    SIVVector(name: "cmac256EmptyAD",
        key: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
        nonce: "01",
        associatedData: "",
        plaintext: "101112131415161718191a1b1c1d1e1f",
        sealed: "4d408039b28eaeb14d62cd6b4b4416e53161dc85912b80ee9813c89e67dce1e7",
        swapped: "0a3d8ffe3276e03f4a27c6c2b238bc01e95903955072d24b147d353ceafe3127"),
    SIVVector(name: "cmac512EmptyPlaintext",
        key: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f",
        nonce: "000102030405060708090a0b0c0d0e0f",
        associatedData: "23000000000000000000000000000000000000000000000000000000000000000000000000000000e0e1e2e3e4e5e6e7",
        plaintext: "",
        sealed: "b2f13db3eeb978865e742da1c24e2012",
        swapped: "d5129981dda41e316b4b537a08d71bbf"),
    SIVVector(name: "cmac256Short",
        key: "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
        nonce: "f0f1f2f3f4f5f6f7f8f9fafb",
        associatedData: "746f636b",
        plaintext: "4e5453",
        sealed: "000663d2d5a45fbbdda383a796863628470395",
        swapped: "29cc72af9d1c60e2fb67e85051ad0bd1f0b2f2"),
]

/// A context keyed with `key`.
func keyed(_ key: [UInt8]) -> AESSIVCMAC {
    var siv = AESSIVCMAC()
    key.withUnsafeBytes { siv.setKey($0) }
    return siv
}

/// `seal` through arrays; the output buffer is `extra` bytes longer than needed, to show that
/// `seal` reports its length and leaves the rest alone.
func seal(_ siv: borrowing AESSIVCMAC, nonce: [UInt8], associatedData: [UInt8], plaintext: [UInt8], extra: Int = 0) -> [UInt8] {
    var output = [UInt8](repeating: 0xEE, count: plaintext.count + AESSIVCMAC.tagLength + extra)
    let written = nonce.withUnsafeBytes { n in
        associatedData.withUnsafeBytes { a in
            plaintext.withUnsafeBytes { p in
                output.withUnsafeMutableBytes { o in siv.seal(nonce: n, associatedData: a, plaintext: p, into: o) }
            }
        }
    }
    #expect(written == plaintext.count + AESSIVCMAC.tagLength)
    #expect(output[written...].allSatisfy { $0 == 0xEE })
    return Array(output[..<written])
}

/// `open` through arrays: the plaintext, or nil if `open` refused; on refusal, checks that the
/// output buffer was left zeroed.
func open(_ siv: borrowing AESSIVCMAC, nonce: [UInt8], associatedData: [UInt8], ciphertext: [UInt8], outputCount: Int? = nil) -> [UInt8]? {
    let count = outputCount ?? max(ciphertext.count - AESSIVCMAC.tagLength, 0)
    var output = [UInt8](repeating: 0xEE, count: count)
    let authentic = nonce.withUnsafeBytes { n in
        associatedData.withUnsafeBytes { a in
            ciphertext.withUnsafeBytes { c in
                output.withUnsafeMutableBytes { o in siv.open(nonce: n, associatedData: a, ciphertext: c, into: o) }
            }
        }
    }
    guard authentic else {
        // Refused before decrypting (bad lengths): untouched; after: zeroed.
        let decrypted = min(max(ciphertext.count - AESSIVCMAC.tagLength, 0), count)
        #expect(
            output.allSatisfy { $0 == 0xEE } || output[..<decrypted].allSatisfy { $0 == 0 },
            "unauthenticated plaintext left in the output")
        return nil
    }
    return Array(output[..<(ciphertext.count - AESSIVCMAC.tagLength)])
}

@Suite struct AESSIVTests {
    @Test(arguments: sivVectors)
    func sealMatchesIndependentImplementation(_ v: SIVVector) {
        let siv = keyed(v.key)
        #expect(siv.algorithm == (v.key.count == 32 ? .aesSIVCMAC256 : .aesSIVCMAC512))
        let sealed = seal(siv, nonce: v.nonce, associatedData: v.associatedData, plaintext: v.plaintext, extra: 7)
        #expect(hexString(sealed) == hexString(v.sealed))
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.sealed) == v.plaintext)
    }

    /// nettle's S2V takes the associated data before the nonce (the order RFC 8915 §5.6 and
    /// Python's `[ad, nonce]` use): its output is not the swapped answer, and the swapped
    /// answer opens only when the two are passed the other way round.
    @Test(arguments: sivVectors)
    func associatedDataComesBeforeNonce(_ v: SIVVector) {
        let siv = keyed(v.key)
        #expect(seal(siv, nonce: v.nonce, associatedData: v.associatedData, plaintext: v.plaintext) != v.swapped)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.swapped) == nil)
        if !v.associatedData.isEmpty {  // nettle needs a nonce, and here the nonce is the AD
            #expect(open(siv, nonce: v.associatedData, associatedData: v.nonce, ciphertext: v.swapped) == v.plaintext)
        }
    }

    @Test(arguments: AESSIVCMAC.Algorithm.allCases)
    func roundTrips(_ algorithm: AESSIVCMAC.Algorithm) {
        var rng = SystemRandomNumberGenerator()
        for length in [0, 1, 15, 16, 17, 31, 32, 33, 100, 1024] {
            let key = (0..<algorithm.keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let nonce = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let ad = (0..<(48 + length % 5 * 4)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let plaintext = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let siv = keyed(key)
            #expect(siv.algorithm == algorithm)
            let sealed = seal(siv, nonce: nonce, associatedData: ad, plaintext: plaintext)
            #expect(sealed.count == length + 16)
            #expect(open(siv, nonce: nonce, associatedData: ad, ciphertext: sealed) == plaintext)
            // SIV is deterministic: the same inputs seal to the same bytes.
            #expect(seal(siv, nonce: nonce, associatedData: ad, plaintext: plaintext) == sealed)
        }
    }

    @Test(arguments: sivVectors)
    func anyTamperedByteFailsOpen(_ v: SIVVector) {
        let siv = keyed(v.key)
        for i in v.sealed.indices {
            var tampered = v.sealed
            tampered[i] ^= 0x01
            #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: tampered) == nil, "sealed byte \(i)")
        }
        for i in v.associatedData.indices {
            var tampered = v.associatedData
            tampered[i] ^= 0x80
            #expect(open(siv, nonce: v.nonce, associatedData: tampered, ciphertext: v.sealed) == nil, "associated data byte \(i)")
        }
        for i in v.nonce.indices {
            var tampered = v.nonce
            tampered[i] ^= 0x40
            #expect(open(siv, nonce: tampered, associatedData: v.associatedData, ciphertext: v.sealed) == nil, "nonce byte \(i)")
        }
        // Lengths are authenticated too: a byte more or less anywhere fails.
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData + [0], ciphertext: v.sealed) == nil)
        #expect(open(siv, nonce: v.nonce + [0], associatedData: v.associatedData, ciphertext: v.sealed) == nil)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.sealed + [0]) == nil)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: Array(v.sealed.dropLast())) == nil)
    }

    @Test func wrongKeyFailsOpen() {
        let v = sivVectors[0]
        var key = v.key
        key[31] ^= 1
        #expect(open(keyed(key), nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.sealed) == nil)
        // The 256 ciphertext under a 512 key whose first half is the same key.
        #expect(open(keyed(v.key + v.key), nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.sealed) == nil)
    }

    /// Lengths come off the wire, so `open` answers false rather than trapping.
    @Test func badLengthsFailOpenWithoutTrapping() {
        let v = sivVectors[0]
        let siv = keyed(v.key)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: Array(v.sealed.prefix(15))) == nil)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: []) == nil)
        #expect(open(siv, nonce: [], associatedData: v.associatedData, ciphertext: v.sealed) == nil)
        #expect(open(siv, nonce: v.nonce, associatedData: v.associatedData, ciphertext: v.sealed, outputCount: v.plaintext.count - 1) == nil)
    }

    /// One context re-keyed across both variants, as a server re-keys as keys rotate: nothing
    /// of the previous key may leak into the next.
    @Test func rekeyingSwitchesVariants() {
        var siv = AESSIVCMAC()
        #expect(siv.algorithm == nil)
        for v in sivVectors + sivVectors.reversed() {
            v.key.withUnsafeBytes { siv.setKey($0) }
            #expect(siv.algorithm?.keyLength == v.key.count)
            #expect(seal(siv, nonce: v.nonce, associatedData: v.associatedData, plaintext: v.plaintext) == v.sealed)
        }
    }

    /// Sealing where NTS puts it: nonce, associated data and output are disjoint slices of one
    /// packet buffer (RFC 8915 §5.6), read and written in place.
    @Test func sealsIntoSlicesOfOnePacketBuffer() {
        let v = sivVectors[0]
        let siv = keyed(v.key)
        var packet = [UInt8](repeating: 0, count: 48 + 16 + 36)
        packet.replaceSubrange(0..<48, with: v.associatedData)
        packet.replaceSubrange(48..<64, with: v.nonce)
        let written = v.plaintext.withUnsafeBytes { p in
            packet.withUnsafeMutableBytes { buffer in
                siv.seal(
                    nonce: UnsafeRawBufferPointer(rebasing: buffer[48..<64]),
                    associatedData: UnsafeRawBufferPointer(rebasing: buffer[0..<48]),
                    plaintext: p,
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[64...]))
            }
        }
        #expect(written == 36)
        #expect(Array(packet[64...]) == v.sealed)
        var plaintext = [UInt8](repeating: 0, count: 20)
        let authentic = packet.withUnsafeBytes { buffer in
            plaintext.withUnsafeMutableBytes { o in
                siv.open(
                    nonce: UnsafeRawBufferPointer(rebasing: buffer[48..<64]),
                    associatedData: UnsafeRawBufferPointer(rebasing: buffer[0..<48]),
                    ciphertext: UnsafeRawBufferPointer(rebasing: buffer[64...]),
                    into: o)
            }
        }
        #expect(authentic)
        #expect(plaintext == v.plaintext)
    }

    @Test func algorithmNumbersAndKeyLengths() {
        #expect(AESSIVCMAC.Algorithm(rawValue: 15) == .aesSIVCMAC256)
        #expect(AESSIVCMAC.Algorithm(rawValue: 17) == .aesSIVCMAC512)
        #expect(AESSIVCMAC.Algorithm(rawValue: 16) == nil)
        #expect(AESSIVCMAC.Algorithm(keyLength: 32) == .aesSIVCMAC256)
        #expect(AESSIVCMAC.Algorithm(keyLength: 64) == .aesSIVCMAC512)
        #expect(AESSIVCMAC.Algorithm(keyLength: 48) == nil)
    }
}
