import TockCrypto
import TockProtocol

/// The AEAD of one NTS session (RFC 8915 §5.1, §5.6): AES-SIV-CMAC keyed once with the C2S key
/// for requests and once with the S2C key for replies, so sealing and opening never re-key.
///
/// Not Sendable: the nettle contexts are mutable and unsynchronised. A query uses its own; a
/// load-generator thread makes one per client socket and keeps it to itself.
package final class NTSSessionCipher: NTSClientCipher {
    private let clientToServer: AESSIVCMAC
    private let serverToClient: AESSIVCMAC

    /// Keys for the session: 32 bytes each for AEAD_AES_SIV_CMAC_256, 64 for
    /// AEAD_AES_SIV_CMAC_512 (what `TLSExporter.ntsKeys` derives).
    package init(c2s: [UInt8], s2c: [UInt8]) {
        var clientToServer = AESSIVCMAC()
        c2s.withUnsafeBytes { clientToServer.setKey($0) }
        self.clientToServer = clientToServer
        var serverToClient = AESSIVCMAC()
        s2c.withUnsafeBytes { serverToClient.setKey($0) }
        self.serverToClient = serverToClient
    }

    /// Seals under C2S (a request's Authenticator).
    package func seal(nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int {
        clientToServer.seal(nonce: nonce, associatedData: associatedData, plaintext: plaintext, into: ciphertext)
    }

    /// Opens under S2C (a reply's Authenticator).
    package func open(nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool {
        serverToClient.open(nonce: nonce, associatedData: associatedData, ciphertext: ciphertext, into: plaintext)
    }
}
