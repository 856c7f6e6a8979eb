import Atomics
import Glibc
import NIOConcurrencyHelpers
import TockCrypto
import TockProtocol
import TockSockets

/// A Roughtime server's keys (RFC 10049 §5.2.6, §6): the long-term key, which only signs
/// delegations, and the current online key with the certificate that delegates to it.
///
/// The online key is made at start and replaced (a new key and a new CERT) when less than
/// `renewBefore` of its validity remains. Workers keep a copy and compare `currentVersion`
/// once per batch, like `PolicyCell`: the lock is taken only to copy a new key, so the packet
/// path never locks.
package final class RoughtimeKeyCell: Sendable {
    /// How long before its creation a delegation starts (MINT = now − 6 h), so a client whose
    /// clock is behind still accepts it.
    package static let validBefore: Int64 = 6 * 3600
    /// How long after its creation a delegation ends (MAXT = now + 18 h).
    package static let validAfter: Int64 = 18 * 3600
    /// Renew when less than this remains before MAXT.
    package static let renewBefore: Int64 = 3 * 3600

    /// The long-term public key clients trust.
    package let longTermPublicKey: [UInt8]
    /// SRV for the long-term key: H(0xff ‖ key) (§5.1.4).
    package let srv: [UInt8]
    private let longTermSeed: [UInt8]
    private let version = ManagedAtomic<UInt64>(1)
    private let current: NIOLockedValueBox<RoughtimeOnlineKey>

    /// Why keys could not be set up.
    package struct KeyError: Error, Sendable, CustomStringConvertible {
        /// What is wrong and what to do.
        package var description: String
    }

    /// Keys for the long-term key whose seed is `longTermSeed` (32 bytes), with an online key
    /// delegated from `now`.
    package init(longTermSeed: [UInt8], now: UTCInstant) throws(KeyError) {
        let signer: RoughtimeEd25519Signer
        do { signer = try RoughtimeEd25519Signer(seed: longTermSeed) } catch { throw KeyError(description: "the Roughtime key seed is not 32 bytes") }
        self.longTermSeed = longTermSeed
        self.longTermPublicKey = signer.publicKey
        var hasher = RoughtimeSHA512()
        self.srv = hasher.srv(forLongTermKey: signer.publicKey)
        self.current = NIOLockedValueBox(try Self.delegate(longTermSeed: longTermSeed, now: now))
    }

    /// A fresh online key and its certificate, valid from `now` − 6 h to `now` + 18 h.
    private static func delegate(longTermSeed: [UInt8], now: UTCInstant) throws(KeyError) -> RoughtimeOnlineKey {
        do {
            var longTerm = try RoughtimeEd25519Signer(seed: longTermSeed)
            let online = RoughtimeEd25519Signer()
            let seconds = now.secondsSinceUnixEpoch
            let certificate = try RoughtimeCertificate(
                onlinePublicKey: online.publicKey, minimumTime: UInt64(max(0, seconds - validBefore)),
                maximumTime: UInt64(max(0, seconds + validAfter)), longTermSigner: &longTerm
            )
            return RoughtimeOnlineKey(seed: online.seed, certificate: certificate)
        } catch {
            throw KeyError(description: "could not sign the Roughtime delegation: \(error)")
        }
    }

    /// Replaces the online key when less than `renewBefore` remains of its delegation at
    /// `now` (or `now` lies before MINT, after a clock step back). Returns whether it did.
    @discardableResult
    package func renewIfNeeded(now: UTCInstant) -> Bool {
        let seconds = now.secondsSinceUnixEpoch
        let certificate = read().key.certificate
        let remaining = Int64(certificate.maximumTime) - seconds
        guard remaining < Self.renewBefore || seconds < Int64(certificate.minimumTime) else { return false }
        guard let fresh = try? Self.delegate(longTermSeed: longTermSeed, now: now) else { return false }
        current.withLockedValue { $0 = fresh }
        version.wrappingIncrement(ordering: .releasing)
        return true
    }

    /// The current version; changes whenever the online key does.
    @inline(__always)
    package var currentVersion: UInt64 { version.load(ordering: .acquiring) }

    /// The current online key and the version it belongs to (or an older version, in which
    /// case the reader copies again next time).
    package func read() -> (key: RoughtimeOnlineKey, version: UInt64) {
        let v = version.load(ordering: .acquiring)
        return (current.withLockedValue { $0 }, v)
    }
}

/// An online key (its Ed25519 seed) and the certificate delegating to it.
package struct RoughtimeOnlineKey: Sendable {
    /// The online key's 32-byte seed.
    package var seed: [UInt8]
    /// CERT: the long-term key's signature over DELE {PUBK, MINT, MAXT}.
    package var certificate: RoughtimeCertificate
}

/// Renews the online Roughtime key before its delegation runs out: checks once a minute.
struct RoughtimeKeyService: Sendable {
    let keys: RoughtimeKeyCell

    /// Runs until cancelled.
    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(60))
            keys.renewIfNeeded(now: SystemClock.now())
        }
    }
}
