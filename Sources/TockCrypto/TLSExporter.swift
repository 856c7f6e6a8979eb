import Crypto

/// The TLS 1.3 keying-material exporter (RFC 8446 §7.5), computed from the exporter master
/// secret, so NTS-KE can derive its keys (RFC 8915 §5.1) whatever TLS library runs the
/// handshake, as long as it reports its secrets in the NSS key log format.
///
/// TLS libraries that do not expose the exporter itself still hand every secret to a key-log
/// callback (OpenSSL's `SSL_CTX_set_keylog_callback`, BoringSSL's, and so swift-nio-ssl's
/// `keyLogCallback`); the `EXPORTER_SECRET` line is all the exporter needs.
package struct TLSExporter: Sendable {
    /// The hash of the negotiated cipher suite, which HKDF and the transcript hash use
    /// (RFC 8446 §7.1); in TLS 1.3 it is SHA-256 or SHA-384 (RFC 8446 §B.4).
    package enum Hash: Sendable {
        /// SHA-256: TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256.
        case sha256
        /// SHA-384: TLS_AES_256_GCM_SHA384.
        case sha384

        /// The hash whose output is `length` bytes long, which is the length of every secret
        /// the key schedule derives with it (RFC 8446 §7.1), or nil if none is.
        package init?(secretLength length: Int) {
            switch length {
            case SHA256.byteCount: self = .sha256
            case SHA384.byteCount: self = .sha384
            default: return nil
            }
        }

        /// Output length in bytes, `Hash.length` in RFC 8446 §7.1.
        package var length: Int {
            switch self {
            case .sha256: return SHA256.byteCount
            case .sha384: return SHA384.byteCount
            }
        }
    }

    /// The key-log label of the exporter master secret (NSS key log format).
    package static let keyLogLabel = "EXPORTER_SECRET"

    /// The exporter label for NTS keys (RFC 8915 §5.1).
    package static let ntsLabel = "EXPORTER-network-time-security"

    /// `exporter_master_secret` (RFC 8446 §7.1).
    package let exporterMasterSecret: [UInt8]
    /// The connection's ClientHello.random, which key-log lines use to say which connection a
    /// secret belongs to; empty when the secret was given directly.
    package let clientRandom: [UInt8]
    /// The cipher suite's hash, told by the secret's length.
    package let hash: Hash

    /// Uses `exporterMasterSecret` (RFC 8446 §7.1), or returns nil if its length is not that of
    /// SHA-256 or SHA-384 output, the only hashes TLS 1.3 has.
    package init?(exporterMasterSecret: [UInt8], clientRandom: [UInt8] = []) {
        guard let hash = Hash(secretLength: exporterMasterSecret.count) else { return nil }
        self.exporterMasterSecret = exporterMasterSecret
        self.clientRandom = clientRandom
        self.hash = hash
    }

    /// Reads an NSS key log line, `EXPORTER_SECRET <client_random hex> <secret hex>`, as a
    /// key-log callback delivers it (with or without a trailing newline).
    ///
    /// Returns nil for every other line, so a callback can offer each line it gets: other
    /// labels (`CLIENT_HANDSHAKE_TRAFFIC_SECRET`, …), comments, and malformed lines (a client
    /// random that is not 32 bytes, hex that does not parse, a secret of no TLS 1.3 length).
    package init?(keyLogLine line: String) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
        guard fields.count == 3, fields[0] == Self.keyLogLabel,
            let random = hexBytes(fields[1]), random.count == 32,
            let secret = hexBytes(fields[2])
        else { return nil }
        self.init(exporterMasterSecret: secret, clientRandom: random)
    }

    /// `TLS-Exporter(label, context_value, key_length)` (RFC 8446 §7.5):
    /// `HKDF-Expand-Label(Derive-Secret(exporter_master_secret, label, ""), "exporter",
    /// Hash(context_value), key_length)`.
    ///
    /// RFC 8446 §7.5 makes an absent context the same as an empty one, so `[]` serves both.
    /// `length` is at most 255 × the hash length (HKDF's limit, RFC 5869 §2.3), and `label` at
    /// most 249 bytes (the HkdfLabel's label, with its "tls13 " prefix, fits 255); longer is a
    /// programming error and traps.
    package func export(label: String, context: [UInt8], length: Int) -> [UInt8] {
        switch hash {
        case .sha256: return Self.export(SHA256.self, exporterMasterSecret, label, context, length)
        case .sha384: return Self.export(SHA384.self, exporterMasterSecret, label, context, length)
        }
    }

    /// The NTS keys for `aead` (RFC 8915 §5.1): the exporter with label
    /// `EXPORTER-network-time-security` and context next protocol (NTPv4, 0) ‖ AEAD id ‖ 0x00
    /// for client-to-server or 0x01 for server-to-client, each as long as the AEAD's key.
    ///
    /// `aead` must be one this module implements (`AESSIVCMAC.Algorithm(rawValue:)` tells):
    /// NTS-KE only ever agrees on an AEAD both sides offered, so another id is a programming
    /// error and traps.
    package func ntsKeys(aead: UInt16) -> (c2s: [UInt8], s2c: [UInt8]) {
        guard let algorithm = AESSIVCMAC.Algorithm(rawValue: aead) else {
            preconditionFailure("no NTS key length for AEAD id \(aead)")
        }
        return ntsKeys(algorithm: algorithm)
    }

    /// The NTS keys for `algorithm` (RFC 8915 §5.1); see `ntsKeys(aead:)`.
    package func ntsKeys(algorithm: AESSIVCMAC.Algorithm) -> (c2s: [UInt8], s2c: [UInt8]) {
        // Next Protocol ID 0 is NTPv4 (RFC 8915 §4.1.2); both numbers are big-endian uint16.
        let id = algorithm.rawValue
        var context: [UInt8] = [0x00, 0x00, UInt8(id >> 8), UInt8(id & 0xff), 0x00]
        let c2s = export(label: Self.ntsLabel, context: context, length: algorithm.keyLength)
        context[4] = 0x01
        let s2c = export(label: Self.ntsLabel, context: context, length: algorithm.keyLength)
        return (c2s, s2c)
    }

    /// RFC 8446 §7.5 with the hash `H`.
    private static func export<H: HashFunction>(
        _: H.Type, _ secret: [UInt8], _ label: String, _ context: [UInt8], _ length: Int
    ) -> [UInt8] {
        let emptyHash = Array(H.hash(data: [UInt8]()))
        let derived = expandLabel(H.self, secret: secret, label: Array(label.utf8), context: emptyHash, length: H.Digest.byteCount)
        let contextHash = Array(H.hash(data: context))
        return expandLabel(H.self, secret: derived, label: Array("exporter".utf8), context: contextHash, length: length)
    }

    /// `HKDF-Expand-Label(Secret, Label, Context, Length)` (RFC 8446 §7.1): HKDF-Expand with
    /// the info `HkdfLabel`, that is uint16 length ‖ opaque label<7..255> ("tls13 " + Label) ‖
    /// opaque context<0..255>.
    private static func expandLabel<H: HashFunction>(
        _: H.Type, secret: [UInt8], label: [UInt8], context: [UInt8], length: Int
    ) -> [UInt8] {
        let fullLabel = Array("tls13 ".utf8) + label
        precondition(fullLabel.count <= 255, "TLS 1.3 labels are at most 249 bytes after \"tls13 \"")
        precondition(context.count <= 255, "HkdfLabel contexts are at most 255 bytes")
        precondition(length >= 0 && length <= min(255 * H.Digest.byteCount, 0xffff), "HKDF-Expand length out of range")
        var info: [UInt8] = []
        info.reserveCapacity(2 + 1 + fullLabel.count + 1 + context.count)
        info.append(UInt8(length >> 8))
        info.append(UInt8(length & 0xff))
        info.append(UInt8(fullLabel.count))
        info.append(contentsOf: fullLabel)
        info.append(UInt8(context.count))
        info.append(contentsOf: context)
        let key = HKDF<H>.expand(pseudoRandomKey: secret, info: info, outputByteCount: length)
        return key.withUnsafeBytes { Array($0) }
    }
}

extension TLSExporter: CustomStringConvertible {
    /// Names the hash and the connection, never the secret, so logging an exporter cannot leak
    /// the keys of a session.
    package var description: String {
        let random = clientRandom.prefix(8).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return "TLSExporter(\(hash), client random \(random.isEmpty ? "unknown" : random + "…"))"
    }
}

/// Bytes from an even-length string of hex digits, either case, or nil.
private func hexBytes(_ hex: Substring) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    var index = 0
    while index < digits.count {
        guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
        index += 2
    }
    return bytes
}

/// The value of one ASCII hex digit, or nil.
private func hexValue(_ digit: UInt8) -> UInt8? {
    switch digit {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
    default: return nil
    }
}
