import TockCrypto
import TockProtocol
import TockSockets

/// Roughtime (RFC 10049) on the datagram engine: each request is checked
/// (`RoughtimeRequestPolicy`), admitted and queued in the worker's `RoughtimeServer`, which
/// hashes its Merkle leaf; `endBatch` seals the batch, one signature per version present, and
/// writes every reply from the template (§5.2, §5.3). The TCP transport drives the same value
/// one request at a time (`answerAlone`), so both transports share every check and the signing.
///
/// `@unchecked Sendable`: the Roughtime batches, the signer and the hasher are mutable and
/// unsynchronised; one value is built before its worker thread starts, handed to it, and
/// never touched by another thread.
struct RoughtimeDatagramResponder: DatagramResponder, @unchecked Sendable {
    var service: TockService { .roughtime }
    /// A reply is never longer than the shortest request answered (§9.7).
    var replyCapacity: Int { RoughtimeWire.minimumRequestLength }
    /// PATH depth for a whole receive batch: 2^6 = `DatagramWorker.batchSize` leaves per version.
    static let maximumDepth = 6
    /// The deepest PATH this responder's batches hold: `maximumDepth` on the datagram engine,
    /// 0 (one request per batch) for TCP.
    let depth: Int
    /// The radius when nothing larger is known: the midpoint's rounding, and the leap second
    /// this server gives no warning of (RFC 10049 §5.2.5 leaves smearing to the server).
    static let minimumRadius: UInt32 = 3

    let keys: RoughtimeKeyCell
    private var keyVersion: UInt64
    private var server: RoughtimeServer
    private var signer: RoughtimeEd25519Signer
    private var hasher = RoughtimeSHA512()
    var clock: CachedClockState
    var policy: CachedPolicy
    var random = FastRandom()
    var admission: ClientAdmission<ClientLimiter>
    /// The queued requests' tickets, in the order `respond` deferred them.
    private var tickets: [RoughtimeReplyTicket] = []
    /// MIDP and RADI of the current batch.
    private var midpoint: UInt64 = 0
    private var radius: UInt32 = minimumRadius

    init(keys: RoughtimeKeyCell, clock: ClockStateCell, policy: PolicyCell, depth: Int = Self.maximumDepth) {
        self.keys = keys
        self.depth = depth
        let (key, version) = keys.read()
        self.keyVersion = version
        (self.server, self.signer) = Self.make(key, srv: keys.srv, depth: depth)
        self.clock = CachedClockState(clock)
        self.policy = CachedPolicy(policy)
        self.admission = ClientAdmission(policy: self.policy.policy, table: self.policy.limiter, monotonicNanoseconds: 0)
        tickets.reserveCapacity(2 << depth)
    }

    private static func make(_ key: RoughtimeDelegation, srv: [UInt8], depth: Int) -> (RoughtimeServer, RoughtimeEd25519Signer) {
        let server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: srv), certificate: key.certificate, maximumDepth: depth)
        // The seed was checked when the delegation was made or read, so it is 32 bytes.
        return (server, try! RoughtimeEd25519Signer(seed: key.onlineSeed))
    }

    /// RADI for a clock whose error bound is `rootDispersionNanoseconds`: that bound plus the
    /// half second MIDP's rounding adds, rounded up to whole seconds, and at least 3.
    static func radius(rootDispersionNanoseconds: Int64) -> UInt32 {
        let total = max(0, rootDispersionNanoseconds) + 500_000_000
        let seconds = (total + 999_999_999) / 1_000_000_000
        return UInt32(clamping: max(Int64(minimumRadius), seconds))
    }

    mutating func beginBatch(now: UTCInstant) {
        clock.refresh()
        if policy.refresh() {
            admission = ClientAdmission(policy: policy.policy, table: policy.limiter, monotonicNanoseconds: 0)
        }
        if admission.table != nil { admission.monotonicNanoseconds = SystemClock.monotonicNanoseconds() }
        if keys.currentVersion != keyVersion {
            let (key, version) = keys.read()
            keyVersion = version
            (server, signer) = Self.make(key, srv: keys.srv, depth: depth)
        }
        server.removeAll()
        tickets.removeAll(keepingCapacity: true)
        // MIDP: the batch's read time rounded to the nearest second.
        midpoint = UInt64(max(0, (now.nanosecondsSinceUnixEpoch + 500_000_000) / 1_000_000_000))
        radius = Self.radius(rootDispersionNanoseconds: clock.state.rootDispersionNanoseconds)
    }

    mutating func respond(to request: UnsafeRawBufferPointer, from client: ClientAddress, receiveTime: UTCInstant, reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        // Decided once, before admission: garbage costs no client a rate-limit token.
        let accepted: RoughtimeAcceptedRequest
        switch server.policy.decide(request) {
        case .ignore(let reason): return .ignore(Self.dropReason(reason))
        case .respond(let request): accepted = request
        }
        switch admission.admit(client, random: random.next()) {
        case .serve: break
        case .drop(let reason), .kiss(_, because: let reason): return .ignore(reason)
        }
        guard clock.state.isSynchronized else { return .ignore(.unsynchronized) }
        switch server.queue(request, accepted: accepted, midpoint: midpoint, hasher: &hasher) {
        case .queued(let ticket):
            tickets.append(ticket)
            return .deferred
        case .ignore(let reason):
            return .ignore(Self.dropReason(reason))
        }
    }

    mutating func endBatch(slots: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome {
        precondition(slots.count == tickets.count, "one slot per deferred reply")
        let signatures: Int
        do throws(RoughtimeBatch.SealError) {
            signatures = try server.seal(midpoint: midpoint, radius: radius, signer: &signer, hasher: &hasher)
        } catch {
            // `receive` queues nothing outside the delegation, so this is the signer failing;
            // the mapping keeps the reason right should that ever change.
            return .dropped(error == .outsideDelegation ? .roughtimeDelegationExpired : .roughtimeInternal)
        }
        for k in 0..<tickets.count {
            lengths[k] = server.writeReply(tickets[k], into: slots[k])
        }
        return .written(signatures: signatures)
    }

    /// Answers `request` on its own, as a batch of one (PATH empty, INDX 0, §5.3): the same
    /// checks, admission and signature a datagram gets, for a transport that holds one request
    /// at a time (TCP). `reply` must hold `replyCapacity` bytes. Returns `.send` with the
    /// reply's length, or `.ignore` with the reason nothing is sent.
    mutating func answerAlone(_ request: UnsafeRawBufferPointer, from client: ClientAddress, now: UTCInstant, into reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        beginBatch(now: now)
        let verdict = respond(to: request, from: client, receiveTime: now, reply: reply)
        guard case .deferred = verdict else { return verdict }
        var length = 0
        let outcome = withUnsafePointer(to: reply) { slot in
            withUnsafeMutablePointer(to: &length) { lengths in
                endBatch(slots: UnsafeBufferPointer(start: slot, count: 1), lengths: UnsafeMutableBufferPointer(start: lengths, count: 1))
            }
        }
        // Over TCP every reply is its own signature: the stream counters' replies count them.
        if case .dropped(let reason) = outcome { return .ignore(reason) }
        return .send(length: length, kind: .complete)
    }

    /// The counter a core drop reason lands in.
    static func dropReason(_ reason: RoughtimeDropReason) -> DropReason {
        switch reason {
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
