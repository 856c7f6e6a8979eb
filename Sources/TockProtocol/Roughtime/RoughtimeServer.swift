/// Where a queued request's reply will come from: its batch and its index there.
public struct RoughtimeReplyTicket: Sendable, Hashable {
    /// Which of the server's batches (one per version it answers).
    public var batch: Int
    /// The request's index in that batch, its INDX.
    public var index: Int

    /// The ticket for request `index` of batch `batch`.
    public init(batch: Int, index: Int) {
        self.batch = batch
        self.index = index
    }
}

/// What the server does with one received request.
public enum RoughtimeServerAction: Sendable, Hashable {
    /// Answer it once the receive batch is sealed, with the reply this ticket names.
    case queued(RoughtimeReplyTicket)
    /// Send nothing, and count `reason`.
    case ignore(DropReason)
}

/// How sealing a receive batch ended.
public enum RoughtimeSealOutcome: Sendable, Hashable {
    /// Every queued request can be answered (`writeReply`); this many signatures were made.
    case sealed(signatures: Int)
    /// None can: every queued request is dropped for this reason.
    case dropped(DropReason)
}

/// A Roughtime server's whole core, with no I/O and no clock reads: the request checks,
/// admission, the clock's state, the delegation's validity, and one batch per version answered
/// (RFC 10049 §5.1, §5.2).
///
/// Per receive batch the transport calls `receive` for each datagram (every one with the
/// batch's read time), `seal` once, `writeReply` for each queued ticket (or `writeReplies` for
/// all), then `removeAll`. Over TCP a request is a batch of one. A batch holds one version
/// because SREP names it (§5.2.5), so a receive batch mixing RFC and draft clients is answered
/// with one signature per version present.
public struct RoughtimeServer {
    /// The checks on each request.
    public let policy: RoughtimeRequestPolicy
    /// The certificate every batch carries.
    public let certificate: RoughtimeCertificate
    /// One batch per version in `policy.versions`, in the same order.
    public private(set) var batches: [RoughtimeBatch]
    /// This receive batch's queued requests, in the order `receive` queued them.
    public private(set) var queued: [RoughtimeReplyTicket] = []

    /// RADI when nothing larger is known: the midpoint's rounding, and the leap second this
    /// server gives no warning of (§5.2.5 leaves smearing to the server).
    public static let minimumRadius: UInt32 = 3

    /// A server answering `policy.versions` under `certificate`, at most 2^maximumDepth
    /// requests per version and receive batch.
    public init(policy: RoughtimeRequestPolicy, certificate: RoughtimeCertificate, maximumDepth: Int) {
        self.policy = policy
        self.certificate = certificate
        self.batches = policy.versions.map {
            RoughtimeBatch(version: $0, certificate: certificate, supportedVersions: policy.versions, maximumDepth: maximumDepth)
        }
        // Reserved once: queuing never allocates on the packet path.
        queued.reserveCapacity(policy.versions.count << maximumDepth)
    }

    /// MIDP for a batch read at `readTime`: that time rounded to the nearest second (§5.2.5).
    @inlinable
    public static func midpoint(readTime: UTCInstant) -> UInt64 {
        UInt64(max(0, (readTime.nanosecondsSinceUnixEpoch + 500_000_000) / 1_000_000_000))
    }

    /// RADI for a clock whose error bound is `rootDispersionNanoseconds`: that bound plus the
    /// half second MIDP's rounding adds, rounded up to whole seconds, and at least
    /// `minimumRadius` (§5.2.5: the true time lies within MIDP ± RADI).
    public static func radius(rootDispersionNanoseconds: Int64) -> UInt32 {
        let total = max(0, rootDispersionNanoseconds) + 500_000_000
        let seconds = (total + 999_999_999) / 1_000_000_000
        return UInt32(clamping: max(Int64(minimumRadius), seconds))
    }

    /// The whole decision for one datagram from `client`, in one call: the request's framing,
    /// version, NONC, TYPE and SRV (`RoughtimeRequestPolicy.decide`, first, so garbage costs no
    /// client a rate-limit token), then admission (access list and rate limit; Roughtime has no
    /// kiss-o'-death, so a refused client gets nothing), then silence while `clock` is not
    /// synchronised (a signed time that may be wrong is worse than none), then the delegation:
    /// MIDP, from `readTime`, must lie in the certificate's MINT…MAXT (§5.2.6), or nothing is
    /// answered rather than a time clients must reject (§5.4). An accepted request is queued in
    /// the batch of its version, its Merkle leaf hashed. Every `receive` of a receive batch
    /// takes the same `readTime`, the one `seal` takes.
    public mutating func receive<Table: RateLimitTable, H: RoughtimeHasher>(
        _ request: UnsafeRawBufferPointer, from client: ClientAddress, readTime: UTCInstant, clock: ServerClockState,
        admission: ClientAdmission<Table>, random: UInt64, hasher: inout H
    ) -> RoughtimeServerAction {
        let accepted: RoughtimeAcceptedRequest
        switch policy.decide(request) {
        case .ignore(let reason): return .ignore(reason.dropReason)
        case .respond(let request): accepted = request
        }
        switch admission.admit(client, random: random) {
        case .serve: break
        case .drop(let reason), .kiss(_, because: let reason): return .ignore(reason)
        }
        guard clock.isSynchronized else { return .ignore(.unsynchronized) }
        guard certificate.covers(Self.midpoint(readTime: readTime)) else { return .ignore(.roughtimeDelegationExpired) }
        // An index loop: an unoptimised build of the generic `firstIndex(of:)` allocates.
        var b = 0
        while b < batches.count, batches[b].version != accepted.version { b += 1 }
        guard b < batches.count, queued.count < queued.capacity,
              let index = batches[b].append(request: request, nonceOffset: accepted.nonceOffset, hasher: &hasher)
        else { return .ignore(RoughtimeDropReason.batchFull.dropReason) }
        let ticket = RoughtimeReplyTicket(batch: b, index: index)
        queued.append(ticket)
        return .queued(ticket)
    }

    /// Seals every batch that holds requests, one signature each, for the receive batch read at
    /// `readTime` under `clock`: MIDP is that time rounded to the second, RADI the clock's root
    /// dispersion plus the rounding (`radius`). On `.dropped` nothing queued may be answered:
    /// `removeAll` and count every queued request under the reason.
    public mutating func seal<Signer: RoughtimeSigner, H: RoughtimeHasher>(
        readTime: UTCInstant, clock: ServerClockState, signer: inout Signer, hasher: inout H
    ) -> RoughtimeSealOutcome {
        let midpoint = Self.midpoint(readTime: readTime)
        let radius = Self.radius(rootDispersionNanoseconds: clock.rootDispersionNanoseconds)
        var signatures = 0
        for b in batches.indices where batches[b].count > 0 {
            do throws(RoughtimeBatch.SealError) {
                try batches[b].seal(midpoint: midpoint, radius: radius, signer: &signer, hasher: &hasher)
            } catch {
                for k in batches.indices { batches[k].removeAll() }
                queued.removeAll(keepingCapacity: true)
                return .dropped(error == .outsideDelegation ? .roughtimeDelegationExpired : .roughtimeInternal)
            }
            signatures += 1
        }
        return .sealed(signatures: signatures)
    }

    /// Writes the reply for `ticket` into `reply`; returns its length, never more than the
    /// request's (§9.7), or 0 when its batch is not sealed.
    public func writeReply(_ ticket: RoughtimeReplyTicket, into reply: UnsafeMutableRawBufferPointer) -> Int {
        guard batches[ticket.batch].isSealed else { return 0 }
        return batches[ticket.batch].writeReply(ticket.index, into: reply)
    }

    /// Writes the reply of every queued request, the k-th into `replies[k]` with its length in
    /// `lengths[k]` (0 for none), in the order `receive` queued them.
    public func writeReplies(into replies: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) {
        for k in 0..<min(replies.count, lengths.count) {
            lengths[k] = k < queued.count ? writeReply(queued[k], into: replies[k]) : 0
        }
    }

    /// Empties every batch for the next receive batch.
    public mutating func removeAll() {
        for b in batches.indices { batches[b].removeAll() }
        queued.removeAll(keepingCapacity: true)
    }
}

extension RoughtimeDropReason {
    /// The reason a drop is counted under (the counters and metrics of every service share one
    /// set of reasons).
    public var dropReason: DropReason {
        switch self {
        case .tooShort: .tooShort
        case .framing: .roughtimeFraming
        case .version: .roughtimeVersion
        case .missingNonce, .badNonce: .roughtimeNonce
        case .wrongType: .roughtimeType
        case .unknownSRV: .roughtimeSRV
        case .batchFull: .roughtimeInternal
        case .outsideDelegation: .roughtimeDelegationExpired
        case .tooLong: .oversized
        }
    }
}
