import Foundation

/// Roughtime keys as people write them: a public key in a server list or on a command line is
/// base64 (RFC 10049 §8.3 uses base64) or hex; a seed file holds the 32 raw bytes, or the same
/// as hex or base64 text.
package enum RoughtimeKeyText {
    /// The 32 bytes `text` spells as 64 hex digits or 44 base64 characters (surrounding white
    /// space ignored), or nil.
    package static func decode(_ text: String) -> [UInt8]? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.utf8.count == 64, let bytes = hex(trimmed) { return bytes }
        if trimmed.utf8.count == 44, let data = Data(base64Encoded: trimmed), data.count == 32 { return Array(data) }
        return nil
    }

    /// A seed file's contents: 32 raw bytes, or 64 hex digits or 44 base64 characters with an
    /// optional trailing newline.
    package static func decodeSeed(_ bytes: [UInt8]) -> [UInt8]? {
        if bytes.count == 32 { return bytes }
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        return decode(text)
    }

    /// Reads a long-term key seed from `path`: 32 raw bytes, or 64 hex digits or 44 base64
    /// characters, in a file readable by its owner only (`SecretFile`).
    package static func readSeed(path: String) throws(SecretFile.Problem) -> [UInt8] {
        let bytes = try SecretFile.read(path, name: "Roughtime key file", limit: 256, missingHint: "make one with: tock roughtime keygen \(path)")
        guard let seed = decodeSeed(bytes) else {
            throw SecretFile.Problem("Roughtime key file \(path) holds \(bytes.count) bytes that are not a 32-byte Ed25519 seed (raw, 64 hex digits or 44 base64 characters); make one with: tock roughtime keygen \(path)")
        }
        return seed
    }

    /// The bytes in base64.
    package static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// The bytes in lowercase hex.
    package static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of an even-length hex string, or nil.
    private static func hex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        for i in stride(from: 0, to: chars.count, by: 2) {
            guard let high = value(chars[i]), let low = value(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }
}
