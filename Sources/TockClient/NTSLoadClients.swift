import TockProtocol

/// The NTS state of one load-generator thread's clients (RFC 8915 §5.7): per client socket its
/// session's cipher, a cookie supply refilled from replies, and the secret half of its Unique
/// Identifiers. Every buffer is allocated when the thread starts; a request and a reply
/// allocate nothing.
///
/// A request spends one cookie and asks for as many back as the client is short of its target
/// (one, in the steady state, so the supply stays level; more after losses, with placeholders).
/// Its Unique Identifier is the request's random transmit timestamp followed by 24 random bytes
/// fixed per client: unique per request, and matched in constant time without storing 32
/// bytes per request in flight. When a client has no cookie left (more in flight than its
/// supply) it reuses its last one, which a server accepts but a real client would not do, and
/// the reuse is counted.
///
/// Not Sendable: confined to the thread whose `ClientLoop` made it.
final class NTSLoadClients {
    /// What checking a reply found.
    enum Verdict {
        /// Authentic; its cookies are in the supply.
        case authentic
        /// An NTS NAK for our Unique Identifier.
        case nak
        /// Not authentic or not ours.
        case rejected
    }

    let clients: Int
    let slotsPerClient: Int
    /// Cookies each client aims to hold or have on their way.
    let target: Int
    /// Supply entries per client: the target, plus room for a reply's cookies.
    let capacity: Int
    /// Bytes per entry: a 2-byte length and the cookie.
    let entryLength: Int
    private var ciphers: [NTSSessionCipher]
    private let pool: UnsafeMutableRawBufferPointer
    private var head: [Int]
    private var held: [Int]
    /// Cookies asked for by each client's requests in flight.
    private var coming: [Int]
    /// Per client and slot: the cookies that request asked for (0: none in flight).
    private var asked: [UInt8]
    /// Per client: the last cookie spent, kept for reuse when the supply runs dry.
    private let spare: UnsafeMutableRawBufferPointer
    /// Per client: the fixed 24 bytes of its Unique Identifiers.
    private let secrets: UnsafeMutableRawBufferPointer
    /// The Unique Identifier (32) and nonce (16) being written or checked.
    private let scratch: UnsafeMutableRawBufferPointer
    /// Decrypted extension fields of the reply being checked.
    private let plaintext: UnsafeMutableRawBufferPointer
    /// Requests sent with a reused cookie.
    private(set) var reused: UInt64 = 0

    static let secretLength = NTSClientPacket.uniqueIdentifierLength - 8

    init(sessions: [NTSSession], slotsPerClient: Int, target: Int) {
        clients = sessions.count
        self.slotsPerClient = slotsPerClient
        self.target = target
        capacity = target + NTSClientPacket.maximumCookies
        let longest = sessions.flatMap(\.cookies).map(\.count).max() ?? 0
        entryLength = 2 + (longest + 3) & ~3
        ciphers = sessions.map { $0.cipher() }
        pool = .allocate(byteCount: max(1, clients * capacity * entryLength), alignment: 8)
        head = [Int](repeating: 0, count: clients)
        held = [Int](repeating: 0, count: clients)
        coming = [Int](repeating: 0, count: clients)
        asked = [UInt8](repeating: 0, count: clients * slotsPerClient)
        spare = .allocate(byteCount: max(1, clients * entryLength), alignment: 8)
        spare.initializeMemory(as: UInt8.self, repeating: 0)
        secrets = .allocate(byteCount: max(1, clients * Self.secretLength), alignment: 8)
        scratch = .allocate(byteCount: 64, alignment: 8)
        plaintext = .allocate(byteCount: 4096, alignment: 8)
        var random = SystemRandomNumberGenerator()
        for i in 0..<secrets.count { secrets[i] = UInt8.random(in: .min ... .max, using: &random) }
        for (c, session) in sessions.enumerated() {
            for cookie in session.cookies { cookie.withUnsafeBytes { push($0, client: c) } }
        }
    }

    deinit {
        pool.deallocate()
        spare.deallocate()
        secrets.deallocate()
        scratch.deallocate()
        plaintext.deallocate()
    }

    private func entry(client c: Int, index: Int) -> UnsafeMutableRawBufferPointer {
        let start = (c * capacity + index) * entryLength
        return UnsafeMutableRawBufferPointer(rebasing: pool[start..<(start + entryLength)])
    }

    /// Adds a cookie to client `c`'s supply; dropped when full or longer than an entry.
    private func push(_ cookie: UnsafeRawBufferPointer, client c: Int) {
        guard held[c] < capacity, cookie.count + 2 <= entryLength else { return }
        let e = entry(client: c, index: (head[c] + held[c]) % capacity)
        NTPWire.store16(UInt16(cookie.count), e, 0)
        UnsafeMutableRawBufferPointer(rebasing: e[2..<(2 + cookie.count)]).copyMemory(from: cookie)
        held[c] += 1
    }

    /// Writes client `c`'s Unique Identifier for a request with `transmit` into the scratch.
    private func uniqueIdentifier(client c: Int, transmit: UInt64) -> UnsafeRawBufferPointer {
        NTPWire.store64(transmit, scratch, 0)
        let secret = c * Self.secretLength
        UnsafeMutableRawBufferPointer(rebasing: scratch[8..<32]).copyMemory(from: UnsafeRawBufferPointer(rebasing: secrets[secret..<(secret + Self.secretLength)]))
        return UnsafeRawBufferPointer(rebasing: scratch[0..<32])
    }

    /// Writes client `c`'s request in `slot` with `transmit` into `packet` (RFC 8915 §5.7):
    /// the oldest cookie, placeholders for the cookies it is short of (as many as fit), the
    /// Authenticator under C2S. Returns the request's length.
    func writeRequest(client c: Int, slot: Int, transmit: UInt64, into packet: UnsafeMutableRawBufferPointer, random: inout FastRandom) -> Int {
        let spareEntry = UnsafeMutableRawBufferPointer(rebasing: spare[(c * entryLength)..<((c + 1) * entryLength)])
        if held[c] > 0 {
            spareEntry.copyMemory(from: UnsafeRawBufferPointer(entry(client: c, index: head[c])))
            head[c] = (head[c] + 1) % capacity
            held[c] -= 1
        } else {
            reused += 1
        }
        let cookieLength = Int(NTPWire.load16(UnsafeRawBufferPointer(spareEntry), 0))
        let cookie = UnsafeRawBufferPointer(rebasing: spareEntry[2..<(2 + cookieLength)])
        var wanted = min(max(1, target - held[c] - coming[c]), NTSClientPacket.maximumCookies)
        while wanted > 1, NTSClientPacket.requestLength(cookieLength: cookieLength, cookiesWanted: wanted) > packet.count { wanted -= 1 }
        asked[c * slotsPerClient + slot] = UInt8(wanted)
        coming[c] += wanted
        let uid = uniqueIdentifier(client: c, transmit: transmit)
        NTPWire.store64(random.next(), scratch, 32)
        NTPWire.store64(random.next(), scratch, 40)
        return NTSClientPacket.writeRequest(
            transmit: NTPTimestamp(rawValue: transmit), uniqueIdentifier: uid, cookie: cookie, cookiesWanted: wanted,
            nonce: UnsafeRawBufferPointer(rebasing: scratch[32..<48]), cipher: &ciphers[c], into: packet
        )
    }

    /// Client `c`'s request in `slot` will get no reply (unsent, or timed out): its cookies
    /// are no longer coming.
    func forget(client c: Int, slot: Int) {
        let index = c * slotsPerClient + slot
        coming[c] -= Int(asked[index])
        asked[index] = 0
    }

    /// Checks the reply to client `c`'s request in `slot`, whose origin the caller matched to
    /// `transmit`: our Unique Identifier, the Authenticator under S2C (every reply: its cookies
    /// are the supply), the new cookies into the supply.
    func check(reply: UnsafeRawBufferPointer, client c: Int, slot: Int, transmit: UInt64) -> Verdict {
        forget(client: c, slot: slot)
        let uid = uniqueIdentifier(client: c, transmit: transmit)
        switch NTSClientPacket.checkReply(reply, uniqueIdentifier: uid, cipher: &ciphers[c], plaintext: plaintext) {
        case .authentic(let length):
            _ = NTSClientPacket.forEachCookie(in: UnsafeRawBufferPointer(rebasing: plaintext[0..<length])) { push($0, client: c) }
            return .authentic
        case .nak:
            return .nak
        case .rejected:
            return .rejected
        }
    }
}
