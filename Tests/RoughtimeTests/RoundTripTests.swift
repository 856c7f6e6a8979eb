import Testing
import TockCrypto
import TockProtocol

/// The server core's replies checked by the client core: batches of several sizes, every
/// reply verified; and replies broken one field at a time, each failing its own check.
@Suite struct RoundTripTests {
    /// A batch of `size` requests (mixed versions, with and without SRV, 1024 and 1200 bytes)
    /// is answered, and every reply verifies with the client's checks, with a PATH of
    /// ⌈log2(batch)⌉ hashes. The server is then reused for a second receive batch.
    @Test(arguments: [1, 2, 5, 64])
    func batchRepliesVerify(size: Int) throws {
        var keys = TestServerKeys()
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 6)
        var hasher = RoughtimeSHA512()
        for round in 0..<2 {
            var requests: [[UInt8]] = []
            var tickets: [RoughtimeReplyTicket] = []
            for i in 0..<size {
                let versions: [RoughtimeVersion] = i % 3 == 2 ? [.draft12] : [.rfc, .draft12]
                let request = RoughtimeRequestBuilder.packet(nonce: randomNonce(), versions: versions,
                                                             srv: i % 2 == 0 ? keys.srv : nil, length: i % 5 == 4 ? 1200 : 1024)
                let action = request.withUnsafeBytes { server.receive($0, midpoint: 1_800_000_000 + UInt64(round), hasher: &hasher) }
                guard case .queued(let ticket) = action else {
                    Issue.record("request \(i) not queued: \(action)")
                    return
                }
                requests.append(request)
                tickets.append(ticket)
            }
            let midpoint = UInt64(1_800_000_000 + round)
            #expect(server.seal(midpoint: midpoint, signer: &keys.online, hasher: &hasher) == .sealed(signatures: size >= 3 ? 2 : 1))
            #expect(server.queued == tickets)
            let answers = writeReplies(server, tickets)
            var perBatch: [Int: Int] = [:]
            for t in tickets { perBatch[t.batch, default: 0] += 1 }
            for i in 0..<size {
                #expect(answers[i].count <= requests[i].count)
                let time = try verify(request: requests[i], reply: answers[i], key: keys.longTerm.publicKey)
                #expect(time == RoughtimeVerifiedTime(midpoint: midpoint, radius: 3, version: i % 3 == 2 ? .draft12 : .rfc))
                var depth = 0
                while 1 << depth < perBatch[tickets[i].batch]! { depth += 1 }
                try answers[i].withUnsafeBytes { b in
                    let reply = try RoughtimeReply(packet: b)
                    #expect(reply.path.count == 32 * depth)
                    #expect(reply.index == UInt32(tickets[i].index))
                }
            }
            if size == 64 {
                // 43 version-1 requests and 21 draft ones: PATHs of 6 and 5 levels.
                #expect(perBatch.values.sorted() == [21, 43])
            }
            server.removeAll()
        }
    }

    /// A full batch refuses more, with its own reason.
    @Test func fullBatchIsCounted() {
        let keys = TestServerKeys()
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 1)
        var hasher = RoughtimeSHA512()
        let actions = (0..<3).map { _ in
            RoughtimeRequestBuilder.packet(nonce: randomNonce(), versions: [.rfc]).withUnsafeBytes { server.receive($0, midpoint: 1_800_000_000, hasher: &hasher) }
        }
        #expect(actions[2] == .ignore(.roughtimeInternal))
    }

    /// A midpoint outside the certificate's MINT…MAXT is never signed: every queued request is
    /// dropped, for that reason.
    @Test func sealRefusesMidpointOutsideDelegation() {
        var keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 2)
        var hasher = RoughtimeSHA512()
        _ = RoughtimeRequestBuilder.packet(nonce: randomNonce()).withUnsafeBytes { server.receive($0, midpoint: 1500, hasher: &hasher) }
        #expect(server.seal(midpoint: 2001, signer: &keys.online, hasher: &hasher) == .dropped(.roughtimeDelegationExpired))
        #expect(server.queued.isEmpty)
    }

    /// MIDP and RADI come from the batch's read time and the clock state: the time rounded to
    /// the nearest second, the root dispersion plus that rounding in whole seconds (§5.2.5).
    @Test func sealTakesMidpointAndRadiusFromTheReadTimeAndTheClock() throws {
        var keys = TestServerKeys()
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 2)
        var hasher = RoughtimeSHA512()
        let readTime = UTCInstant(secondsSinceUnixEpoch: 1_800_000_000, nanoseconds: 600_000_000)
        var clock = ServerCalls.clock(at: 1_800_000_000)
        clock.rootDispersionNanoseconds = 2_600_000_000
        let request = RoughtimeRequestBuilder.packet(nonce: randomNonce())
        let action = request.withUnsafeBytes {
            server.receive($0, from: ServerCalls.client, readTime: readTime, clock: clock, admission: ClientAdmission<NoRateLimit>(policy: ServicePolicy()), random: 0, hasher: &hasher)
        }
        guard case .queued(let ticket) = action else { Issue.record("not queued: \(action)"); return }
        #expect(server.seal(readTime: readTime, clock: clock, signer: &keys.online, hasher: &hasher) == .sealed(signatures: 1))
        var reply = [UInt8](repeating: 0, count: 1024)
        let length = reply.withUnsafeMutableBytes { server.writeReply(ticket, into: $0) }
        let time = try verify(request: request, reply: Array(reply[0..<length]), key: keys.longTerm.publicKey)
        #expect(time.midpoint == 1_800_000_001 && time.radius == 4)
    }

    /// The one decision call refuses in order: a malformed request for its own reason (before
    /// admission, so garbage costs no rate-limit token), then a denied client, then an
    /// unsynchronised clock, then an expired delegation.
    @Test func receiveDecidesInOneCall() {
        let keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 2)
        var hasher = RoughtimeSHA512()
        let request = RoughtimeRequestBuilder.packet(nonce: randomNonce())
        let denied = ClientAdmission<NoRateLimit>(policy: ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [198, 51, 100, 0], length: 24)])))
        let inside = ServerCalls.readTime(1500)
        func receive(_ bytes: [UInt8], admission: ClientAdmission<NoRateLimit> = ClientAdmission(policy: ServicePolicy()), clock: ServerClockState = ServerCalls.clock(at: 1500), at readTime: UTCInstant = inside) -> RoughtimeServerAction {
            bytes.withUnsafeBytes { server.receive($0, from: ServerCalls.client, readTime: readTime, clock: clock, admission: admission, random: 0, hasher: &hasher) }
        }
        #expect(receive(Array(request.prefix(500)), admission: denied) == .ignore(.tooShort))
        #expect(receive(request, admission: denied) == .ignore(.denied))
        #expect(receive(request, clock: .unsynchronized) == .ignore(.unsynchronized))
        #expect(receive(request, at: ServerCalls.readTime(2001)) == .ignore(.roughtimeDelegationExpired))
        #expect(server.queued.isEmpty && server.batches.allSatisfy { $0.count == 0 })
        guard case .queued = receive(request) else { Issue.record("not queued"); return }
    }

    /// An online signer that fails (the key store gone, a hardware token unplugged) fails the
    /// whole batch: nothing is marked sealed, no reply can be written from it, and the next
    /// batch, with a working signer, is answered as if nothing happened.
    @Test func failedSignatureFailsTheBatchAndTheNextOneIsAnswered() throws {
        struct FailingSigner: RoughtimeSigner {
            var publicKey: [UInt8] { [UInt8](repeating: 0, count: 32) }
            mutating func sign(_ message: UnsafeRawBufferPointer, into signature: UnsafeMutableRawBufferPointer) -> Bool { false }
        }
        var keys = TestServerKeys()
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 2)
        var hasher = RoughtimeSHA512()
        for _ in 0..<3 {
            _ = RoughtimeRequestBuilder.packet(nonce: randomNonce()).withUnsafeBytes { server.receive($0, midpoint: 1_800_000_000, hasher: &hasher) }
        }
        var failing = FailingSigner()
        #expect(server.seal(midpoint: 1_800_000_000, signer: &failing, hasher: &hasher) == .dropped(.roughtimeInternal))
        #expect(server.batches.allSatisfy { !$0.isSealed })
        server.removeAll()
        let request = RoughtimeRequestBuilder.packet(nonce: randomNonce())
        guard case .queued(let ticket) = request.withUnsafeBytes({ server.receive($0, midpoint: 1_800_000_000, hasher: &hasher) }) else {
            Issue.record("not queued after the failed batch"); return
        }
        #expect(server.seal(midpoint: 1_800_000_000, signer: &keys.online, hasher: &hasher) == .sealed(signatures: 1))
        var reply = [UInt8](repeating: 0, count: 1024)
        let length = reply.withUnsafeMutableBytes { server.writeReply(ticket, into: $0) }
        let time = try request.withUnsafeBytes { q in
            try Array(reply[0..<length]).withUnsafeBytes { r in
                try RoughtimeClient.verify(request: q, reply: r, longTermPublicKey: keys.longTerm.publicKey, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
            }
        }
        #expect(time.midpoint == 1_800_000_000 && time.radius == 3)
    }

    /// A request received while the midpoint lies outside MINT…MAXT is not queued: an expired
    /// (or not yet valid) delegation answers nothing, for its own reason (§5.2.6).
    @Test(arguments: [UInt64(999), 2001, 1_800_000_000])
    func receiveRefusesMidpointOutsideDelegation(midpoint: UInt64) {
        let keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 2)
        var hasher = RoughtimeSHA512()
        let request = RoughtimeRequestBuilder.packet(nonce: randomNonce())
        #expect(request.withUnsafeBytes { server.receive($0, midpoint: midpoint, hasher: &hasher) } == .ignore(.roughtimeDelegationExpired))
        #expect(server.batches.allSatisfy { $0.count == 0 })
        // A malformed request keeps its own reason, whatever the time.
        #expect(Array(request.prefix(500)).withUnsafeBytes { server.receive($0, midpoint: midpoint, hasher: &hasher) } == .ignore(.tooShort))
        // The edges are inside (MINT ≤ MIDP ≤ MAXT).
        for edge in [UInt64(1000), 2000] {
            guard case .queued = request.withUnsafeBytes({ server.receive($0, midpoint: edge, hasher: &hasher) }) else {
                Issue.record("not queued at \(edge)")
                return
            }
        }
    }

    /// One batch of five; reply 3 and its request, to break.
    struct Exchange {
        var keys = TestServerKeys()
        var requests: [[UInt8]] = []
        var replies: [[UInt8]] = []

        init() {
            var server = RoughtimeServer(policy: RoughtimeRequestPolicy(srv: keys.srv), certificate: keys.certificate, maximumDepth: 3)
            var hasher = RoughtimeSHA512()
            var tickets: [RoughtimeReplyTicket] = []
            for _ in 0..<5 {
                let request = RoughtimeRequestBuilder.packet(nonce: randomNonce(), srv: keys.srv)
                guard case .queued(let t) = request.withUnsafeBytes({ server.receive($0, midpoint: 1_800_000_000, hasher: &hasher) }) else { fatalError("not queued") }
                requests.append(request)
                tickets.append(t)
            }
            precondition(server.seal(midpoint: 1_800_000_000, signer: &keys.online, hasher: &hasher) == .sealed(signatures: 1))
            replies = writeReplies(server, tickets)
        }

        /// Where `tag` lies in reply 3 (top level, or inside CERT or SREP).
        func range(_ tag: RoughtimeTag, in parent: RoughtimeTag? = nil) -> Range<Int> {
            replies[3].withUnsafeBytes { b in
                let m = try! RoughtimeMessage(packet: b)
                guard let parent else { return m.range(of: tag)!.offset(by: 12) }
                let outer = m.range(of: parent)!
                let inner = try! m.message(parent)
                if let r = inner.range(of: tag) { return r.offset(by: 12 + outer.lowerBound) }
                let dele = try! inner.message(.DELE)
                return dele.range(of: tag)!.offset(by: 12 + outer.lowerBound + inner.range(of: .DELE)!.lowerBound)
            }
        }

        /// How reply 3, changed by `change`, fares against `request` (request 3 by default).
        func check(request: [UInt8]? = nil, key: [UInt8]? = nil, _ change: (inout [UInt8]) -> Void = { _ in }) -> RoughtimeVerificationError? {
            var reply = replies[3]
            change(&reply)
            do throws(RoughtimeVerificationError) {
                _ = try verify(request: request ?? requests[3], reply: reply, key: key ?? keys.longTerm.publicKey)
                return nil
            } catch {
                return error
            }
        }
    }

    @Test func brokenRepliesFailTheirOwnCheck() {
        let x = Exchange()
        #expect(x.check() == nil)
        #expect(x.check { $0[x.range(.SIG).lowerBound] ^= 1 } == .badResponseSignature)
        #expect(x.check { $0[x.range(.MIDP, in: .SREP).lowerBound] ^= 1 } == .badResponseSignature)
        #expect(x.check { $0[x.range(.ROOT, in: .SREP).lowerBound] ^= 1 } == .badResponseSignature)
        #expect(x.check { $0[x.range(.SIG, in: .CERT).lowerBound] ^= 1 } == .badDelegationSignature)
        #expect(x.check { $0[x.range(.MAXT, in: .CERT).lowerBound] ^= 1 } == .badDelegationSignature)
        #expect(x.check { $0[x.range(.PUBK, in: .CERT).lowerBound] ^= 1 } == .badDelegationSignature)
        #expect(x.check { $0[x.range(.PATH).lowerBound + 40] ^= 1 } == .merkleProofFailed)
        #expect(x.check { $0[x.range(.INDX).lowerBound] = 2 } == .merkleProofFailed)
        #expect(x.check { $0[x.range(.INDX).lowerBound] = 3 + 8 } == .merkleProofFailed)  // bits beyond PATH (§5.3.1)
        #expect(x.check { $0[x.range(.NONC).lowerBound] ^= 1 } == .nonceMismatch)
        #expect(x.check { $0[x.range(.TYPE).lowerBound] = 2 } == .wrongType)
        #expect(x.check { $0.removeLast(4) } == .malformedReply(.badLength))
        #expect(x.check(request: x.requests[2]) == .nonceMismatch)
        #expect(x.check(key: RoughtimeEd25519Signer().publicKey) == .badDelegationSignature)

        let nonce = Array(x.requests[3][92..<124])
        #expect(RoughtimeRequestBuilder.packet(nonce: nonce, srv: x.keys.srv) == x.requests[3])
        #expect(x.check(request: RoughtimeRequestBuilder.packet(nonce: nonce, versions: [.draft12], srv: x.keys.srv)) == .versionNotOffered(.rfc))
        #expect(x.check(request: RoughtimeRequestBuilder.packet(nonce: nonce, srv: x.keys.srv, length: 400)) == .replyLargerThanRequest)
        #expect(x.check(request: Array(repeating: 0, count: 1024)) == .badRequest(.badMagic))
    }

    /// Replies built field by field with the encoder, signed with the real keys, to reach the
    /// checks that signatures would otherwise hide. The first, built as the batch builds, is
    /// byte for byte the batch's reply: two writers, one layout.
    @Test func handBuiltRepliesReachEveryCheck() throws {
        var keys = TestServerKeys(minimumTime: 1000, maximumTime: 2000)
        let request = RoughtimeRequestBuilder.packet(nonce: randomNonce(), srv: keys.srv)

        func build(midpoint: UInt64 = 1500, radius: UInt32 = 3, type: UInt32 = 1, version: RoughtimeVersion = .rfc,
                   vers: [RoughtimeVersion] = [.rfc, .draft12], path: [UInt8] = []) -> [UInt8] {
            var hasher = RoughtimeSHA512()
            var root = [UInt8](repeating: 0, count: 32)
            request.withUnsafeBytes { q in root.withUnsafeMutableBytes { hasher.hashLeaf(q, into: $0) } }
            let srep = RoughtimeEncoder.message([
                .VER: RoughtimeEncoder.bytes(version.rawValue), .RADI: RoughtimeEncoder.bytes(radius),
                .MIDP: RoughtimeEncoder.bytes(midpoint), .VERS: RoughtimeEncoder.bytes(vers), .ROOT: root,
            ])
            var signature = [UInt8](repeating: 0, count: 64)
            let signed = RoughtimeContext.response + srep
            let ok = signed.withUnsafeBytes { m in signature.withUnsafeMutableBytes { keys.online.sign(m, into: $0) } }
            precondition(ok)
            return RoughtimeEncoder.packet([
                .SIG: signature, .NONC: Array(request[92..<124]), .TYPE: RoughtimeEncoder.bytes(type), .PATH: path,
                .SREP: srep, .CERT: keys.certificate.bytes, .INDX: RoughtimeEncoder.bytes(UInt32(0)),
            ])
        }
        func check(_ reply: [UInt8], against sent: [UInt8]? = nil) -> RoughtimeVerificationError? {
            do throws(RoughtimeVerificationError) {
                _ = try verify(request: sent ?? request, reply: reply, key: keys.longTerm.publicKey)
                return nil
            } catch {
                return error
            }
        }

        var batch = RoughtimeBatch(version: .rfc, certificate: keys.certificate, maximumDepth: 0)
        var hasher = RoughtimeSHA512()
        #expect(request.withUnsafeBytes { batch.append(request: $0, nonceOffset: 92, hasher: &hasher) } == 0)
        try batch.seal(midpoint: 1500, radius: 3, signer: &keys.online, hasher: &hasher)
        var fromBatch = [UInt8](repeating: 0, count: 1024)
        let length = fromBatch.withUnsafeMutableBytes { batch.writeReply(0, into: $0) }
        #expect(length == 416 + 4)
        #expect(Array(fromBatch[0..<length]) == build())

        #expect(check(build()) == nil)
        #expect(check(build(midpoint: 2001)) == .outsideDelegation)
        #expect(check(build(midpoint: 999)) == .outsideDelegation)
        #expect(check(build(midpoint: 2000)) == nil)
        #expect(check(build(radius: 0)) == .zeroRadius)
        #expect(check(build(type: 0)) == .wrongType)
        #expect(check(build(vers: [.draft12])) == .versionNotListed)
        #expect(check(build(version: .draft08, vers: [.draft08])) == .versionNotOffered(.draft08))
        #expect(check(build(path: [UInt8](repeating: 0, count: 36))) == .badPath)
        let long = RoughtimeRequestBuilder.packet(nonce: Array(request[92..<124]), srv: keys.srv, length: 1600)
        #expect(check(build(path: [UInt8](repeating: 0, count: 33 * 32)), against: long) == .badPath)
        #expect(check(build(path: [UInt8](repeating: 0, count: 32))) == .merkleProofFailed)
    }
}

extension Range where Bound == Int {
    /// The range moved by `offset`.
    func offset(by offset: Int) -> Range<Int> { (lowerBound + offset)..<(upperBound + offset) }
}
