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

    /// Whether the online key may sign `midpoint`: MINT ≤ MIDP ≤ MAXT (§5.2.6).
    public func covers(_ midpoint: UInt64) -> Bool {
        minimumTime <= midpoint && midpoint <= maximumTime
    }
}
