import TockCrypto
import TockProtocol
import TockSockets

/// Roughtime (RFC 10049) on the datagram engine: each datagram is decided in one call to the
/// worker's `RoughtimeServer` (checks, admission, clock, delegation), which queues an accepted
/// request and hashes its Merkle leaf; `endBatch` seals the batch in one call, one signature
/// per version present, and writes every reply from the template (§5.2, §5.3). The TCP
/// transport drives the same value one request at a time (`answerAlone`), so both transports
/// share every check and the signing.
///
/// `@unchecked Sendable`: the Roughtime batches, the signer and the hasher are mutable and
/// unsynchronised; one value is built before its worker thread starts, handed to it, and
/// never touched by another thread.
struct RoughtimeDatagramResponder: DatagramResponder, @unchecked Sendable {
    /// A reply is never longer than the shortest request answered (§9.7).
    var replyCapacity: Int { RoughtimeWire.minimumRequestLength }
    /// PATH depth for a whole receive batch: 2^6 = `DatagramWorker.batchSize` leaves per version.
    static let maximumDepth = 6
    /// The deepest PATH this responder's batches hold: `maximumDepth` on the datagram engine,
    /// 0 (one request per batch) for TCP.
    let depth: Int

    private var keys: VersionedCopy<RoughtimeDelegation>
    private let srv: [UInt8]
    private var server: RoughtimeServer
    private var signer: RoughtimeEd25519Signer
    private var hasher = RoughtimeSHA512()
    private var clock: CachedClockState
    private var admission: LiveAdmission
    private var random = FastRandom()
    /// When the current batch was read: every request's MIDP, and the batch's.
    private var readTime = UTCInstant(nanosecondsSinceUnixEpoch: 0)

    init(keys: RoughtimeKeyCell, clock: ClockStateCell, policy: PolicyCell, depth: Int = Self.maximumDepth) {
        self.depth = depth
        self.srv = keys.srv
        self.keys = VersionedCopy(keys.cell)
        (self.server, self.signer) = Self.make(self.keys.value, srv: keys.srv, depth: depth)
        self.clock = CachedClockState(clock)
        self.admission = LiveAdmission(policy)
    }

    private static func make(_ key: RoughtimeDelegation, srv: [UInt8], depth: Int) -> (RoughtimeServer, RoughtimeEd25519Signer) {
        let server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: srv), certificate: key.certificate, maximumDepth: depth)
        // The seed was checked when the delegation was made or read, so it is 32 bytes.
        return (server, try! RoughtimeEd25519Signer(seed: key.onlineSeed))
    }

    mutating func beginBatch(now: UTCInstant, totals: borrowing DatagramCounters.Totals) {
        prepare(now: now)
    }

    /// Takes what changed (clock state, policy, keys) and starts an empty batch read at `now`.
    private mutating func prepare(now: UTCInstant) {
        clock.refresh()
        admission.refresh(monotonicNanoseconds: SystemClock.monotonicNanoseconds)
        if keys.refresh() {
            (server, signer) = Self.make(keys.value, srv: srv, depth: depth)
        }
        server.removeAll()
        readTime = now
    }

    mutating func respond(
        to request: UnsafeRawBufferPointer, from client: ClientAddress, control: ReceivedControl,
        slot: Int, reply: UnsafeMutableRawBufferPointer, totals: borrowing DatagramCounters.Totals
    ) -> DatagramVerdict {
        decide(request, from: client)
    }

    @inline(__always)
    private mutating func decide(_ request: UnsafeRawBufferPointer, from client: ClientAddress) -> DatagramVerdict {
        switch server.receive(request, from: client, readTime: readTime, clock: clock.state, admission: admission.admission, random: random.next(), hasher: &hasher) {
        case .queued: .deferred
        case .ignore(let reason): .ignore(reason)
        }
    }

    mutating func endBatch(replies: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>, lengths: UnsafeMutableBufferPointer<Int>) -> DeferredBatchOutcome {
        switch server.seal(readTime: readTime, clock: clock.state, signer: &signer, hasher: &hasher) {
        case .sealed(let signatures):
            server.writeReplies(into: replies, lengths: lengths)
            return DeferredBatchOutcome(signatures: signatures, unwritten: .roughtimeInternal)
        case .dropped(let reason):
            for k in 0..<lengths.count { lengths[k] = 0 }
            return DeferredBatchOutcome(signatures: 0, unwritten: reason)
        }
    }

    /// Answers `request` on its own, as a batch of one (PATH empty, INDX 0, §5.3): the same
    /// decision and signature a datagram gets, for a transport that holds one request at a
    /// time (TCP). `reply` must hold `replyCapacity` bytes. Returns `.send` with the reply's
    /// length, or `.ignore` with the reason nothing is sent.
    mutating func answerAlone(_ request: UnsafeRawBufferPointer, from client: ClientAddress, now: UTCInstant, into reply: UnsafeMutableRawBufferPointer) -> DatagramVerdict {
        prepare(now: now)
        let verdict = decide(request, from: client)
        guard case .deferred = verdict else { return verdict }
        switch server.seal(readTime: readTime, clock: clock.state, signer: &signer, hasher: &hasher) {
        case .sealed:
            // Over TCP every reply is its own signature: the stream counters' replies count them.
            let length = server.writeReply(server.queued[0], into: reply)
            return length > 0 ? .send(length: length) : .ignore(.roughtimeInternal)
        case .dropped(let reason):
            return .ignore(reason)
        }
    }
}
