/// NTS-protected NTPv4 (RFC 8915 §5): the extension fields, the crypto a server needs, and the
/// parsed view of a request's NTS fields. Per packet: no allocation, caller-owned buffers.

/// The NTS extension field types (RFC 8915 §5.3; IANA "NTP Extension Field Types").
public enum NTSExtensionFieldType: UInt16, Sendable, Hashable, CaseIterable {
    /// Random bytes the reply echoes, so a client matches replies to requests (§5.3).
    case uniqueIdentifier = 0x0104
    /// A cookie from NTS-KE or an earlier reply (§5.4).
    case cookie = 0x0204
    /// Asks for one more cookie in the reply; its length is the cookie's (§5.5).
    case cookiePlaceholder = 0x0304
    /// The AEAD nonce and ciphertext; authenticates everything before it (§5.6).
    case authenticator = 0x0404
}

/// The cryptography an NTS server needs per packet: its cookies and the AEAD. Implemented over
/// nettle by the server; the decision (`NTPServer.handle`) only calls it. Every method works
/// in the caller's buffers and must not allocate.
public protocol NTSServerCrypto {
    /// The length of the cookies `sealCookie` writes for `algorithm`.
    func cookieLength(for algorithm: NTSAEADAlgorithm) -> Int

    /// Opens a cookie this server (or its fleet) made: writes the C2S key, then the S2C key,
    /// into `keys` and returns their algorithm; nil for a cookie that is forged, tampered
    /// with, or under a key that has been rotated out.
    mutating func openCookie(_ cookie: UnsafeRawBufferPointer, keys: UnsafeMutableRawBufferPointer) -> NTSAEADAlgorithm?

    /// Seals a new cookie holding `keys` (C2S ‖ S2C of `algorithm`) under the current cookie
    /// key into `cookie` (at least `cookieLength(for:)` bytes); returns its length.
    mutating func sealCookie(algorithm: NTSAEADAlgorithm, keys: UnsafeRawBufferPointer, into cookie: UnsafeMutableRawBufferPointer) -> Int

    /// AEAD decryption with `key` (its length says which algorithm): writes the plaintext
    /// (`ciphertext.count - 16` bytes) and returns whether the tag verified.
    mutating func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool

    /// AEAD encryption with `key`: writes the 16-byte tag then the ciphertext (`plaintext.count
    /// + 16` bytes) and returns that length.
    mutating func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int
}

/// Where the NTS fields of a request lie, found without copying (RFC 8915 §5.7's checks on
/// their presence, number, order and lengths).
public struct NTSRequestFields: Sendable, Hashable {
    /// The Unique Identifier field, whole (type, length, body).
    public var uniqueIdentifier: Range<Int>
    /// The cookie's body.
    public var cookie: Range<Int>
    /// Placeholders of the cookie's length.
    public var placeholders: Int
    /// The Authenticator field's start: the associated data is everything before it.
    public var authenticatorStart: Int
    /// The nonce.
    public var nonce: Range<Int>
    /// The ciphertext (tag first).
    public var ciphertext: Range<Int>

    /// Why a request's NTS fields are unusable.
    public enum Problem: Error, Sendable, Hashable {
        /// No NTS fields at all: a plain NTP request.
        case notNTS
        /// NTS fields that break RFC 8915 §5: missing or repeated fields, the authenticator
        /// not last, lengths that do not add up.
        case malformed
    }

    /// The smallest Unique Identifier body RFC 8915 §5.3 allows.
    public static let minimumUniqueIdentifierLength = 32

    /// Finds the NTS fields in `request`, whose extension fields (from byte 48) are already
    /// validated as RFC 7822 fields (`NTPTrailer`).
    ///
    /// Exactly one Unique Identifier (at least 32 bytes) and one cookie; placeholders exactly
    /// as long as the cookie; exactly one Authenticator, last, whose nonce (at least 16
    /// bytes for SIV, RFC 8915 §5.6) and ciphertext (at least the 16-byte tag) fit its body.
    /// Other extension fields are allowed before the Authenticator and ignored.
    public init(parsing request: UnsafeRawBufferPointer) throws(Problem) {
        var offset = NTPPacket.headerLength
        var uid: Range<Int>?
        var cookie: Range<Int>?
        var cookieFieldLength = 0
        var placeholderLengths = 0
        var placeholders = 0
        var authenticator: (start: Int, nonce: Range<Int>, ciphertext: Range<Int>)?
        var sawNTS = false
        while offset + 4 <= request.count {
            let type = NTPWire.load16(request, offset)
            let length = Int(NTPWire.load16(request, offset + 2))
            guard length >= 4, offset + length <= request.count else { throw .malformed }
            if authenticator != nil { throw .malformed }  // nothing may follow the authenticator
            switch NTSExtensionFieldType(rawValue: type) {
            case .uniqueIdentifier:
                sawNTS = true
                guard uid == nil, length - 4 >= Self.minimumUniqueIdentifierLength else { throw .malformed }
                uid = offset..<(offset + length)
            case .cookie:
                sawNTS = true
                guard cookie == nil, length > 4 else { throw .malformed }
                cookie = (offset + 4)..<(offset + length)
                cookieFieldLength = length
            case .cookiePlaceholder:
                sawNTS = true
                placeholders += 1
                placeholderLengths = placeholderLengths == 0 || placeholderLengths == length ? length : -1
            case .authenticator:
                sawNTS = true
                guard length >= 8 else { throw .malformed }
                let nonceLength = Int(NTPWire.load16(request, offset + 4))
                let ciphertextLength = Int(NTPWire.load16(request, offset + 6))
                let nonceStart = offset + 8
                let ciphertextStart = nonceStart + (nonceLength + 3) & ~3
                guard nonceLength >= 16, ciphertextLength >= 16, ciphertextStart + (ciphertextLength + 3) & ~3 <= offset + length else { throw .malformed }
                authenticator = (offset, nonceStart..<(nonceStart + nonceLength), ciphertextStart..<(ciphertextStart + ciphertextLength))
            case nil:
                break
            }
            offset += length
        }
        guard sawNTS else { throw .notNTS }
        guard offset == request.count, let uid, let cookie, let authenticator else { throw .malformed }
        guard placeholders == 0 || placeholderLengths == cookieFieldLength else { throw .malformed }
        self.uniqueIdentifier = uid
        self.cookie = cookie
        self.placeholders = placeholders
        self.authenticatorStart = authenticator.start
        self.nonce = authenticator.nonce
        self.ciphertext = authenticator.ciphertext
    }
}

/// The layout of an authenticated reply in the server's slot buffer: the reply itself, then,
/// past `NTSReplyScratch.offset` and never sent, the S2C key and the plaintext the transport's
/// final step seals once T3 is stamped (the AEAD covers the transmit timestamp, RFC 8915 §5.6).
public enum NTSReplyScratch {
    /// Where the scratch area starts: past the longest reply (no longer than the longest
    /// request the engine reads).
    public static let offset = 2048
    /// Bytes of scratch: key length (1 byte, padded to 8), keys (2 × 64), plaintext (2048).
    public static let length = 8 + 128 + 2048
    /// The slot size an NTS server needs.
    public static let slotLength = offset + length
    /// Cookies returned per reply at most: one for the cookie used and one per placeholder,
    /// capped at eight as NTS-KE hands out (a request with 64 placeholders is answered with
    /// 8 cookies, and the reply stays shorter than the request).
    public static let maximumCookies = 8
}

/// The crypto of a server without NTS: never instantiated (`handle` passes nil).
public enum NoNTS: NTSServerCrypto {
    /// Unreachable: no value of this type exists.
    public func cookieLength(for algorithm: NTSAEADAlgorithm) -> Int { 0 }
    /// Unreachable: no value of this type exists.
    public mutating func openCookie(_ cookie: UnsafeRawBufferPointer, keys: UnsafeMutableRawBufferPointer) -> NTSAEADAlgorithm? { nil }
    /// Unreachable: no value of this type exists.
    public mutating func sealCookie(algorithm: NTSAEADAlgorithm, keys: UnsafeRawBufferPointer, into cookie: UnsafeMutableRawBufferPointer) -> Int { 0 }
    /// Unreachable: no value of this type exists.
    public mutating func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool { false }
    /// Unreachable: no value of this type exists.
    public mutating func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int { 0 }
}
