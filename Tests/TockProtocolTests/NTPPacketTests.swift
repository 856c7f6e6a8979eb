import Testing
import TockProtocol

/// Decodes `bytes` through the raw-buffer entry point.
func decodeRaw(_ bytes: [UInt8]) throws(NTPParseError) -> NTPPacket {
    let result: Result<NTPPacket, NTPParseError> = bytes.withUnsafeBytes { raw in
        Result { () throws(NTPParseError) in try NTPPacket(decoding: raw) }
    }
    return try result.get()
}

/// Validates `trailer` after a 48-byte header of `version`.
func validateTrailer(_ trailer: [UInt8], version: UInt8 = 4) throws(NTPParseError) -> NTPTrailer {
    let datagram = ntpRequest(firstByte(version: version, mode: 3), trailer: trailer)
    let result: Result<NTPTrailer, NTPParseError> = datagram.withUnsafeBytes { raw in
        Result { () throws(NTPParseError) in try NTPTrailer(validating: raw, version: version) }
    }
    return try result.get()
}

@Suite("NTPPacket")
struct NTPPacketTests {
    /// A header with a distinct value in every field (RFC 5905 figure 8 layout).
    static let header: [UInt8] = [
        0xE3, 0x02, 0x0A, 0xEC,  // LI 3, VN 4, mode 3; stratum 2; poll 10; precision -20
        0x00, 0x01, 0x80, 0x00,  // root delay 1.5 s
        0x00, 0x00, 0x40, 0x00,  // root dispersion 0.25 s
        0xC0, 0x00, 0x02, 0x01,  // reference ID 192.0.2.1
        0xEC, 0xB0, 0x57, 0x00, 0x10, 0x00, 0x00, 0x00,  // reference
        0xEC, 0xB0, 0x57, 0xA4, 0x20, 0x00, 0x00, 0x01,  // origin
        0xEC, 0xB0, 0x57, 0xA4, 0x30, 0x00, 0x00, 0x02,  // receive
        0xEC, 0xB0, 0x57, 0xA4, 0x40, 0x00, 0x00, 0x03,  // transmit
    ]

    @Test func decodesEveryFieldAtItsOffset() throws {
        let p = try NTPPacket(decoding: Self.header)
        #expect(p.leap == .unsynchronized)
        #expect(p.version == 4)
        #expect(p.mode == .client)
        #expect(p.stratum == 2)
        #expect(p.poll == 10)
        #expect(p.precision == -20)
        #expect(p.rootDelay.rawValue == 0x0001_8000)
        #expect(p.rootDelay.seconds == 1.5)
        #expect(p.rootDispersion.rawValue == 0x0000_4000)
        #expect(p.referenceID == 0xC000_0201)
        #expect(p.referenceTimestamp.rawValue == 0xECB0_5700_1000_0000)
        #expect(p.originTimestamp.rawValue == 0xECB0_57A4_2000_0001)
        #expect(p.receiveTimestamp.rawValue == 0xECB0_57A4_3000_0002)
        #expect(p.transmitTimestamp.rawValue == 0xECB0_57A4_4000_0003)
        #expect(p.kissCode == nil)
    }

    @Test func encodeReproducesTheBytes() throws {
        #expect(try NTPPacket(decoding: Self.header).bytes == Self.header)
        #expect(try decodeRaw(Self.header) == NTPPacket(decoding: Self.header))
    }

    @Test(arguments: [
        (UInt8(0x23), LeapIndicator.noWarning, UInt8(4), NTPMode.client),
        (0x1B, .noWarning, 3, .client),
        (0xE3, .unsynchronized, 4, .client),
        (0x24, .noWarning, 4, .server),
        (0x0C, .noWarning, 1, .server),
        (0x5C, .insertSecond, 3, .server),
        (0x9C, .deleteSecond, 3, .server),
        (0x17, .noWarning, 2, .privateUse),
        (0x16, .noWarning, 2, .control),
        (0x08, .noWarning, 1, .reserved),
    ])
    func firstByteLayout(first: UInt8, leap: LeapIndicator, version: UInt8, mode: NTPMode) throws {
        let p = try NTPPacket(decoding: ntpRequest(first))
        #expect(p.leap == leap)
        #expect(p.version == version)
        #expect(p.mode == mode)
        #expect(NTPPacket(leap: leap, version: version, mode: mode).bytes[0] == first)
    }

    @Test func encodesValuesBigEndianAtTheirOffsets() {
        let p = NTPPacket(
            leap: .insertSecond, version: 4, mode: .server, stratum: 1, poll: -6, precision: -29,
            rootDelay: NTPShort(rawValue: 0x0102_0304), rootDispersion: NTPShort(rawValue: 0x0506_0708),
            referenceID: ReferenceID.ascii("GPS"),
            referenceTimestamp: NTPTimestamp(rawValue: 0x1112_1314_1516_1718),
            originTimestamp: NTPTimestamp(rawValue: 0x2122_2324_2526_2728),
            receiveTimestamp: NTPTimestamp(rawValue: 0x3132_3334_3536_3738),
            transmitTimestamp: NTPTimestamp(rawValue: 0x4142_4344_4546_4748)
        )
        let expected: [UInt8] = [
            0x64, 0x01, 0xFA, 0xE3,
            0x01, 0x02, 0x03, 0x04,
            0x05, 0x06, 0x07, 0x08,
            0x47, 0x50, 0x53, 0x00,
            0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
            0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
            0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
            0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48,
        ]
        #expect(p.bytes == expected)
    }

    @Test func encodeIntoALargerBufferWritesOnlyTheHeader() {
        var buffer = [UInt8](repeating: 0xAA, count: 52)
        buffer.withUnsafeMutableBytes { NTPPacket(stratum: 3).encode(into: $0) }
        #expect(buffer[0] == 0x23)
        #expect(buffer[1] == 3)
        #expect(buffer[2..<48].allSatisfy { $0 == 0 })
        #expect(buffer[48...] == [0xAA, 0xAA, 0xAA, 0xAA])
    }

    @Test func defaultPacketIsAVersion4ClientRequest() {
        #expect(NTPPacket().bytes == [0x23] + [UInt8](repeating: 0, count: 47))
    }

    @Test(arguments: [0, 1, 8, 47])
    func fewerThan48BytesThrowTooShort(length: Int) {
        let bytes = Array(Self.header.prefix(length))
        #expect(throws: NTPParseError.tooShort(length)) { try NTPPacket(decoding: bytes) }
        #expect(throws: NTPParseError.tooShort(length)) { try decodeRaw(bytes) }
    }

    @Test func bytesAfterTheHeaderAreIgnored() throws {
        let p = try NTPPacket(decoding: Self.header + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(p == (try NTPPacket(decoding: Self.header)))
    }

    @Test func kissCodeOnlyAtStratumZero() {
        let kiss = NTPPacket(leap: .unsynchronized, mode: .server, stratum: 0, referenceID: ReferenceID.ascii("RATE"))
        #expect(kiss.kissCode == .rate)
        var notKiss = kiss
        notKiss.stratum = 1
        #expect(notKiss.kissCode == nil)
    }
}

@Suite("NTPTrailer (RFC 7822)")
struct NTPTrailerTests {
    @Test func noTrailer() throws {
        let t = try validateTrailer([])
        #expect(t.extensionFieldCount == 0)
        #expect(t.macLength == 0)
    }

    @Test(arguments: [20, 24])
    func legacyMAC(length: Int) throws {
        for version: UInt8 in [3, 4] {
            let t = try validateTrailer(mac(length: length), version: version)
            #expect(t.extensionFieldCount == 0)
            #expect(t.macLength == length)
        }
    }

    @Test func extensionFieldThenMAC() throws {
        let t = try validateTrailer(extensionField(length: 16) + mac(length: 24))
        #expect(t.extensionFieldCount == 1)
        #expect(t.macLength == 24)
        let u = try validateTrailer(extensionField(length: 16) + mac(length: 20))
        #expect(u.extensionFieldCount == 1)
        #expect(u.macLength == 20)
    }

    @Test func lastExtensionFieldOf28Bytes() throws {
        let t = try validateTrailer(extensionField(length: 28))
        #expect(t.extensionFieldCount == 1)
        #expect(t.macLength == 0)
    }

    @Test func severalExtensionFields() throws {
        let t = try validateTrailer(extensionField(length: 16) + extensionField(length: 32) + extensionField(length: 28))
        #expect(t.extensionFieldCount == 3)
        #expect(t.macLength == 0)
    }

    @Test(arguments: [
        extensionField(length: 28, declaredLength: 0),
        extensionField(length: 28, declaredLength: 12),
        extensionField(length: 28, declaredLength: 18),
        extensionField(length: 28, declaredLength: 32),  // runs past the datagram
        extensionField(length: 28, declaredLength: 0xFFFF),
        extensionField(length: 28, declaredLength: 0xFFFC),
        [0x01],
        [0x00, 0x00, 0x00, 0x04],
        [0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00],
        [UInt8](repeating: 0, count: 12),
    ])
    func malformedExtensionFieldsThrow(trailer: [UInt8]) {
        #expect(throws: NTPParseError.malformedExtensionField(offset: 48)) { try validateTrailer(trailer) }
    }

    @Test func malformedSecondFieldReportsItsOffset() {
        let trailer = extensionField(length: 16) + extensionField(length: 28, declaredLength: 30)
        #expect(throws: NTPParseError.malformedExtensionField(offset: 64)) { try validateTrailer(trailer) }
    }

    @Test func olderVersionsAllowOnlyAMAC() {
        #expect(throws: NTPParseError.trailingGarbage(16)) { try validateTrailer(extensionField(length: 16), version: 3) }
        #expect(throws: NTPParseError.trailingGarbage(28)) { try validateTrailer(extensionField(length: 28), version: 3) }
        #expect(throws: NTPParseError.trailingGarbage(4)) { try validateTrailer([0, 0, 0, 0], version: 2) }
        #expect(throws: NTPParseError.trailingGarbage(1)) { try validateTrailer([0], version: 1) }
    }
}

@Suite("Reference IDs and kiss codes")
struct ReferenceIDTests {
    @Test func stratumOneShowsText() {
        #expect(ReferenceID.ascii("GPS") == 0x4750_5300)
        #expect(ReferenceID.display(ReferenceID.ascii("GPS"), stratum: 1) == "GPS")
        #expect(ReferenceID.display(ReferenceID.ascii("LOCL"), stratum: 1) == "LOCL")
        #expect(ReferenceID.display(ReferenceID.ascii("RATE"), stratum: 0) == "RATE")
    }

    @Test func higherStrataShowAnIPv4Address() {
        #expect(ReferenceID.display(0x7F00_0001, stratum: 2) == "127.0.0.1")
        #expect(ReferenceID.display(0xC000_02FF, stratum: 15) == "192.0.2.255")
    }

    @Test func asciiHelpers() {
        #expect(ReferenceID.ascii("TOOLONG") == ReferenceID.ascii("TOOL"))
        #expect(ReferenceID.ascii("") == 0)
        #expect(ReferenceID.asciiText(0x4101_4243) == "A.BC")
        #expect(ReferenceID.asciiText(0) == "")
    }

    @Test func kissCodes() {
        #expect(KissCode.rate.description == "RATE")
        #expect(KissCode.rate.rawValue == 0x5241_5445)
        #expect(KissCode(rawValue: 0x4445_4E59) == .deny)
        #expect(KissCode.restrict.description == "RSTR")
        #expect(KissCode.ntsNak.description == "NTSN")
        #expect(KissCode.deny.demandsStop)
        #expect(KissCode.restrict.demandsStop)
        #expect(!KissCode.rate.demandsStop)
        #expect(!KissCode.ntsNak.demandsStop)
    }
}
