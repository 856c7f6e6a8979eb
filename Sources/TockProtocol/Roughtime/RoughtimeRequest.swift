/// Roughtime requests (RFC 10049 §5.1): the server's decision on one, and building one for a
/// client.

/// Why a server sends nothing back to a request. RFC 10049 has no error replies (§5.2: an
/// unauthenticated error would let an attacker turn clients away), so each reason is only
/// counted.
public enum RoughtimeDropReason: Sendable, Hashable {
    /// Shorter than 1024 bytes: answering would risk a reply longer than the request (§5.1,
    /// §9.7).
    case tooShort
    /// Not a well-formed packet or message (§4.2, §5), for this reason.
    case framing(RoughtimeMessageError)
    /// No version in common: VER missing, malformed (empty, not whole uint32s, more than 32,
    /// not strictly ascending, §5.1.1) or naming no version this server answers.
    case version
    /// No NONC tag (§5.1).
    case missingNonce
    /// A NONC that is not 32 bytes (§5.1.2).
    case badNonce
    /// TYPE missing, not a uint32, or not 0 (§5.1.3).
    case wrongType
    /// An SRV naming a long-term key this server does not hold, or not 32 bytes (§5.2).
    case unknownSRV
    /// A well-formed request that found the batch full; the transport sized the batch too
    /// small for what it received.
    case batchFull
    /// The midpoint lies outside the certificate's MINT…MAXT (§5.2.6): the delegation expired
    /// (or is not valid yet, after the clock stepped back). Clients reject such a reply (§5.4),
    /// so the server sends none rather than sign a time its delegation does not cover.
    case outsideDelegation
    /// Over TCP: a packet whose length field announces more than the reader takes
    /// (`RoughtimeStream.frame`); refused from its header, unread.
    case tooLong
}

/// A request the server will answer, and what answering it needs.
public struct RoughtimeAcceptedRequest: Sendable, Hashable {
    /// The version the reply uses: 1 if the client offered it, else the other version offered
    /// that this server answers (§5.1.1, §5.2.5).
    public var version: RoughtimeVersion
    /// Where the 32-byte nonce starts in the request packet.
    public var nonceOffset: Int

    /// An accepted request answered in `version`, its nonce at `nonceOffset`.
    public init(version: RoughtimeVersion, nonceOffset: Int) {
        self.version = version
        self.nonceOffset = nonceOffset
    }
}

/// The server's decision for one request.
public enum RoughtimeRequestDecision: Sendable, Hashable {
    /// Answer it, as described.
    case respond(RoughtimeAcceptedRequest)
    /// Send nothing, and count `reason`.
    case ignore(RoughtimeDropReason)
}

/// The checks a server makes on a request before answering it (RFC 10049 §5.1, §5.2), with no
/// I/O and no allocation.
public struct RoughtimeRequestPolicy: Sendable, Hashable {
    /// The versions answered, ascending; each in the RFC dialect (1 and 0x8000000c).
    public let versions: [RoughtimeVersion]
    /// The SRV value of the server's long-term key (H(0xff ‖ key), §5.1.4).
    public let srv: [UInt8]

    /// A policy answering `versions` for the long-term key whose SRV value is `srv`.
    ///
    /// One long-term key: a request without SRV is for it (§5.2's first rule), one with
    /// another SRV is ignored.
    public init(versions: [RoughtimeVersion] = [.rfc, .draft12], srv: [UInt8]) {
        precondition(!versions.isEmpty && versions.allSatisfy { $0.dialect == .rfc }, "versions must be RFC-format versions")
        precondition(srv.count == RoughtimeWire.hashLength, "SRV values are 32 bytes")
        self.versions = versions.sorted()
        self.srv = srv
    }

    /// Decides whether to answer `request`, a whole packet as received.
    ///
    /// In order: at least 1024 bytes (§5.1); a valid packet and message (§4.2, §5); NONC
    /// present and 32 bytes (§5.1.2); TYPE a uint32 equal to 0 (§5.1.3); VER a strictly
    /// ascending list of 1 to 32 versions, one of which this server answers (§5.1.1), choosing
    /// 1 over a draft; an SRV, if present, naming this server's key (§5.2). A request without
    /// VER, NONC or TYPE is ignored (§5.1); other tags, ZZZZ included, are not read.
    public func decide(_ request: UnsafeRawBufferPointer) -> RoughtimeRequestDecision {
        guard request.count >= RoughtimeWire.minimumRequestLength else { return .ignore(.tooShort) }
        let message: RoughtimeMessage
        do throws(RoughtimeMessageError) {
            message = try RoughtimeMessage(packet: request)
        } catch {
            return .ignore(.framing(error))
        }
        guard let nonce = message.range(of: .NONC) else { return .ignore(.missingNonce) }
        guard nonce.count == RoughtimeWire.hashLength else { return .ignore(.badNonce) }
        guard let type = message.value(of: .TYPE), type.count == 4, RoughtimeWire.load32(type, 0) == 0 else {
            return .ignore(.wrongType)
        }
        guard let offered = message.value(of: .VER), let version = choose(from: offered) else { return .ignore(.version) }
        if let srv = message.value(of: .SRV) {
            let known = self.srv.withUnsafeBytes { RoughtimeWire.equal(srv, $0) }
            guard known else { return .ignore(.unknownSRV) }
        }
        return .respond(RoughtimeAcceptedRequest(version: version, nonceOffset: RoughtimeWire.packetHeaderLength + nonce.lowerBound))
    }

    /// The version to answer from a VER value: nil if it is malformed or shares no version
    /// with `versions`. Version 1 wins over drafts, whose numbers are larger (§12.2); among
    /// drafts the newest (largest) wins. The whole list is read, so a malformed tail is caught.
    /// Whether `version` is one of `versions`: an index loop, since an unoptimised build of the
    /// generic `contains` allocates per call, and this runs per request.
    private func supports(_ version: RoughtimeVersion) -> Bool {
        for i in versions.indices where versions[i] == version { return true }
        return false
    }

    private func choose(from offered: UnsafeRawBufferPointer) -> RoughtimeVersion? {
        let n = offered.count / 4
        guard offered.count % 4 == 0, n >= 1, n <= RoughtimeWire.maximumVersions else { return nil }
        var best: RoughtimeVersion?
        var previous: UInt32 = 0
        for i in 0..<n {
            let v = RoughtimeWire.load32(offered, 4 * i)
            guard i == 0 || v > previous else { return nil }
            previous = v
            guard supports(RoughtimeVersion(rawValue: v)) else { continue }
            if best != .rfc { best = RoughtimeVersion(rawValue: v) }
        }
        return best
    }
}

/// Builds requests for a client (RFC 10049 §5.1).
public enum RoughtimeRequestBuilder {
    /// A request packet of `length` bytes (at least 1024 for UDP, §5.1) offering `versions`
    /// (sorted and deduplicated here, §5.1.1), carrying `nonce` (32 bytes) and, if given,
    /// `srv`; ZZZZ pads it to `length`.
    ///
    /// TYPE 0 is included unless every version offered is a cloudflare draft (08, 11), whose
    /// requests carried no TYPE.
    public static func packet(nonce: [UInt8], versions: [RoughtimeVersion] = [.rfc, .draft12], srv: [UInt8]? = nil, length: Int = RoughtimeWire.minimumRequestLength) -> [UInt8] {
        precondition(nonce.count == RoughtimeWire.hashLength, "nonces are 32 bytes")
        precondition(srv == nil || srv!.count == RoughtimeWire.hashLength, "SRV values are 32 bytes")
        let offered = Array(Set(versions)).sorted()
        precondition(!offered.isEmpty && offered.count <= RoughtimeWire.maximumVersions, "offer 1 to 32 versions")
        var fields: [RoughtimeTag: [UInt8]] = [.VER: RoughtimeEncoder.bytes(offered), .NONC: nonce]
        if offered.contains(where: { $0.dialect != .draft11 }) { fields[.TYPE] = RoughtimeEncoder.bytes(UInt32(0)) }
        if let srv { fields[.SRV] = srv }
        let unpadded = RoughtimeWire.packetHeaderLength
            + RoughtimeMessageWriter.messageLength(valueLengths: fields.values.map(\.count) + [0])
        precondition(length >= unpadded && (length - unpadded) % 4 == 0, "request length too short or not a multiple of four")
        fields[.ZZZZ] = [UInt8](repeating: 0, count: length - unpadded)
        return RoughtimeEncoder.packet(fields)
    }
}
