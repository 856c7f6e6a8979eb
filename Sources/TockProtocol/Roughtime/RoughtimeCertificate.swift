/// The certificate a server puts in every reply: the long-term key's delegation to an online
/// key (RFC 10049 §5.2.6).

/// A CERT value: SIG over DELE {PUBK, MINT, MAXT} made by the long-term key (RFC 10049 §5.2.6).
///
/// Made once per online key, when the server starts or rotates keys, and copied into every
/// reply template: the long-term key signs nothing per request, so it can live offline or in
/// a key store, and only the online key, limited to MINT…MAXT, is exposed.
public struct RoughtimeCertificate: Sendable, Hashable {
    /// The CERT value as sent: the message {SIG, DELE}.
    public let bytes: [UInt8]
    /// The online key DELE delegates to (PUBK).
    public let onlinePublicKey: [UInt8]
    /// MINT: the earliest midpoint the online key may sign, in seconds since the Unix epoch.
    public let minimumTime: UInt64
    /// MAXT: the latest midpoint the online key may sign, in seconds since the Unix epoch.
    public let maximumTime: UInt64
    /// The layout and delegation context it was signed for.
    public let dialect: RoughtimeDialect

    /// Why a certificate could not be made.
    public enum Problem: Error, Sendable, Hashable {
        /// MAXT before MINT: no midpoint could ever be signed.
        case emptyValidity
        /// The online public key is not 32 bytes.
        case badPublicKey
        /// The long-term signer failed.
        case signingFailed
    }

    /// Delegates `minimumTime`…`maximumTime` to `onlinePublicKey`: DELE {PUBK, MINT, MAXT},
    /// signed by `longTermSigner` under the dialect's delegation context (§5.2.6).
    public init<Signer: RoughtimeSigner>(
        onlinePublicKey: [UInt8], minimumTime: UInt64, maximumTime: UInt64,
        dialect: RoughtimeDialect = .rfc, longTermSigner: inout Signer
    ) throws(Problem) {
        guard onlinePublicKey.count == RoughtimeWire.publicKeyLength else { throw .badPublicKey }
        guard minimumTime <= maximumTime else { throw .emptyValidity }
        let dele = RoughtimeEncoder.message([
            .PUBK: onlinePublicKey,
            .MINT: RoughtimeEncoder.bytes(minimumTime),
            .MAXT: RoughtimeEncoder.bytes(maximumTime),
        ])
        let signed = dialect.delegationContext + dele
        var signature = [UInt8](repeating: 0, count: RoughtimeWire.signatureLength)
        let ok = signed.withUnsafeBytes { m in signature.withUnsafeMutableBytes { longTermSigner.sign(m, into: $0) } }
        guard ok else { throw .signingFailed }
        self.bytes = RoughtimeEncoder.message([.SIG: signature, .DELE: dele])
        self.onlinePublicKey = onlinePublicKey
        self.minimumTime = minimumTime
        self.maximumTime = maximumTime
        self.dialect = dialect
    }

    /// Reads a CERT value made elsewhere (a delegation signed offline): the message {SIG, DELE}
    /// with DELE {PUBK, MINT, MAXT} (§5.2.6). Checks the structure only; `isSigned(by:verifier:)`
    /// checks the signature and `status(atUnixSeconds:)` the validity.
    public init(parsing bytes: [UInt8], dialect: RoughtimeDialect = .rfc) throws(RoughtimeMessageError) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(RoughtimeMessageError) -> (key: [UInt8], mint: UInt64, maxt: UInt64) in
                let cert = try RoughtimeMessage(validating: raw)
                _ = try cert.required(.SIG, length: RoughtimeWire.signatureLength)
                let dele = try cert.message(.DELE)
                do throws(RoughtimeMessageError) {
                    return (Array(try dele.required(.PUBK, length: RoughtimeWire.publicKeyLength)), try dele.uint64(.MINT), try dele.uint64(.MAXT))
                } catch {
                    throw .nested(.DELE, error)
                }
            }
        }
        let fields = try result.get()
        self.bytes = bytes
        self.onlinePublicKey = fields.key
        self.minimumTime = fields.mint
        self.maximumTime = fields.maxt
        self.dialect = dialect
    }

    /// Whether SIG verifies over DELE under `longTermPublicKey` with the dialect's delegation
    /// context (§5.2.6): what a client checks first (§5.4), so a server checks it before it
    /// serves a certificate it did not sign itself.
    public func isSigned<Verifier: RoughtimeSignatureVerifier>(by longTermPublicKey: [UInt8], verifier: Verifier) -> Bool {
        bytes.withUnsafeBytes { raw in
            guard let cert = try? RoughtimeMessage(validating: raw), let signature = cert.value(of: .SIG), let dele = cert.value(of: .DELE) else {
                return false
            }
            return dialect.isDelegationSigned(signature: signature, delegation: dele, by: longTermPublicKey, verifier: verifier)
        }
    }

    /// Whether the online key may sign `midpoint`: MINT ≤ MIDP ≤ MAXT (§5.2.6).
    public func covers(_ midpoint: UInt64) -> Bool {
        minimumTime <= midpoint && midpoint <= maximumTime
    }

    /// Where `unixSeconds` lies against MINT…MAXT: a server serves only inside, since clients
    /// reject a midpoint outside (§5.4).
    public func status(atUnixSeconds unixSeconds: Int64) -> RoughtimeDelegationStatus {
        let now = max(0, unixSeconds)
        let mint = Int64(clamping: minimumTime)
        let maxt = Int64(clamping: maximumTime)
        if now < mint { return .notYetValid(startsInSeconds: mint - now) }
        if now > maxt { return .expired(secondsAgo: now - maxt) }
        return .valid(remainingSeconds: maxt - now)
    }
}

/// Where a time lies against a delegation's MINT…MAXT (RFC 10049 §5.2.6).
public enum RoughtimeDelegationStatus: Sendable, Hashable {
    /// Before MINT, by this many seconds.
    case notYetValid(startsInSeconds: Int64)
    /// Within MINT…MAXT, with this many seconds until MAXT.
    case valid(remainingSeconds: Int64)
    /// After MAXT, by this many seconds.
    case expired(secondsAgo: Int64)
}
