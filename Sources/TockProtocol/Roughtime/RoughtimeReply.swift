/// Reading and checking a Roughtime response as a client (RFC 10049 §5.2, §5.4).

/// A parsed response: every field a client checks, as views of the reply's bytes (RFC 10049
/// §5.2). Valid only while those bytes are.
///
/// Parsing checks structure only (tags present, lengths right, nested messages valid);
/// `RoughtimeClient.verify` checks what they say.
public struct RoughtimeReply {
    /// The top-level message.
    public let message: RoughtimeMessage
    /// The reply's version: SREP's VER (§5.2.5), or the top-level VER of draft 11.
    public let version: RoughtimeVersion
    /// The layout the reply was read as: the version's, or for a version this package does not
    /// know, the RFC's if SREP carries VER.
    public let dialect: RoughtimeDialect
    /// SIG: the online key's signature over SREP (§5.2.1).
    public let signature: UnsafeRawBufferPointer
    /// NONC: the nonce echoed (§5.2.2).
    public let nonce: UnsafeRawBufferPointer
    /// TYPE (§5.2.3); nil in draft 11, which has none.
    public let type: UInt32?
    /// PATH: the Merkle siblings (§5.2.4), not yet checked to be whole hashes.
    public let path: UnsafeRawBufferPointer
    /// SREP as signed: the whole value (§5.2.5).
    public let signedResponse: UnsafeRawBufferPointer
    /// RADI, in seconds (§5.2.5).
    public let radius: UInt32
    /// MIDP, in seconds since the Unix epoch (§5.2.5).
    public let midpoint: UInt64
    /// VERS: the server's versions as consecutive uint32s (§5.2.5); nil in draft 11.
    public let supportedVersions: UnsafeRawBufferPointer?
    /// ROOT: the Merkle root (§5.2.5).
    public let root: UnsafeRawBufferPointer
    /// CERT's SIG: the long-term key's signature over DELE (§5.2.6).
    public let delegationSignature: UnsafeRawBufferPointer
    /// DELE as signed: the whole value (§5.2.6).
    public let delegation: UnsafeRawBufferPointer
    /// PUBK: the online key (§5.2.6).
    public let onlinePublicKey: UnsafeRawBufferPointer
    /// MINT, in seconds since the Unix epoch (§5.2.6).
    public let minimumTime: UInt64
    /// MAXT, in seconds since the Unix epoch (§5.2.6).
    public let maximumTime: UInt64
    /// INDX: the request's leaf index (§5.2.7).
    public let index: UInt32

    /// Parses a whole response packet: framing, the seven tags of §5.2 with their lengths, and
    /// the nested SREP, CERT and DELE. Unknown tags are ignored, as clients must (§7).
    public init(packet: UnsafeRawBufferPointer) throws(RoughtimeMessageError) {
        let message = try RoughtimeMessage(packet: packet)
        let srep = try message.message(.SREP)
        let cert = try message.message(.CERT)
        let dele: RoughtimeMessage
        do throws(RoughtimeMessageError) { dele = try cert.message(.DELE) } catch { throw .nested(.CERT, error) }

        let version: UInt32
        let dialect: RoughtimeDialect
        if let inner = srep.value(of: .VER) {
            guard inner.count == 4 else { throw .nested(.SREP, .badValueLength(.VER)) }
            version = RoughtimeWire.load32(inner, 0)
            dialect = RoughtimeVersion(rawValue: version).dialect ?? .rfc
        } else {
            version = try message.uint32(.VER)
            dialect = RoughtimeVersion(rawValue: version).dialect ?? .draft11
        }
        self.message = message
        self.version = RoughtimeVersion(rawValue: version)
        self.dialect = dialect
        signature = try message.required(.SIG, length: RoughtimeWire.signatureLength)
        nonce = try message.required(.NONC, length: RoughtimeWire.hashLength)
        type = dialect == .rfc ? try message.uint32(.TYPE) : nil
        path = try message.required(.PATH)
        index = try message.uint32(.INDX)
        signedResponse = try message.required(.SREP)
        do throws(RoughtimeMessageError) {
            radius = try srep.uint32(.RADI)
            midpoint = try srep.uint64(.MIDP)
            root = try srep.required(.ROOT, length: RoughtimeWire.hashLength)
            if dialect == .rfc {
                let vers = try srep.required(.VERS)
                guard vers.count % 4 == 0 else { throw .badValueLength(.VERS) }
                supportedVersions = vers
            } else {
                supportedVersions = nil
            }
        } catch {
            throw .nested(.SREP, error)
        }
        do throws(RoughtimeMessageError) {
            delegationSignature = try cert.required(.SIG, length: RoughtimeWire.signatureLength)
            delegation = try cert.required(.DELE)
            do throws(RoughtimeMessageError) {
                onlinePublicKey = try dele.required(.PUBK, length: RoughtimeWire.publicKeyLength)
                minimumTime = try dele.uint64(.MINT)
                maximumTime = try dele.uint64(.MAXT)
            } catch {
                throw .nested(.DELE, error)
            }
        } catch {
            throw .nested(.CERT, error)
        }
    }

    /// Whether VERS lists `version` (§5.2.5: it MUST list the reply's version).
    public func lists(_ version: RoughtimeVersion) -> Bool {
        guard let vers = supportedVersions else { return false }
        for i in 0..<(vers.count / 4) where RoughtimeWire.load32(vers, 4 * i) == version.rawValue { return true }
        return false
    }

    /// Whether CERT's signature over DELE verifies under `longTermPublicKey` with the
    /// dialect's delegation context (§5.2.6, §5.4).
    public func isDelegationSigned<Verifier: RoughtimeSignatureVerifier>(by longTermPublicKey: [UInt8], verifier: Verifier) -> Bool {
        dialect.isDelegationSigned(signature: delegationSignature, delegation: delegation, by: longTermPublicKey, verifier: verifier)
    }

    /// Whether SIG over SREP verifies under DELE's PUBK with the response context (§5.2.1,
    /// §5.4).
    public func isResponseSigned<Verifier: RoughtimeSignatureVerifier>(verifier: Verifier) -> Bool {
        let signed = RoughtimeContext.response + Array(signedResponse)
        return signed.withUnsafeBytes { verifier.isValidSignature(signature, for: $0, publicKey: onlinePublicKey) }
    }
}

/// What a verified response says (RFC 10049 §5.2.5).
public struct RoughtimeVerifiedTime: Sendable, Hashable {
    /// MIDP: the server's time of processing, in seconds since the Unix epoch.
    public var midpoint: UInt64
    /// RADI: the true time was within midpoint ± radius seconds when the server answered.
    public var radius: UInt32
    /// The version the server answered in.
    public var version: RoughtimeVersion

    /// A verified time.
    public init(midpoint: UInt64, radius: UInt32, version: RoughtimeVersion) {
        self.midpoint = midpoint
        self.radius = radius
        self.version = version
    }

    /// Whether this response, received before `later`, is consistent with causal order:
    /// MIDP_i − RADI_i ≤ MIDP_j + RADI_j (§8.2). A pair that fails, both validly signed, is
    /// evidence of malfeasance.
    public func isCausallyConsistent(before later: RoughtimeVerifiedTime) -> Bool {
        let (low, underflow) = midpoint.subtractingReportingOverflow(UInt64(radius))
        let (high, overflow) = later.midpoint.addingReportingOverflow(UInt64(later.radius))
        return underflow || overflow || low <= high
    }
}

/// Why a client rejects a response (RFC 10049 §5.4 and the checks around it).
public enum RoughtimeVerificationError: Error, Sendable, Hashable {
    /// The request given is not a request this client could have sent: malformed, or without a
    /// 32-byte NONC or a VER list.
    case badRequest(RoughtimeMessageError)
    /// The reply is not a well-formed response, for this reason.
    case malformedReply(RoughtimeMessageError)
    /// The reply is longer than the request: no conforming server sends it (§9.7).
    case replyLargerThanRequest
    /// TYPE is not 1 (§5.2.3).
    case wrongType
    /// NONC does not echo the request's nonce (§5.2.2).
    case nonceMismatch
    /// The reply's version was not offered in the request (§5.2.5), or has no known layout.
    case versionNotOffered(RoughtimeVersion)
    /// VERS does not list the reply's version (§5.2.5).
    case versionNotListed
    /// RADI is zero (§5.2.5).
    case zeroRadius
    /// PATH is not a whole number of 32-byte hashes, or holds more than 32 (§5.2.4).
    case badPath
    /// CERT's signature over DELE does not verify under the long-term key (§5.4).
    case badDelegationSignature
    /// SIG over SREP does not verify under DELE's online key (§5.4).
    case badResponseSignature
    /// MIDP lies outside DELE's MINT…MAXT (§5.2.6, §5.4).
    case outsideDelegation
    /// The request's leaf, INDX and PATH do not lead to ROOT (§5.3.1).
    case merkleProofFailed
}

/// The client's side of Roughtime: the checks a response must pass (RFC 10049 §5.4).
public enum RoughtimeClient {
    /// Verifies `reply` to `request` (both whole packets) against the server's long-term
    /// public key, and returns the time it vouches for.
    ///
    /// In order: the reply is no longer than the request (§9.7); both parse; TYPE is 1
    /// (§5.2.3); NONC echoes the request's (§5.2.2); the version was offered and VERS lists it
    /// (§5.2.5); RADI is not zero; PATH is whole hashes, at most 32 (§5.2.4); CERT's signature
    /// under the long-term key; SREP's under DELE's PUBK; MINT ≤ MIDP ≤ MAXT; the Merkle proof
    /// from the request's leaf with INDX and PATH to ROOT (§5.3.1). Draft 11 replies (no TYPE
    /// or VERS, the nonce as leaf, the "--" delegation context) are checked as such.
    public static func verify<Verifier: RoughtimeSignatureVerifier, H: RoughtimeHasher>(
        request: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, longTermPublicKey: [UInt8],
        verifier: Verifier, hasher: inout H
    ) throws(RoughtimeVerificationError) -> RoughtimeVerifiedTime {
        guard reply.count <= request.count else { throw .replyLargerThanRequest }
        let sent: RoughtimeMessage
        let sentNonce: UnsafeRawBufferPointer
        let offered: UnsafeRawBufferPointer
        do throws(RoughtimeMessageError) {
            sent = try RoughtimeMessage(packet: request)
            sentNonce = try sent.required(.NONC, length: RoughtimeWire.hashLength)
            offered = try sent.required(.VER)
        } catch {
            throw .badRequest(error)
        }
        let parsed: RoughtimeReply
        do throws(RoughtimeMessageError) {
            parsed = try RoughtimeReply(packet: reply)
        } catch {
            throw .malformedReply(error)
        }
        if let type = parsed.type, type != 1 { throw .wrongType }
        guard RoughtimeWire.equal(parsed.nonce, sentNonce) else { throw .nonceMismatch }
        var wasOffered = false
        for i in 0..<(offered.count / 4) where RoughtimeWire.load32(offered, 4 * i) == parsed.version.rawValue { wasOffered = true }
        guard wasOffered, parsed.version.dialect == parsed.dialect else { throw .versionNotOffered(parsed.version) }
        if parsed.dialect == .rfc, !parsed.lists(parsed.version) { throw .versionNotListed }
        guard parsed.radius != 0 else { throw .zeroRadius }
        guard parsed.path.count % RoughtimeWire.hashLength == 0,
              parsed.path.count / RoughtimeWire.hashLength <= RoughtimeWire.maximumPathLength else { throw .badPath }
        guard parsed.isDelegationSigned(by: longTermPublicKey, verifier: verifier) else { throw .badDelegationSignature }
        guard parsed.isResponseSigned(verifier: verifier) else { throw .badResponseSignature }
        guard parsed.minimumTime <= parsed.midpoint, parsed.midpoint <= parsed.maximumTime else { throw .outsideDelegation }
        let leaf = parsed.dialect == .rfc ? request : sentNonce
        guard RoughtimeMerkleTree.verify(leafData: leaf, index: parsed.index, path: parsed.path, root: parsed.root, hasher: &hasher) else {
            throw .merkleProofFailed
        }
        return RoughtimeVerifiedTime(midpoint: parsed.midpoint, radius: parsed.radius, version: parsed.version)
    }

    /// `verify` over arrays.
    public static func verify<Verifier: RoughtimeSignatureVerifier, H: RoughtimeHasher>(
        request: [UInt8], reply: [UInt8], longTermPublicKey: [UInt8], verifier: Verifier, hasher: inout H
    ) throws(RoughtimeVerificationError) -> RoughtimeVerifiedTime {
        let result = request.withUnsafeBytes { q in
            reply.withUnsafeBytes { r in
                Result { () throws(RoughtimeVerificationError) -> RoughtimeVerifiedTime in
                    try verify(request: q, reply: r, longTermPublicKey: longTermPublicKey, verifier: verifier, hasher: &hasher)
                }
            }
        }
        return try result.get()
    }
}
