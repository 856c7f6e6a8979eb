import Atomics
import Logging
import NIOConcurrencyHelpers
import TockCrypto
import TockProtocol
import TockSockets

/// How the online key made in memory is delegated and renewed (RFC 10049 §5.2.6).
///
/// Not a setting: the defaults are what tockd runs with; tests shorten them to watch a renewal
/// while the server answers.
package struct RoughtimeRenewal: Sendable, Hashable {
    /// How long before its creation a delegation starts (MINT = now − 6 h), so a delegation
    /// made just after a small clock step back still covers the time.
    package var validBefore: Int64 = 6 * 3600
    /// How long after its creation a delegation ends (MAXT = now + 18 h).
    package var validAfter: Int64 = 18 * 3600
    /// Renew when less than this remains before MAXT.
    package var renewBefore: Int64 = 3 * 3600
    /// How often the renewal is considered.
    package var checkInterval: Duration = .seconds(60)

    /// The defaults: MINT = now − 6 h, MAXT = now + 18 h, renewed when under 3 h remain,
    /// checked every minute.
    package init() {}

    /// A renewal with these figures (seconds).
    package init(validBefore: Int64, validAfter: Int64, renewBefore: Int64, checkInterval: Duration) {
        self.validBefore = validBefore
        self.validAfter = validAfter
        self.renewBefore = renewBefore
        self.checkInterval = checkInterval
    }
}

/// A delegation signed offline (`tock roughtime delegate`) and the file it was read from, which
/// a reload (SIGHUP) reads again.
package struct RoughtimeDelegationFile: Sendable, Hashable {
    /// The file.
    package var path: String
    /// Its contents as read and checked at start.
    package var delegation: RoughtimeDelegation

    /// The delegation read from `path`.
    package init(path: String, delegation: RoughtimeDelegation) {
        self.path = path
        self.delegation = delegation
    }
}

/// A Roughtime server's keys (RFC 10049 §5.2.6, §6): the long-term public key clients trust,
/// and the current online key with the certificate that delegates to it.
///
/// The delegation comes from one of two places. With the long-term seed, the online key is made
/// at start and replaced (a new key and a new CERT) when less than `renewBefore` of its validity
/// remains. With a delegation file, signed offline so the long-term key never sits on the
/// server, the file's online key serves until a reload replaces it; once MAXT passes the
/// server stays silent (`RoughtimeServer.receive`). The delegation sits in a `VersionedCell`:
/// workers copy it when its version moves, so the packet path never locks.
package final class RoughtimeKeyCell: Sendable {
    /// Under this much validity left, an offline delegation is worth a warning in the log.
    package static let warnBelowSeconds = RoughtimeDelegation.warnBelowSeconds

    /// The long-term public key clients trust.
    package let longTermPublicKey: [UInt8]
    /// SRV for the long-term key: H(0xff ‖ key) (§5.1.4).
    package let srv: [UInt8]
    private let source: Source
    /// The delegation served, which workers copy when its version moves.
    let cell: VersionedCell<RoughtimeDelegation>

    /// Where the delegation comes from.
    private enum Source: Sendable {
        /// Made here from the long-term seed, and renewed.
        case renewed(longTermSeed: [UInt8], RoughtimeRenewal)
        /// Signed offline, read from this file.
        case file(String)
    }

    /// Why keys could not be set up or reloaded.
    package struct KeyError: Error, Sendable, CustomStringConvertible {
        /// What is wrong and what to do.
        package var description: String
    }

    /// Keys for the long-term key whose seed is `longTermSeed` (32 bytes), with an online key
    /// delegated from `now` and renewed as `renewal` says.
    package init(longTermSeed: [UInt8], renewal: RoughtimeRenewal = RoughtimeRenewal(), now: UTCInstant) throws(KeyError) {
        let first = try Self.delegate(longTermSeed: longTermSeed, renewal: renewal, now: now)
        self.source = .renewed(longTermSeed: longTermSeed, renewal)
        self.longTermPublicKey = first.longTermPublicKey
        var hasher = RoughtimeSHA512()
        self.srv = hasher.srv(forLongTermKey: first.longTermPublicKey)
        self.cell = VersionedCell(first)
    }

    /// Keys serving an offline delegation, read (and checked) from `file.path`.
    package init(file: RoughtimeDelegationFile) {
        self.source = .file(file.path)
        self.longTermPublicKey = file.delegation.longTermPublicKey
        var hasher = RoughtimeSHA512()
        self.srv = hasher.srv(forLongTermKey: file.delegation.longTermPublicKey)
        self.cell = VersionedCell(file.delegation)
    }

    /// A fresh online key and its certificate, valid from `now` − `validBefore` to `now` +
    /// `validAfter`.
    private static func delegate(longTermSeed: [UInt8], renewal: RoughtimeRenewal, now: UTCInstant) throws(KeyError) -> RoughtimeDelegation {
        let seconds = now.secondsSinceUnixEpoch
        do throws(RoughtimeDelegation.Problem) {
            return try RoughtimeDelegation.sign(
                longTermSeed: longTermSeed, minimumTime: UInt64(max(0, seconds - renewal.validBefore)),
                maximumTime: UInt64(max(0, seconds + renewal.validAfter))
            )
        } catch {
            throw KeyError(description: error.description)
        }
    }

    /// The delegation file served, or nil when the online key is made here.
    package var delegationFile: String? {
        if case .file(let path) = source { return path }
        return nil
    }

    /// How often the key service looks at the delegation.
    var checkInterval: Duration {
        if case .renewed(_, let renewal) = source { return renewal.checkInterval }
        return .seconds(60)
    }

    /// With the long-term seed, replaces the online key when less than `renewBefore` remains of
    /// its delegation at `now` (or `now` lies before MINT, after a clock step back). Returns
    /// whether it did; an offline delegation is never renewed here.
    @discardableResult
    package func renewIfNeeded(now: UTCInstant) -> Bool {
        guard case .renewed(let seed, let renewal) = source else { return false }
        let seconds = now.secondsSinceUnixEpoch
        let certificate = read().key.certificate
        let remaining = Int64(certificate.maximumTime) - seconds
        guard remaining < renewal.renewBefore || seconds < Int64(certificate.minimumTime) else { return false }
        guard let fresh = try? Self.delegate(longTermSeed: seed, renewal: renewal, now: now) else { return false }
        publish(fresh)
        return true
    }

    /// Reads the delegation file again (a reload) and, if it is valid at `now` and signed by the
    /// same long-term key, serves it from the workers' next batch. On any problem the running
    /// delegation stays, and the error says why. Returns the delegation now served, or nil when
    /// the online key is made here (nothing to read).
    package func reloadFile(now: UTCInstant) throws(KeyError) -> RoughtimeDelegation? {
        guard case .file(let path) = source else { return nil }
        let fresh: RoughtimeDelegation
        do throws(RoughtimeDelegation.Problem) {
            fresh = try RoughtimeDelegation.read(path: path)
            try fresh.check(atUnixSeconds: now.secondsSinceUnixEpoch, path: path)
        } catch {
            throw KeyError(description: error.description)
        }
        guard fresh.longTermPublicKey == longTermPublicKey else {
            throw KeyError(description: "Roughtime delegation file \(path) is signed by the long-term key \(RoughtimeKeyText.base64(fresh.longTermPublicKey)), not by the running one, \(RoughtimeKeyText.base64(longTermPublicKey)), which clients know this server by: restart tockd to change the long-term key")
        }
        if fresh != read().key { publish(fresh) }
        return fresh
    }

    /// Makes `fresh` the delegation the workers take at their next batch.
    private func publish(_ fresh: RoughtimeDelegation) {
        cell.publish(fresh)
    }

    /// The current delegation and the version it belongs to.
    package func read() -> (key: RoughtimeDelegation, version: UInt64) {
        let (key, version) = cell.read()
        return (key, version)
    }

    /// The current delegation.
    package var delegation: RoughtimeDelegation { read().key }

    /// Log metadata describing the delegation served at `now`.
    /// Where the delegation comes from, as `/status` and the metrics label it: "renewed"
    /// (made in memory from the long-term key) or "file" (signed offline).
    package var sourceName: String { delegationFile == nil ? "renewed" : "file" }

    /// The delegation now served, for the log.
    package func metadata(now: UTCInstant) -> Logger.Metadata {
        let certificate = delegation.certificate
        var metadata: Logger.Metadata = [
            "source": "\(sourceName)",
            "long_term_public_key": "\(RoughtimeKeyText.base64(longTermPublicKey))",
            "online_public_key": "\(RoughtimeKeyText.base64(certificate.onlinePublicKey))",
            "mint": "\(RoughtimeDelegation.iso(certificate.minimumTime))",
            "maxt": "\(RoughtimeDelegation.iso(certificate.maximumTime))",
        ]
        if let path = delegationFile { metadata["path"] = "\(path)" }
        if case .valid(let remaining) = certificate.status(atUnixSeconds: now.secondsSinceUnixEpoch) {
            metadata["remaining"] = "\(RoughtimeDelegation.span(remaining))"
        }
        return metadata
    }
}

/// Keeps the Roughtime delegation current while the server runs: renews the online key made
/// in memory before it runs out, and for an offline delegation says in the log, once each, when
/// under 3 days remain and when it expired (the server is then silent until a reload).
struct RoughtimeKeyService: Sendable {
    let keys: RoughtimeKeyCell
    let logger: Logger

    /// Runs until cancelled.
    func run() async {
        var warned: (version: UInt64, soon: Bool, expired: Bool) = (0, false, false)
        while !Task.isCancelled {
            let now = SystemClock.now()
            if keys.delegationFile == nil {
                if keys.renewIfNeeded(now: now) {
                    logger.debug("Roughtime online key renewed", metadata: keys.metadata(now: now))
                }
                try? await Task.sleep(for: keys.checkInterval)
                continue
            }
            let (delegation, version) = keys.read()
            if version != warned.version { warned = (version, false, false) }
            switch delegation.certificate.status(atUnixSeconds: now.secondsSinceUnixEpoch) {
            case .valid(let remaining) where remaining < RoughtimeKeyCell.warnBelowSeconds && !warned.soon:
                warned.soon = true
                logger.warning("the Roughtime delegation expires in \(RoughtimeDelegation.span(remaining)): sign a new one (tock roughtime delegate) and reload (SIGHUP)", metadata: keys.metadata(now: now))
            case .expired where !warned.expired:
                warned.expired = true
                logger.error("the Roughtime delegation expired: Roughtime is not answering until a new delegation is loaded (tock roughtime delegate, then SIGHUP)", metadata: keys.metadata(now: now))
            default:
                break
            }
            try? await Task.sleep(for: keys.checkInterval)
        }
    }
}
