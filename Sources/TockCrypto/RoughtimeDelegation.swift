import Foundation
import TockProtocol

/// An online key and the certificate delegating to it (RFC 10049 §5.2.6), with the long-term
/// public key that signed it.
///
/// tockd makes one in memory from the long-term seed and renews it; `tock roughtime delegate`
/// makes one offline, with the same `sign`, and writes it to a file (`fileText`) that tockd
/// serves with `--roughtime-delegation`, so the long-term key never has to be on the server.
package struct RoughtimeDelegation: Sendable, Hashable {
    /// The long-term public key that signed `certificate`: the key clients trust.
    package let longTermPublicKey: [UInt8]
    /// The online key's 32-byte Ed25519 seed, which signs SREP.
    package let onlineSeed: [UInt8]
    /// CERT: {SIG, DELE {PUBK, MINT, MAXT}}, as copied into every reply.
    package let certificate: RoughtimeCertificate

    /// Why a delegation cannot be made, read or served; `description` says what to do.
    package struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        /// What is wrong and what to do.
        package var description: String

        /// A problem described as `description`.
        package init(_ description: String) { self.description = description }
    }

    /// The first line a delegation file must carry (after comments), naming its format.
    package static let fileFormat = "tock-roughtime-delegation-1"

    /// The online public key, DELE's PUBK.
    package var onlinePublicKey: [UInt8] { certificate.onlinePublicKey }

    /// A fresh random online key, delegated `minimumTime`…`maximumTime` (Unix seconds) by the
    /// long-term key whose seed is `longTermSeed`: DELE {PUBK, MINT, MAXT} signed under the
    /// RFC's delegation context (§5.2.6). The server's renewal and `tock roughtime delegate`
    /// both make delegations here.
    package static func sign(longTermSeed: [UInt8], minimumTime: UInt64, maximumTime: UInt64) throws(Problem) -> RoughtimeDelegation {
        var longTerm: RoughtimeEd25519Signer
        do { longTerm = try RoughtimeEd25519Signer(seed: longTermSeed) } catch { throw Problem("the Roughtime key seed is not 32 bytes") }
        let online = RoughtimeEd25519Signer()
        do throws(RoughtimeCertificate.Problem) {
            let certificate = try RoughtimeCertificate(onlinePublicKey: online.publicKey, minimumTime: minimumTime, maximumTime: maximumTime, longTermSigner: &longTerm)
            return RoughtimeDelegation(longTermPublicKey: longTerm.publicKey, onlineSeed: online.seed, certificate: certificate)
        } catch {
            throw Problem(error == .emptyValidity ? "MAXT (\(maximumTime)) is before MINT (\(minimumTime))" : "could not sign the Roughtime delegation: \(error)")
        }
    }

    private init(longTermPublicKey: [UInt8], onlineSeed: [UInt8], certificate: RoughtimeCertificate) {
        self.longTermPublicKey = longTermPublicKey
        self.onlineSeed = onlineSeed
        self.certificate = certificate
    }

    // MARK: - The file

    /// The delegation as a file: `key: value` lines (base64 for bytes, decimal Unix seconds for
    /// times) after `#` comments that say what it is and when it is valid. The file holds the
    /// online private key, so it is a secret: write it mode 600.
    package var fileText: String {
        """
        # Roughtime delegation (RFC 10049 §5.2.6), made by: tock roughtime delegate
        # SECRET: holds the online private key; keep it mode 600. Serve it with:
        #   tockd --roughtime-delegation FILE
        # Valid from \(Self.iso(certificate.minimumTime)) (MINT) to \(Self.iso(certificate.maximumTime)) (MAXT).
        format: \(Self.fileFormat)
        long-term-public-key: \(RoughtimeKeyText.base64(longTermPublicKey))
        online-private-key: \(RoughtimeKeyText.base64(onlineSeed))
        mint: \(certificate.minimumTime)
        maxt: \(certificate.maximumTime)
        certificate: \(RoughtimeKeyText.base64(certificate.bytes))

        """
    }

    /// Reads a delegation file's contents (`fileText`) and checks it: every key once, no other
    /// key, the certificate delegating to the file's online key for its MINT and MAXT, and its
    /// signature valid under the file's long-term public key. Time is not checked here
    /// (`check(atUnixSeconds:)`).
    package init(fileContents bytes: [UInt8]) throws(Problem) {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Problem("not UTF-8 text") }
        var fields: [String: (value: String, line: Int)] = [:]
        let keys = ["format", "long-term-public-key", "online-private-key", "mint", "maxt", "certificate"]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else { throw Problem("line \(index + 1): not a 'key: value' line") }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard keys.contains(key) else { throw Problem("line \(index + 1): unknown key '\(key)'") }
            guard fields[key] == nil else { throw Problem("line \(index + 1): '\(key)' given twice") }
            fields[key] = (value, index + 1)
        }
        if let missing = keys.first(where: { fields[$0] == nil }) {
            throw Problem("no '\(missing)' line: not a delegation written by tock roughtime delegate")
        }
        func field(_ key: String) -> (value: String, line: Int) { fields[key]! }
        guard field("format").value == Self.fileFormat else {
            throw Problem("line \(field("format").line): format '\(field("format").value)' is not \(Self.fileFormat)")
        }
        func key32(_ name: String) throws(Problem) -> [UInt8] {
            guard let bytes = RoughtimeKeyText.decode(field(name).value) else {
                throw Problem("line \(field(name).line): \(name) is not 32 bytes in base64 (or hex)")
            }
            return bytes
        }
        func time(_ name: String) throws(Problem) -> UInt64 {
            guard let value = UInt64(field(name).value) else { throw Problem("line \(field(name).line): \(name) is not Unix seconds") }
            return value
        }
        let longTermPublicKey = try key32("long-term-public-key")
        let onlineSeed = try key32("online-private-key")
        let mint = try time("mint")
        let maxt = try time("maxt")
        guard let certificateBytes = Data(base64Encoded: field("certificate").value).map(Array.init) else {
            throw Problem("line \(field("certificate").line): certificate is not base64")
        }
        let certificate: RoughtimeCertificate
        do { certificate = try RoughtimeCertificate(parsing: certificateBytes) } catch {
            throw Problem("line \(field("certificate").line): certificate is not a CERT message {SIG, DELE {PUBK, MINT, MAXT}} (\(error))")
        }
        let online: RoughtimeEd25519Signer
        do { online = try RoughtimeEd25519Signer(seed: onlineSeed) } catch { throw Problem("online-private-key is not an Ed25519 seed") }
        guard certificate.onlinePublicKey == online.publicKey else {
            throw Problem("the certificate delegates to another online key than online-private-key: the lines come from different delegations")
        }
        guard certificate.minimumTime == mint, certificate.maximumTime == maxt else {
            throw Problem("mint and maxt (\(mint), \(maxt)) are not the certificate's MINT and MAXT (\(certificate.minimumTime), \(certificate.maximumTime))")
        }
        guard certificate.isSigned(by: longTermPublicKey, verifier: RoughtimeEd25519Verifier()) else {
            throw Problem("the certificate's signature does not verify under the long-term public key \(RoughtimeKeyText.base64(longTermPublicKey)): the file was altered or its lines come from different delegations; sign a new one with: tock roughtime delegate")
        }
        self.init(longTermPublicKey: longTermPublicKey, onlineSeed: onlineSeed, certificate: certificate)
    }

    /// Reads and checks the delegation file at `path` (`init(fileContents:)`), which only its
    /// owner may read (`SecretFile`); messages name the file.
    package static func read(path: String) throws(Problem) -> RoughtimeDelegation {
        let bytes: [UInt8]
        do {
            bytes = try SecretFile.read(path, name: "Roughtime delegation file", limit: 16384,
                                        missingHint: "make one with: tock roughtime delegate --key LONG_TERM_SEED_FILE --out \(path)")
        } catch {
            throw Problem(error.description)
        }
        do {
            return try RoughtimeDelegation(fileContents: bytes)
        } catch {
            throw Problem("Roughtime delegation file \(path): \(error.description)")
        }
    }

    /// Whether the delegation can be served at `now`: MINT ≤ now ≤ MAXT (§5.2.6); a reply
    /// outside would be rejected by every client (§5.4). `path` names the file in the message.
    package func check(atUnixSeconds now: Int64, path: String) throws(Problem) {
        switch certificate.status(atUnixSeconds: now) {
        case .valid:
            return
        case .expired(let ago):
            throw Problem("Roughtime delegation file \(path) expired at \(Self.iso(certificate.maximumTime)) (MAXT), \(Self.span(ago)) ago; sign a new one with: tock roughtime delegate --key LONG_TERM_SEED_FILE --out \(path) --force")
        case .notYetValid(let wait):
            throw Problem("Roughtime delegation file \(path) is not valid before \(Self.iso(certificate.minimumTime)) (MINT), \(Self.span(wait)) from now; sign one valid now, or wait")
        }
    }

    /// Under this much validity left, an offline delegation is worth a warning (in tockd's log
    /// and in `tock status`): time to sign the next one.
    package static let warnBelowSeconds: Int64 = 3 * 86400

    /// A Unix time as ISO 8601 UTC.
    package static func iso(_ unixSeconds: UInt64) -> String {
        CivilTime(UTCInstant(secondsSinceUnixEpoch: Int64(clamping: unixSeconds)), utcOffsetSeconds: 0).iso8601()
    }

    /// A span of seconds for a person: `42 s`, `5 min`, `3 h 20 min`, `29 d 23 h`.
    package static func span(_ seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }
}
