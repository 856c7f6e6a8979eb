/// Answering a batch of Roughtime requests (RFC 10049 §5.2, §5.3): one Merkle tree and one
/// signature per batch, and a reply template patched per request.

/// The replies to one batch of requests that share a version (RFC 10049 §5.2, §5.3).
///
/// A server collects the requests it received together (`append`), then `seal`s the batch:
/// the Merkle tree's root goes into SREP, SREP is signed once with the online key, and the
/// reply is laid out once as a template. Each reply is then the template with three fields
/// patched in (`writeReply`): the request's NONC, its PATH and its INDX. This is how
/// roughenough answers: the signature, the costly part, is shared by the whole batch.
///
/// All storage (leaves and nodes, nonces, template, the buffer signed) is allocated in `init`;
/// `removeAll`, `append`, `seal` and `writeReply` allocate nothing themselves, so what a batch
/// allocates is what its hasher and signer do (`writeReply` calls neither). Replies are no longer than `maximumReplyLength`, which `init` keeps within the
/// 1024 bytes a request has at least, so no reply is longer than its request (§9.7).
public struct RoughtimeBatch {
    /// The version every reply in the batch uses.
    public let version: RoughtimeVersion
    /// The layout that version uses.
    public let dialect: RoughtimeDialect
    /// The certificate copied into every reply.
    public let certificate: RoughtimeCertificate
    /// VERS: the versions the server supports, ascending (§5.2.5); unused by draft 11.
    public let supportedVersions: [RoughtimeVersion]
    /// The longest reply this batch can write: its reply at the tree's maximum depth.
    public let maximumReplyLength: Int

    /// Whether `seal` has run since the last `removeAll`.
    public private(set) var isSealed = false
    /// The length of every reply of the sealed batch.
    public private(set) var replyLength = 0

    /// The leaves and nodes.
    private var tree: RoughtimeMerkleTree
    /// The nonces, 32 bytes each, in leaf order.
    private var nonces: [UInt8]
    /// The reply template (first `maximumReplyLength` bytes), then the bytes the online key
    /// signs: the response context followed by SREP.
    private var storage: [UInt8]
    /// Where NONC lies in the template, as an offset in the packet.
    private var nonceOffset = 0
    /// Where PATH lies in the template, as an offset in the packet.
    private var pathOffset = 0
    /// Where INDX lies in the template, as an offset in the packet.
    private var indexOffset = 0

    /// Why a sealed batch cannot be answered.
    public enum SealError: Error, Sendable, Hashable {
        /// The midpoint lies outside the certificate's MINT…MAXT: clients would reject every
        /// reply (§5.2.6), so the server must renew its online key before it answers again.
        case outsideDelegation
        /// The online signer failed.
        case signingFailed
    }

    /// SREP's length: VER, RADI, MIDP, VERS, ROOT in the RFC dialect (§5.2.5); RADI, MIDP,
    /// ROOT in draft 11.
    private static func signedResponseLength(dialect: RoughtimeDialect, versionCount: Int) -> Int {
        switch dialect {
        case .rfc: return RoughtimeMessageWriter.headerLength(tagCount: 5) + 4 + 4 + 8 + 4 * versionCount + RoughtimeWire.hashLength
        case .draft11: return RoughtimeMessageWriter.headerLength(tagCount: 3) + 4 + 8 + RoughtimeWire.hashLength
        }
    }

    /// The length of a reply packet whose PATH holds `depth` hashes: header, then seven tags
    /// (SIG, NONC, TYPE or VER, PATH, SREP, CERT, INDX).
    public static func replyLength(dialect: RoughtimeDialect, depth: Int, versionCount: Int, certificateLength: Int) -> Int {
        RoughtimeWire.packetHeaderLength + RoughtimeMessageWriter.headerLength(tagCount: 7)
            + RoughtimeWire.signatureLength + RoughtimeWire.hashLength + 4 + RoughtimeWire.hashLength * depth
            + signedResponseLength(dialect: dialect, versionCount: versionCount) + certificateLength + 4
    }

    /// A batch of up to 2^maximumDepth requests answered in `version`, under `certificate`
    /// (signed for the same dialect), advertising `supportedVersions` in VERS.
    ///
    /// Traps on a configuration that could never answer correctly: a version without a known
    /// dialect, or missing from `supportedVersions` (§5.2.5), a certificate of the other
    /// dialect, or a depth whose replies could outgrow a 1024-byte request.
    public init(version: RoughtimeVersion, certificate: RoughtimeCertificate, supportedVersions: [RoughtimeVersion] = [.rfc, .draft12], maximumDepth: Int) {
        guard let dialect = version.dialect else { preconditionFailure("no known layout for version \(version)") }
        precondition(certificate.dialect == dialect, "the certificate was signed for the other dialect")
        let versions = Array(Set(supportedVersions)).sorted()
        precondition(dialect == .draft11 || (versions.contains(version) && versions.count <= RoughtimeWire.maximumVersions),
                     "VERS must list the reply's version (§5.2.5)")
        self.version = version
        self.dialect = dialect
        self.certificate = certificate
        self.supportedVersions = versions
        self.tree = RoughtimeMerkleTree(maximumDepth: maximumDepth)
        self.maximumReplyLength = Self.replyLength(dialect: dialect, depth: maximumDepth, versionCount: versions.count, certificateLength: certificate.bytes.count)
        precondition(maximumReplyLength <= RoughtimeWire.minimumRequestLength, "replies at depth \(maximumDepth) would outgrow a 1024-byte request")
        self.nonces = [UInt8](repeating: 0, count: RoughtimeWire.hashLength << maximumDepth)
        self.storage = [UInt8](repeating: 0, count: maximumReplyLength + RoughtimeContext.response.count
                                + Self.signedResponseLength(dialect: dialect, versionCount: versions.count))
    }

    /// How many requests the batch holds at most.
    public var capacity: Int { tree.capacity }
    /// How many requests it holds.
    public var count: Int { tree.leafCount }
    /// The PATH length of the sealed batch, in hashes.
    public var depth: Int { tree.depth }

    /// Empties the batch for the next one, keeping its storage.
    public mutating func removeAll() {
        tree.removeAll()
        isSealed = false
        replyLength = 0
    }

    /// Adds a request the policy accepted: `request` is the whole packet (at least
    /// `maximumReplyLength` bytes, so its reply is no longer) and its nonce starts at
    /// `nonceOffset`. Hashes its Merkle leaf: the whole packet in the RFC dialect (§5.3), the
    /// nonce in draft 11. Returns its index, the reply's INDX, or nil when the batch is full.
    public mutating func append<H: RoughtimeHasher>(request: UnsafeRawBufferPointer, nonceOffset: Int, hasher: inout H) -> Int? {
        precondition(!isSealed, "removeAll a sealed batch before reusing it")
        precondition(request.count >= maximumReplyLength, "a request shorter than its reply would be")
        precondition(nonceOffset >= 0 && nonceOffset + RoughtimeWire.hashLength <= request.count, "nonce outside the request")
        let nonce = UnsafeRawBufferPointer(rebasing: request[nonceOffset..<(nonceOffset + RoughtimeWire.hashLength)])
        guard let index = tree.appendLeaf(dialect == .rfc ? request : nonce, hasher: &hasher) else { return nil }
        nonces.withUnsafeMutableBytes {
            UnsafeMutableRawBufferPointer(rebasing: $0[(RoughtimeWire.hashLength * index)..<(RoughtimeWire.hashLength * (index + 1))]).copyMemory(from: nonce)
        }
        return index
    }

    /// Closes the batch: computes the Merkle root (§5.3), writes the reply template with SREP
    /// {VER, RADI, MIDP, VERS, ROOT} (§5.2.5) and CERT, and signs SREP once with the online
    /// key under "RoughTime v1 response signature\0" (§5.2.1).
    ///
    /// `midpoint` is the time of processing in seconds since the Unix epoch and `radius` (at
    /// least 1, §5.2.5) must cover the truncation to whole seconds as well as the clock's
    /// uncertainty. `signer` is the online key, whose public key the certificate delegates to.
    public mutating func seal<Signer: RoughtimeSigner, H: RoughtimeHasher>(
        midpoint: UInt64, radius: UInt32, signer: inout Signer, hasher: inout H
    ) throws(SealError) {
        precondition(!isSealed, "already sealed")
        precondition(count > 0, "nothing to seal")
        precondition(radius > 0, "RADI must not be zero (§5.2.5)")
        guard certificate.covers(midpoint) else { throw .outsideDelegation }
        tree.computeRoot(hasher: &hasher)
        var root = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &root) { tree.writeRoot(into: $0) }

        let depth = tree.depth
        let dialect = self.dialect
        let version = self.version
        let versions = self.supportedVersions
        let cert = certificate.bytes
        let context = RoughtimeContext.response
        let length = Self.replyLength(dialect: dialect, depth: depth, versionCount: versions.count, certificateLength: cert.count)
        let srepLength = Self.signedResponseLength(dialect: dialect, versionCount: versions.count)
        let templateEnd = maximumReplyLength
        var offsets = (nonce: 0, path: 0, index: 0)

        let signed = storage.withUnsafeMutableBytes { all -> Bool in
            let packet = UnsafeMutableRawBufferPointer(rebasing: all[0..<length])
            RoughtimeWire.writePacketHeader(into: packet, messageLength: length - RoughtimeWire.packetHeaderLength)
            let body = UnsafeMutableRawBufferPointer(rebasing: packet[RoughtimeWire.packetHeaderLength...])
            var reply = RoughtimeMessageWriter(into: body, tagCount: 7)
            let sig = reply.reserve(.SIG, length: RoughtimeWire.signatureLength)
            if dialect == .draft11 { reply.append(.VER, uint32: version.rawValue) }
            let nonce = reply.reserve(.NONC, length: RoughtimeWire.hashLength)
            if dialect == .rfc { reply.append(.TYPE, uint32: 1) }
            let path = reply.reserve(.PATH, length: RoughtimeWire.hashLength * depth)
            let srep = reply.reserve(.SREP, length: srepLength)
            var signedResponse = RoughtimeMessageWriter(into: UnsafeMutableRawBufferPointer(rebasing: body[srep]), tagCount: dialect == .rfc ? 5 : 3)
            if dialect == .rfc { signedResponse.append(.VER, uint32: version.rawValue) }
            signedResponse.append(.RADI, uint32: radius)
            signedResponse.append(.MIDP, uint64: midpoint)
            if dialect == .rfc {
                let vers = signedResponse.reserve(.VERS, length: 4 * versions.count)
                for i in versions.indices { RoughtimeWire.store32(signedResponse.buffer, vers.lowerBound + 4 * i, versions[i].rawValue) }
            }
            withUnsafeBytes(of: &root) { _ = signedResponse.append(.ROOT, bytes: $0) }
            precondition(signedResponse.length == srepLength)
            cert.withUnsafeBytes { _ = reply.append(.CERT, bytes: $0) }
            let index = reply.reserve(.INDX, length: 4)
            precondition(RoughtimeWire.packetHeaderLength + reply.length == length)
            offsets = (RoughtimeWire.packetHeaderLength + nonce.lowerBound, RoughtimeWire.packetHeaderLength + path.lowerBound,
                       RoughtimeWire.packetHeaderLength + index.lowerBound)

            // The online key signs context ‖ SREP, laid out past the template.
            let toSign = UnsafeMutableRawBufferPointer(rebasing: all[templateEnd..<(templateEnd + context.count + srepLength)])
            context.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: toSign[0..<context.count]).copyMemory(from: $0) }
            UnsafeMutableRawBufferPointer(rebasing: toSign[context.count...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: body[srep]))
            return signer.sign(UnsafeRawBufferPointer(toSign), into: UnsafeMutableRawBufferPointer(rebasing: body[sig]))
        }
        guard signed else { throw .signingFailed }
        nonceOffset = offsets.nonce
        pathOffset = offsets.path
        indexOffset = offsets.index
        replyLength = length
        isSealed = true
    }

    /// Writes the reply to request `index` into `reply` (at least `replyLength` bytes): the
    /// template with its NONC (§5.2.2), PATH (§5.2.4) and INDX (§5.2.7) patched in. Returns
    /// the reply's length. Allocates nothing.
    public func writeReply(_ index: Int, into reply: UnsafeMutableRawBufferPointer) -> Int {
        precondition(isSealed, "seal the batch first")
        precondition(index >= 0 && index < count, "no such request in the batch")
        precondition(reply.count >= replyLength, "reply buffer too short")
        let h = RoughtimeWire.hashLength
        storage.withUnsafeBytes { reply.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<replyLength])) }
        nonces.withUnsafeBytes {
            UnsafeMutableRawBufferPointer(rebasing: reply[nonceOffset..<(nonceOffset + h)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(h * index)..<(h * (index + 1))]))
        }
        _ = tree.writePath(forLeaf: index, into: UnsafeMutableRawBufferPointer(rebasing: reply[pathOffset..<(pathOffset + h * tree.depth)]))
        RoughtimeWire.store32(reply, indexOffset, UInt32(index))
        return replyLength
    }
}
