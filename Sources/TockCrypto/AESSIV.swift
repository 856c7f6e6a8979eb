#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CNettle

/// AES-SIV-CMAC (RFC 5297) over nettle, the AEAD that protects NTP packets under NTS
/// (RFC 8915 §5.6), with caller-owned buffers so the per-packet path allocates nothing.
///
/// nettle is what chrony uses for the same job. The value owns one block of memory, allocated
/// when it is made, large enough for either variant's keyed context; `setKey` fills it and
/// `seal`/`open` only read it, so neither allocates nor copies the key schedule.
///
/// nettle's message API takes exactly one associated-data string and one nonce and feeds S2V
/// (RFC 5297 §2.4) the associated data first, then the nonce, then the plaintext, which is the
/// shape RFC 8915 §5.6 needs: the associated data is the NTP packet up to the NTS Authenticator
/// and Encrypted Extension Fields field, and the nonce is that field's nonce.
///
/// Not `Sendable`: give each thread its own (the keyed context is a few hundred bytes), or hand
/// one over with `sending`; being `~Copyable`, a value is never shared by copy.
package struct AESSIVCMAC: ~Copyable {
    /// An AES-SIV-CMAC variant, numbered as in IANA's AEAD registry (RFC 5116 §6), which is the
    /// number NTS-KE negotiates (RFC 8915 §4.1.5).
    package enum Algorithm: UInt16, Sendable, CaseIterable {
        /// AEAD_AES_SIV_CMAC_256 (RFC 5297 §6.1): two AES-128 keys, 32 bytes; the AEAD every
        /// NTS server must support (RFC 8915 §4.1.5).
        case aesSIVCMAC256 = 15
        /// AEAD_AES_SIV_CMAC_512 (RFC 5297 §6.3): two AES-256 keys, 64 bytes.
        case aesSIVCMAC512 = 17

        /// The key length in bytes (RFC 5297 §6): the CMAC key followed by the CTR key, which
        /// is also the length of the NTS keys exported for this AEAD (RFC 8915 §5.1).
        package var keyLength: Int {
            switch self {
            case .aesSIVCMAC256: return 32
            case .aesSIVCMAC512: return 64
            }
        }

        /// The variant whose key is `keyLength` bytes long, or nil if none is: the key alone
        /// says which variant it is for, as nettle's two key sizes differ.
        package init?(keyLength: Int) {
            switch keyLength {
            case 32: self = .aesSIVCMAC256
            case 64: self = .aesSIVCMAC512
            default: return nil
            }
        }
    }

    /// Length of the synthetic IV, which is also the authentication tag (RFC 5297 §2.6), and
    /// so what `seal` adds to the plaintext's length.
    package static let tagLength = 16

    /// Bytes reserved for the keyed context: the larger of nettle's two context structs.
    private static let contextSize = max(
        MemoryLayout<siv_cmac_aes128_ctx>.size, MemoryLayout<siv_cmac_aes256_ctx>.size)
    /// Alignment for the keyed context: the stricter of the two structs'.
    private static let contextAlignment = max(
        MemoryLayout<siv_cmac_aes128_ctx>.alignment, MemoryLayout<siv_cmac_aes256_ctx>.alignment)

    /// nettle's keyed context, owned by this value: allocated once in `init`, wiped and freed in
    /// `deinit`.
    private let context: UnsafeMutableRawPointer

    /// The variant the current key is for, or nil before the first `setKey`.
    package private(set) var algorithm: Algorithm?

    /// Makes an unkeyed context; call `setKey` before `seal` or `open`.
    ///
    /// The one allocation this type makes happens here, so a server makes one per thread up
    /// front and re-keys it as keys rotate.
    package init() {
        context = UnsafeMutableRawPointer.allocate(
            byteCount: Self.contextSize, alignment: Self.contextAlignment)
        context.initializeMemory(as: UInt8.self, repeating: 0, count: Self.contextSize)
        algorithm = nil
    }

    /// Makes a context keyed with `key`: 32 bytes for AEAD_AES_SIV_CMAC_256, 64 for
    /// AEAD_AES_SIV_CMAC_512 (RFC 5297 §6).
    package init(key: UnsafeRawBufferPointer) {
        self.init()
        setKey(key)
    }

    deinit {
        wipe(context, Self.contextSize)
        context.deallocate()
    }

    /// Keys the context: a 32-byte key selects AEAD_AES_SIV_CMAC_256, a 64-byte key
    /// AEAD_AES_SIV_CMAC_512 (RFC 5297 §6). Any other length is a programming error and traps.
    ///
    /// Keys come from the TLS exporter (RFC 8915 §5.1) or the server's cookie keys, both made
    /// at the AEAD's length, so a wrong length never comes from the network. The old key
    /// schedule is wiped first, so switching to the smaller variant leaves nothing behind.
    package mutating func setKey(_ key: UnsafeRawBufferPointer) {
        guard let algorithm = Algorithm(keyLength: key.count), let keyBytes = key.baseAddress else {
            preconditionFailure("AES-SIV-CMAC keys are 32 or 64 bytes, not \(key.count)")
        }
        wipe(context, Self.contextSize)
        let k = keyBytes.assumingMemoryBound(to: UInt8.self)
        switch algorithm {
        case .aesSIVCMAC256:
            nettle_siv_cmac_aes128_set_key(context.bindMemory(to: siv_cmac_aes128_ctx.self, capacity: 1), k)
        case .aesSIVCMAC512:
            nettle_siv_cmac_aes256_set_key(context.bindMemory(to: siv_cmac_aes256_ctx.self, capacity: 1), k)
        }
        self.algorithm = algorithm
    }

    /// Encrypts and authenticates `plaintext` (RFC 5297 §2.6), writing the 16-byte synthetic IV
    /// followed by the ciphertext into `output`, as RFC 5297 and nettle lay it out; returns the
    /// number of bytes written, `plaintext.count + 16`.
    ///
    /// For NTS (RFC 8915 §5.6) `associatedData` is the packet up to the authenticator field and
    /// `nonce` the field's nonce; both are authenticated, neither is encrypted. Traps on misuse
    /// the caller controls: no key, an empty nonce (nettle requires one), `output` shorter than
    /// the result, or `output` overlapping an input (S2V reads the inputs after output starts).
    package func seal(
        nonce: UnsafeRawBufferPointer,
        associatedData: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) -> Int {
        guard let algorithm else { preconditionFailure("AESSIVCMAC.seal before setKey") }
        let length = plaintext.count + Self.tagLength
        precondition(nonce.count > 0, "AES-SIV-CMAC needs a nonce of at least one byte")
        precondition(output.count >= length, "AES-SIV-CMAC output needs \(length) bytes, has \(output.count)")
        precondition(
            disjoint(output, nonce) && disjoint(output, associatedData) && disjoint(output, plaintext),
            "AES-SIV-CMAC output overlaps an input")
        let dst = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let n = bytes(nonce), a = bytes(associatedData), p = bytes(plaintext)
        switch algorithm {
        case .aesSIVCMAC256:
            nettle_siv_cmac_aes128_encrypt_message(
                context.assumingMemoryBound(to: siv_cmac_aes128_ctx.self),
                nonce.count, n, associatedData.count, a, length, dst, p)
        case .aesSIVCMAC512:
            nettle_siv_cmac_aes256_encrypt_message(
                context.assumingMemoryBound(to: siv_cmac_aes256_ctx.self),
                nonce.count, n, associatedData.count, a, length, dst, p)
        }
        return length
    }

    /// Checks and decrypts `ciphertext` (the 16-byte synthetic IV followed by the encrypted
    /// bytes, RFC 5297 §2.7) into the first `ciphertext.count - 16` bytes of `output`; returns
    /// whether it is authentic.
    ///
    /// A packet's lengths come from the network, so a ciphertext shorter than the tag, an empty
    /// nonce or an `output` too short are answered with false, never a trap. On false the
    /// plaintext bytes written are zeroed, so nothing unauthenticated is left for a caller to
    /// misuse (RFC 5297 §2.7 releases no plaintext on failure). Traps if the key is not set or
    /// `output` overlaps an input, both the caller's own doing.
    package func open(
        nonce: UnsafeRawBufferPointer,
        associatedData: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) -> Bool {
        guard let algorithm else { preconditionFailure("AESSIVCMAC.open before setKey") }
        guard ciphertext.count >= Self.tagLength, nonce.count > 0 else { return false }
        let length = ciphertext.count - Self.tagLength
        guard output.count >= length else { return false }
        precondition(
            disjoint(output, nonce) && disjoint(output, associatedData) && disjoint(output, ciphertext),
            "AES-SIV-CMAC output overlaps an input")
        // An empty plaintext may come with an output buffer that has no address; nettle then
        // writes nothing, and any valid pointer will do.
        let dst = (output.baseAddress ?? context).assumingMemoryBound(to: UInt8.self)
        let n = bytes(nonce), a = bytes(associatedData), c = bytes(ciphertext)
        let authentic: Int32
        switch algorithm {
        case .aesSIVCMAC256:
            authentic = nettle_siv_cmac_aes128_decrypt_message(
                context.assumingMemoryBound(to: siv_cmac_aes128_ctx.self),
                nonce.count, n, associatedData.count, a, length, dst, c)
        case .aesSIVCMAC512:
            authentic = nettle_siv_cmac_aes256_decrypt_message(
                context.assumingMemoryBound(to: siv_cmac_aes256_ctx.self),
                nonce.count, n, associatedData.count, a, length, dst, c)
        }
        if authentic == 0 {
            if length > 0 { wipe(UnsafeMutableRawPointer(dst), length) }
            return false
        }
        return true
    }

    /// The buffer's bytes for nettle: an empty buffer may have no address, and nettle is given
    /// a valid one anyway (the context, of which it reads zero bytes).
    @inline(__always)
    private func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8> {
        UnsafeRawPointer(buffer.baseAddress ?? UnsafeRawPointer(context)).assumingMemoryBound(to: UInt8.self)
    }
}

/// Whether `output` and `input` share no byte: nettle writes its output while it still reads
/// its inputs, so overlapping buffers would silently give wrong results.
@inline(__always)
private func disjoint(_ output: UnsafeMutableRawBufferPointer, _ input: UnsafeRawBufferPointer) -> Bool {
    guard let o = output.baseAddress, let i = input.baseAddress, output.count > 0, input.count > 0 else {
        return true
    }
    let out = UnsafeRawPointer(o)
    return out + output.count <= i || i + input.count <= out
}

/// Overwrites key material with zeros in a way the optimiser may not drop as a dead store.
@inline(__always)
private func wipe(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
    #if canImport(Glibc)
    explicit_bzero(pointer, count)
    #else
    _ = memset_s(pointer, count, 0, count)
    #endif
}
