import Crypto

/// The HKDF info prefix of cookie keys; the key id follows it, big-endian.
private let cookieKeyInfo = Array("tock nts cookie key".utf8)

/// The key that seals NTS cookies (RFC 8915 §6) made in period `keyID`:
/// HKDF-SHA256 (RFC 5869) of `master` with an empty salt and the info
/// "tock nts cookie key" ‖ `keyID` as a big-endian uint32, 32 bytes long, an
/// AEAD_AES_SIV_CMAC_256 key.
///
/// RFC 8915 §6 leaves the cookie format to the server but expects a fleet to share keys, so any
/// server can read a cookie another issued. Deriving each period's key from one master secret
/// gives that without servers talking to each other: those that agree on the master and on
/// which id is current compute the same key, and the id in the cookie tells a receiver which
/// key to derive. An empty salt is HKDF's all-zero salt (RFC 5869 §2.2), fine for a master
/// that is already uniformly random.
package func cookieKey(master: [UInt8], keyID: UInt32) -> [UInt8] {
    var info = cookieKeyInfo
    info.append(UInt8(truncatingIfNeeded: keyID >> 24))
    info.append(UInt8(truncatingIfNeeded: keyID >> 16))
    info.append(UInt8(truncatingIfNeeded: keyID >> 8))
    info.append(UInt8(truncatingIfNeeded: keyID))
    let key = HKDF<SHA256>.deriveKey(
        inputKeyMaterial: SymmetricKey(data: master), salt: [UInt8](), info: info, outputByteCount: 32)
    return key.withUnsafeBytes { Array($0) }
}
