import Glibc
import NIOConcurrencyHelpers
import TockCrypto
import TockProtocol
import TockSockets

/// The server's cookie keys (RFC 8915 §6): one per rotation period, derived from a master
/// secret, so that servers sharing the master (a fleet behind anycast or DNS, a KE host handing
/// out cookies for NTP hosts) read each other's cookies without talking to each other.
///
/// A period's key id is the number of whole periods since the Unix epoch: every server that
/// agrees on the master and the period length computes the same id and key at the same time.
/// Cookies are sealed under the current period's key; the previous `keptPeriods` and the next
/// one (for a fleet member whose clock runs a little ahead) still open, so rotation never
/// strands a client, and a key rotated out makes its cookies fail (the client gets an NTS NAK
/// and runs NTS-KE again).
package struct NTSCookieKeys: Sendable {
    /// The master secret: from a key file, or random for a server on its own.
    let master: [UInt8]
    /// Seconds per period. Default one day, as chrony rotates.
    package let periodSeconds: Int64
    /// Previous periods whose cookies still open. Default 7: a client that slept a week keeps
    /// its cookies.
    package let keptPeriods: Int

    /// The shortest master accepted: 32 bytes, the strength of the cookie AEAD's key.
    package static let minimumMasterLength = 32

    /// Keys from `master`.
    package init(master: [UInt8], periodSeconds: Int64 = NTSServerConfiguration.defaultKeyPeriodSeconds, keptPeriods: Int = NTSServerConfiguration.defaultKeptKeyPeriods) {
        precondition(master.count >= Self.minimumMasterLength && periodSeconds > 0 && keptPeriods >= 0)
        self.master = master
        self.periodSeconds = periodSeconds
        self.keptPeriods = keptPeriods
    }

    /// Keys from a fresh random master (a single server: its cookies die with the process).
    package static func random(periodSeconds: Int64 = NTSServerConfiguration.defaultKeyPeriodSeconds, keptPeriods: Int = NTSServerConfiguration.defaultKeptKeyPeriods) -> NTSCookieKeys {
        var generator = SystemRandomNumberGenerator()
        return NTSCookieKeys(master: (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }, periodSeconds: periodSeconds, keptPeriods: keptPeriods)
    }

    /// Why a key file cannot be used.
    package struct KeyFileError: Error, Sendable, CustomStringConvertible {
        /// What is wrong and what to do.
        package var description: String
    }

    /// Reads a master secret from `path`: at least 32 bytes, readable by its owner only (like
    /// roughtimed's key file: a secret others can read is no secret). The file's bytes are the
    /// secret, whatever they are (e.g. `head -c 32 /dev/urandom`, or a Kubernetes Secret).
    package static func readMaster(path: String) throws(KeyFileError) -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try SecretFile.read(path, name: "NTS key file", limit: 4096) } catch { throw KeyFileError(description: error.description) }
        guard bytes.count >= minimumMasterLength else {
            throw KeyFileError(description: "NTS key file \(path) holds \(bytes.count) bytes; it needs at least \(minimumMasterLength) random bytes: head -c 32 /dev/urandom > \(path)")
        }
        return bytes
    }

    /// The id of the period containing `unixSeconds`.
    package func keyID(atUnixSeconds unixSeconds: Int64) -> UInt32 {
        UInt32(truncatingIfNeeded: unixSeconds / periodSeconds)
    }

    /// The key of period `id`.
    package func key(id: UInt32) -> [UInt8] {
        cookieKey(master: master, keyID: id)
    }
}

/// A worker thread's NTS cryptography: the cookie keys of the periods that open, keyed once
/// per period, and a context re-keyed per packet with the session's C2S or S2C key. Nothing
/// per packet allocates.
///
/// `@unchecked Sendable`: the nettle contexts are mutable and unsynchronised, and are safe
/// because one value is confined to the worker thread that uses it: it is built before the
/// thread starts, handed to it with the responder, and never touched by any other thread.
package final class NTSPacketCrypto: NTSServerCrypto, @unchecked Sendable {
    let keys: NTSCookieKeys
    /// Ring of keyed cookie contexts, indexed by key id modulo its size (allocated once;
    /// noncopyable contexts live in place).
    private let ring: UnsafeMutablePointer<AESSIVCMAC>
    private var ringIDs: [UInt32?]
    /// The period cookies are sealed in.
    private(set) var currentID: UInt32 = 0
    private var session = AESSIVCMAC()
    private var random = FastRandom()
    private static let ringSize = 16

    /// Cookie layout: key id (4), nonce (16), then AES-SIV of C2S ‖ S2C (16-byte tag first).
    static let cookieOverhead = 4 + 16 + AESSIVCMAC.tagLength

    /// Contexts for `keys`, keyed for `now`.
    package init(keys: NTSCookieKeys, now: Int64) {
        precondition(keys.keptPeriods + 2 <= Self.ringSize, "at most \(Self.ringSize - 2) kept periods")
        self.keys = keys
        ring = .allocate(capacity: Self.ringSize)
        for i in 0..<Self.ringSize { (ring + i).initialize(to: AESSIVCMAC()) }
        ringIDs = [UInt32?](repeating: nil, count: Self.ringSize)
        refresh(unixSeconds: now)
    }

    deinit {
        ring.deinitialize(count: Self.ringSize)
        ring.deallocate()
    }

    /// Keys the contexts of the periods that open at `unixSeconds`: the current one, the
    /// kept previous ones and the next. Cheap when nothing changed (the common case, once per
    /// batch); derives keys (which allocates) only when a period begins.
    @inline(__always)
    package func refresh(unixSeconds: Int64) {
        let id = keys.keyID(atUnixSeconds: unixSeconds)
        guard id != currentID || ringIDs[Int(id % UInt32(Self.ringSize))] != id else { return }
        currentID = id
        let first = id &- UInt32(keys.keptPeriods)
        for offset in 0...UInt32(keys.keptPeriods + 1) {
            let keyID = first &+ offset
            let slot = Int(keyID % UInt32(Self.ringSize))
            guard ringIDs[slot] != keyID else { continue }
            let key = keys.key(id: keyID)
            key.withUnsafeBytes { (ring + slot).pointee.setKey($0) }
            ringIDs[slot] = keyID
        }
    }

    package func cookieLength(for algorithm: NTSAEADAlgorithm) -> Int {
        Self.cookieOverhead + 2 * algorithm.keyLength
    }

    package func openCookie(_ cookie: UnsafeRawBufferPointer, keys: UnsafeMutableRawBufferPointer) -> NTSAEADAlgorithm? {
        guard cookie.count > Self.cookieOverhead, let algorithm = NTSAEADAlgorithm(keyLength: (cookie.count - Self.cookieOverhead) / 2),
              cookie.count == cookieLength(for: algorithm), keys.count >= 2 * algorithm.keyLength
        else { return nil }
        let id = NTPWire.load32(cookie, 0)
        // Only the periods that open: the current, the kept ones, the next.
        let age = currentID &- id
        guard age <= UInt32(self.keys.keptPeriods) || id == currentID &+ 1 else { return nil }
        let slot = Int(id % UInt32(Self.ringSize))
        guard ringIDs[slot] == id else { return nil }
        return (ring + slot).pointee.open(
            nonce: UnsafeRawBufferPointer(rebasing: cookie[4..<20]),
            associatedData: UnsafeRawBufferPointer(rebasing: cookie[0..<4]),
            ciphertext: UnsafeRawBufferPointer(rebasing: cookie[20...]),
            into: UnsafeMutableRawBufferPointer(rebasing: keys[0..<(2 * algorithm.keyLength)])
        ) ? algorithm : nil
    }

    package func sealCookie(algorithm: NTSAEADAlgorithm, keys: UnsafeRawBufferPointer, into cookie: UnsafeMutableRawBufferPointer) -> Int {
        let length = cookieLength(for: algorithm)
        precondition(cookie.count >= length && keys.count == 2 * algorithm.keyLength)
        NTPWire.store32(currentID, cookie, 0)
        NTPWire.store64(random.next(), cookie, 4)
        NTPWire.store64(random.next(), cookie, 12)
        let slot = Int(currentID % UInt32(Self.ringSize))
        return 20 + (ring + slot).pointee.seal(
            nonce: UnsafeRawBufferPointer(rebasing: cookie[4..<20]),
            associatedData: UnsafeRawBufferPointer(rebasing: cookie[0..<4]),
            plaintext: keys,
            into: UnsafeMutableRawBufferPointer(rebasing: cookie[20..<length])
        )
    }

    package func open(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into plaintext: UnsafeMutableRawBufferPointer) -> Bool {
        guard AESSIVCMAC.Algorithm(keyLength: key.count) != nil else { return false }
        session.setKey(key)
        return session.open(nonce: nonce, associatedData: associatedData, ciphertext: ciphertext, into: plaintext)
    }

    package func seal(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, associatedData: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer, into ciphertext: UnsafeMutableRawBufferPointer) -> Int {
        session.setKey(key)
        return session.seal(nonce: nonce, associatedData: associatedData, plaintext: plaintext, into: ciphertext)
    }

    /// A new cookie for `c2s` ‖ `s2c` (NTS-KE, off the packet path).
    package func makeCookie(algorithm: NTSAEADAlgorithm, c2s: [UInt8], s2c: [UInt8]) -> [UInt8] {
        var cookie = [UInt8](repeating: 0, count: cookieLength(for: algorithm))
        let keys = c2s + s2c
        keys.withUnsafeBytes { k in
            cookie.withUnsafeMutableBytes { _ = sealCookie(algorithm: algorithm, keys: k, into: $0) }
        }
        return cookie
    }
}
