/// What kind of reply a decision wrote.
public enum NTPReplyKind: Sendable, Hashable {
    /// A time reply: the transport stamps the transmit timestamp (T3) into it just before
    /// sending (`NTPServer.stampTransmitTime`).
    case time
    /// A kiss-o'-death (RFC 5905 §7.4) with this code, sent because of `reason`; complete as
    /// written, with no timestamps to stamp. An NTS NAK (RFC 8915 §5.7) is `NTSN`.
    case kissOfDeath(KissCode, reason: DropReason)
    /// An NTS-protected time reply (RFC 8915 §5.7): the transport stamps T3 and then seals it
    /// (`NTPServer.sealAuthenticatedReply`), because the AEAD covers the transmit timestamp.
    case authenticatedTime
    /// An interleaved time reply (RFC 9769): complete as written, its transmit timestamp being
    /// the kernel's of the previous reply to this client, so the transport must not stamp T3.
    /// Its own kernel transmit timestamp is wanted for the client's next request, for the log
    /// entry it names.
    case interleavedTime(NTPLogEntry)
    /// A basic time reply, stamped like `.time`, to a request that asked for interleaved mode
    /// (RFC 9769: its origin is the receive timestamp of the last reply to this address) when
    /// the kernel's transmit timestamp of that reply is not known. Its own kernel transmit
    /// timestamp is wanted, for the log entry it names, so the client's next request can be
    /// answered interleaved.
    case timeForInterleavedClient(NTPLogEntry)

    /// Whether the transport should learn when this reply left (the kernel's transmit
    /// timestamp) and record it in the client log: only for clients in interleaved mode, so
    /// basic traffic costs no timestamps.
    @inlinable
    public var wantsTransmitTimestamp: Bool {
        switch self {
        case .interleavedTime, .timeForInterleavedClient: true
        case .time, .kissOfDeath, .authenticatedTime: false
        }
    }
}

/// The server's decision for one NTP datagram, carried out by the transport.
public enum NTPServerAction: Sendable, Hashable {
    /// Send the first `length` bytes of the reply buffer (after stamping T3 into a `.time` or
    /// `.timeForInterleavedClient` reply).
    case respond(length: Int, kind: NTPReplyKind)
    /// Send nothing, and count `reason`.
    case ignore(DropReason)
}

/// The NTP server's whole per-request decision (RFC 5905 §8 and §9.2, server side): protocol
/// validation, access list, rate limit and kiss-o'-death, and the reply bytes, with no I/O
/// and no clock reads.
///
/// Per packet it reads the request and writes the reply in buffers the caller owns; it does
/// not allocate. The transport calls `handle` with the receive time (T2) and, for a `.time`
/// or `.timeForInterleavedClient` reply, `stampTransmitTime` with T3 as late as it can before
/// sending.
public struct NTPServer: Sendable {
    /// log2 seconds of the clock's resolution, put in every reply and used to randomise the
    /// timestamp bits below it.
    public let precision: Int8
    /// The fraction bits below the precision, which carry no information and are randomised
    /// so a client cannot predict timestamps (chrony does the same).
    @usableFromInline let randomMask: UInt64

    /// A server for a clock of the given precision.
    public init(precision: Int8) {
        self.precision = precision
        let randomBits = max(0, min(32, 32 + Int(precision)))
        self.randomMask = randomBits == 0 ? 0 : (UInt64(1) << UInt64(randomBits)) - 1
    }

    /// The longest reply `handle` writes: 48 bytes, or 52 with a crypto-NAK. A reply is never
    /// longer than its request, so NTP's amplification factor stays at most 1.
    public static let maximumReplyLength = 52

    /// Decides what to do with `request` from `client`, received at `receiveTime` (T2), and
    /// writes the reply (all but a time reply's transmit timestamp) into `reply`, which must
    /// hold `maximumReplyLength` bytes.
    ///
    /// In order:
    /// 1. Protocol validation, so malformed and non-client packets are counted as such and
    ///    only valid requests can ever be kissed. Only client requests are answered (RFC 5905
    ///    §9.2's dispatch table: mode 3 → mode 4); the version is echoed (1...4). NTPv1 had no
    ///    mode field: its requests carry mode 0 and are told from servers' packets by the
    ///    source port, so they are answered only when it isn't 123. Extension fields are
    ///    validated (RFC 7822) and ignored.
    /// 2. Admission: the access list, then the rate limit (`ClientAdmission.admit`). A refused
    ///    client gets a kiss-o'-death when the policy says so, otherwise nothing.
    /// 3. The time reply. A request with a MAC gets a crypto-NAK (four zero bytes: no
    ///    symmetric keys are configured, RFC 5905 §7.3) so an authenticating client learns
    ///    why, in a reply still no longer than its request.
    @inlinable
    public func handle<Table: RateLimitTable>(
        _ request: UnsafeRawBufferPointer,
        from client: ClientAddress,
        receiveTime: UTCInstant,
        clock: ServerClockState,
        admission: ClientAdmission<Table>,
        reply: UnsafeMutableRawBufferPointer,
        random: inout FastRandom
    ) -> NTPServerAction {
        var nts: NoNTS?
        return handle(request, from: client, receiveTime: receiveTime, clock: clock, admission: admission, nts: &nts, reply: reply, random: &random)
    }

    /// `handle` for a server that also speaks NTS (RFC 8915 §5.7): a request with NTS fields
    /// is answered only when its cookie opens and its authenticator verifies, with the
    /// Unique Identifier echoed and new cookies (one per cookie and placeholder, at most
    /// eight) encrypted under the S2C key; an unusable cookie gets an NTS NAK (kiss `NTSN`,
    /// the Unique Identifier echoed, nothing else); a bad authenticator gets nothing. `reply`
    /// must be a whole slot of `NTSReplyScratch.slotLength` bytes when `nts` is not nil: the
    /// S2C key and the plaintext wait past the reply for `sealAuthenticatedReply`. Requests
    /// without NTS fields are answered as plain NTP.
    @inlinable
    public func handle<Table: RateLimitTable, Crypto: NTSServerCrypto>(
        _ request: UnsafeRawBufferPointer,
        from client: ClientAddress,
        receiveTime: UTCInstant,
        clock: ServerClockState,
        admission: ClientAdmission<Table>,
        nts: inout Crypto?,
        reply: UnsafeMutableRawBufferPointer,
        random: inout FastRandom
    ) -> NTPServerAction {
        var log: NoInterleavedLog?
        return handle(request, from: client, receiveTime: receiveTime, clock: clock, admission: admission, nts: &nts, interleaved: &log, reply: reply, random: &random)
    }

    /// `handle` for a server that also answers in the interleaved client/server mode
    /// (RFC 9769) through `interleaved`, the per-client log of its replies' receive and kernel
    /// transmit timestamps; nil answers every request in basic mode.
    ///
    /// A request is interleaved when it is NTPv4 without NTS fields or a MAC, its origin
    /// timestamp is the receive timestamp of the last reply to this address, the kernel's
    /// transmit timestamp of that reply is known, and its receive and transmit fields differ
    /// (chrony's server test: a client in basic mode may send them equal, and then the origin
    /// match could be chance). The interleaved reply (RFC 9769's server side) carries the
    /// request's receive field as origin, this exchange's T2 as receive, and the previous
    /// reply's kernel transmit timestamp as transmit; it is `.interleavedTime`, complete as
    /// written. A request that asks for interleaved mode the same way but whose previous
    /// reply's transmit timestamp is not known gets a basic reply marked
    /// `.timeForInterleavedClient`: like `.interleavedTime`, its kernel transmit timestamp is
    /// wanted. Any other request gets the basic `.time` reply, whose transmit timestamp nobody
    /// will ask for, so the transport need not learn it. Every plain time reply is recorded in
    /// the log (its T2), so the client's next request can show interleaved intent; NTS-protected
    /// replies are neither interleaved nor recorded (an authenticated interleaved reply would
    /// need the previous reply's cookies kept too).
    ///
    /// As chrony does, a reply's receive timestamp has its lowest bit set and its transmit
    /// timestamp the lowest bit clear, so the two are never equal and a basic client's origin
    /// (our transmit timestamp) never matches a saved receive timestamp.
    @inlinable
    public func handle<Table: RateLimitTable, Crypto: NTSServerCrypto, Log: NTPInterleavedLog>(
        _ request: UnsafeRawBufferPointer,
        from client: ClientAddress,
        receiveTime: UTCInstant,
        clock: ServerClockState,
        admission: ClientAdmission<Table>,
        nts: inout Crypto?,
        interleaved log: inout Log?,
        reply: UnsafeMutableRawBufferPointer,
        random: inout FastRandom
    ) -> NTPServerAction {
        guard request.count >= NTPPacket.headerLength else { return .ignore(.tooShort) }
        let first = request[0]
        let version = (first >> 3) & 0x7
        let mode = first & 0x7
        guard version >= 1, version <= 4 else { return .ignore(.badVersion) }
        switch mode {
        case NTPMode.client.rawValue:
            break
        case NTPMode.reserved.rawValue where version == 1 && client.port != 123:
            break
        default:
            return .ignore(.notClientMode)
        }
        let trailer: NTPTrailer
        do {
            trailer = try NTPTrailer(validating: request, version: version)
        } catch {
            return .ignore(.malformed)
        }
        let origin = NTPWire.load64(request, NTPWire.transmitOffset)

        switch admission.admit(client, random: random.next()) {
        case .serve:
            break
        case .drop(let reason):
            return .ignore(reason)
        case .kiss(let code, let reason):
            Self.writeKissOfDeath(code, version: version, poll: request[2], origin: origin, reply: reply)
            return .respond(length: NTPPacket.headerLength, kind: .kissOfDeath(code, reason: reason))
        }

        // NTS (RFC 8915 §5.7): only NTPv4 carries extension fields, and only a server with
        // cookie keys reads them.
        var fields: NTSRequestFields?
        if nts != nil, trailer.extensionFieldCount > 0, trailer.macLength == 0 {
            do {
                fields = try NTSRequestFields(parsing: request)
            } catch .malformed {
                return .ignore(.ntsMalformed)
            } catch {
                fields = nil
            }
        }

        reply[0] = clock.leap.rawValue << 6 | version << 3 | NTPMode.server.rawValue
        reply[1] = clock.stratum
        reply[2] = request[2]  // poll, echoed (RFC 5905 §9.2)
        reply[3] = UInt8(bitPattern: precision)
        NTPWire.store32(NTPShort(nanoseconds: clock.rootDelayNanoseconds).rawValue, reply, NTPWire.rootDelayOffset)
        NTPWire.store32(NTPShort(nanoseconds: clock.rootDispersionNanoseconds).rawValue, reply, NTPWire.rootDispersionOffset)
        NTPWire.store32(clock.referenceID, reply, NTPWire.referenceIDOffset)
        let reference = clock.isSynchronized ? NTPTimestamp(clock.referenceTime).rawValue : 0
        NTPWire.store64(reference, reply, NTPWire.referenceTimeOffset)
        // RFC 9769: the previous reply's kernel transmit timestamp, when this request asks for it.
        // (`origin` is the request's transmit timestamp: a basic reply's origin.)
        let plain = fields == nil && trailer.macLength == 0
        var previousTransmit: UInt64?
        var interleavedClient = false
        if plain, version == 4, log != nil {
            let requestOrigin = NTPWire.load64(request, NTPWire.originOffset)
            if requestOrigin & 1 == 1, NTPWire.load64(request, NTPWire.receiveOffset) != origin {
                switch log!.previousReply(of: client, previousReceive: requestOrigin) {
                case .unknown:
                    break
                case .transmitPending:
                    interleavedClient = true
                case .transmitted(let transmit):
                    interleavedClient = true
                    previousTransmit = transmit
                }
            }
        }
        let replyOrigin = previousTransmit == nil ? origin : NTPWire.load64(request, NTPWire.receiveOffset)
        NTPWire.store64(replyOrigin, reply, NTPWire.originOffset)
        // Receive odd, transmit even (chrony's marking): never equal to each other.
        var receive = NTPTimestamp(receiveTime).rawValue & ~randomMask | random.next() & randomMask | 1
        if receive == replyOrigin { receive &+= 2 }
        NTPWire.store64(receive, reply, NTPWire.receiveOffset)
        NTPWire.store64(0, reply, NTPWire.transmitOffset)
        if let fields {
            return authenticate(request, fields: fields, crypto: &nts!, reply: reply, random: &random)
        }
        if trailer.macLength > 0 {
            NTPWire.store32(0, reply, NTPPacket.headerLength)
            return .respond(length: NTPPacket.headerLength + 4, kind: .time)
        }
        let entry = log == nil ? 0 : log!.replied(to: client, receive: receive)
        if var transmit = previousTransmit {
            transmit &= ~1
            if transmit == replyOrigin { transmit &+= 2 }
            NTPWire.store64(transmit, reply, NTPWire.transmitOffset)
            return .respond(length: NTPPacket.headerLength, kind: .interleavedTime(NTPLogEntry(entry: entry, receive: receive)))
        }
        return .respond(length: NTPPacket.headerLength, kind: interleavedClient ? .timeForInterleavedClient(NTPLogEntry(entry: entry, receive: receive)) : .time)
    }

    /// The NTS part of a reply whose header `handle` has written: opens the cookie, verifies the
    /// authenticator, and lays out the Unique Identifier, the Authenticator's header and nonce,
    /// and (in the scratch area) the S2C key and the new cookies to seal once T3 is stamped.
    @inlinable
    func authenticate<Crypto: NTSServerCrypto>(
        _ request: UnsafeRawBufferPointer,
        fields: NTSRequestFields,
        crypto: inout Crypto,
        reply: UnsafeMutableRawBufferPointer,
        random: inout FastRandom
    ) -> NTPServerAction {
        let scratch = UnsafeMutableRawBufferPointer(rebasing: reply[NTSReplyScratch.offset..<(NTSReplyScratch.offset + NTSReplyScratch.length)])
        let keys = UnsafeMutableRawBufferPointer(rebasing: scratch[8..<136])
        let uidLength = fields.uniqueIdentifier.count
        guard let algorithm = crypto.openCookie(UnsafeRawBufferPointer(rebasing: request[fields.cookie]), keys: keys) else {
            // NTS NAK: a kiss-o'-death NTSN with the Unique Identifier echoed, so the client
            // knows its cookie is stale and runs NTS-KE again (RFC 8915 §5.7).
            let version = (request[0] >> 3) & 0x7
            Self.writeKissOfDeath(.ntsNak, version: version, poll: request[2], origin: NTPWire.load64(request, NTPWire.transmitOffset), reply: reply)
            UnsafeMutableRawBufferPointer(rebasing: reply[NTPPacket.headerLength..<(NTPPacket.headerLength + uidLength)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: request[fields.uniqueIdentifier]))
            return .respond(length: NTPPacket.headerLength + uidLength, kind: .kissOfDeath(.ntsNak, reason: .ntsBadCookie))
        }
        let keyLength = algorithm.keyLength
        let c2s = UnsafeRawBufferPointer(rebasing: keys[0..<keyLength])
        let plaintextArea = UnsafeMutableRawBufferPointer(rebasing: scratch[136..<NTSReplyScratch.length])
        let ciphertext = UnsafeRawBufferPointer(rebasing: request[fields.ciphertext])
        guard ciphertext.count - 16 <= plaintextArea.count,
              crypto.open(
                key: c2s,
                nonce: UnsafeRawBufferPointer(rebasing: request[fields.nonce]),
                associatedData: UnsafeRawBufferPointer(rebasing: request[0..<fields.authenticatorStart]),
                ciphertext: ciphertext,
                into: UnsafeMutableRawBufferPointer(rebasing: plaintextArea[0..<(ciphertext.count - 16)])
              )
        else { return .ignore(.ntsBadAuthenticator) }
        // Extension fields the client encrypted carry nothing this server acts on.

        // The reply: header (written), Unique Identifier echoed, Authenticator.
        var offset = NTPPacket.headerLength
        UnsafeMutableRawBufferPointer(rebasing: reply[offset..<(offset + uidLength)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: request[fields.uniqueIdentifier]))
        offset += uidLength
        // As many cookies as the client used and asked for, at most eight, and never so many
        // that the reply outgrows the request.
        let cookieLength = crypto.cookieLength(for: algorithm)
        let cookieField = 4 + (cookieLength + 3) & ~3
        let fixed = offset + 8 + 16 + 16  // Authenticator header, nonce, tag
        var cookies = min(1 + fields.placeholders, NTSReplyScratch.maximumCookies)
        while cookies > 0, fixed + cookies * cookieField > request.count { cookies -= 1 }
        guard cookies > 0, cookies * cookieField <= plaintextArea.count else { return .ignore(.ntsMalformed) }
        var plain = 0
        for _ in 0..<cookies {
            NTPWire.store16(NTSExtensionFieldType.cookie.rawValue, plaintextArea, plain)
            NTPWire.store16(UInt16(cookieField), plaintextArea, plain + 2)
            let body = UnsafeMutableRawBufferPointer(rebasing: plaintextArea[(plain + 4)..<(plain + cookieField)])
            let written = crypto.sealCookie(algorithm: algorithm, keys: UnsafeRawBufferPointer(rebasing: keys[0..<(keyLength + keyLength)]), into: body)
            for i in written..<body.count { body[i] = 0 }
            plain += cookieField
        }
        let authenticatorLength = 8 + 16 + 16 + plain
        NTPWire.store16(NTSExtensionFieldType.authenticator.rawValue, reply, offset)
        NTPWire.store16(UInt16(authenticatorLength), reply, offset + 2)
        NTPWire.store16(16, reply, offset + 4)
        NTPWire.store16(UInt16(16 + plain), reply, offset + 6)
        NTPWire.store64(random.next(), reply, offset + 8)
        NTPWire.store64(random.next(), reply, offset + 16)
        // The scratch's first bytes: the key length and the plaintext length, for the seal.
        scratch[0] = UInt8(keyLength)
        NTPWire.store16(UInt16(plain), scratch, 2)
        return .respond(length: offset + authenticatorLength, kind: .authenticatedTime)
    }

    /// Stamps T3 into an `.authenticatedTime` reply and seals its Authenticator: the new
    /// cookies waiting in the slot's scratch area are encrypted under the S2C key, with the
    /// reply up to the Authenticator as associated data (RFC 8915 §5.6), into the reply.
    /// `slot` is the whole slot buffer; `length` the reply's.
    @inlinable
    public func sealAuthenticatedReply<Crypto: NTSServerCrypto>(_ transmitTime: UTCInstant, slot: UnsafeMutableRawBufferPointer, length: Int, crypto: inout Crypto, random: inout FastRandom) {
        stampTransmitTime(transmitTime, reply: slot, random: &random)
        let scratch = UnsafeMutableRawBufferPointer(rebasing: slot[NTSReplyScratch.offset..<(NTSReplyScratch.offset + NTSReplyScratch.length)])
        let keyLength = Int(scratch[0])
        let plain = Int(NTPWire.load16(UnsafeRawBufferPointer(scratch), 2))
        let authenticator = NTPPacket.headerLength + Int(NTPWire.load16(UnsafeRawBufferPointer(slot), NTPPacket.headerLength + 2))
        _ = crypto.seal(
            key: UnsafeRawBufferPointer(rebasing: scratch[(8 + keyLength)..<(8 + 2 * keyLength)]),
            nonce: UnsafeRawBufferPointer(rebasing: slot[(authenticator + 8)..<(authenticator + 24)]),
            associatedData: UnsafeRawBufferPointer(rebasing: slot[0..<authenticator]),
            plaintext: UnsafeRawBufferPointer(rebasing: scratch[136..<(136 + plain)]),
            into: UnsafeMutableRawBufferPointer(rebasing: slot[(authenticator + 24)..<(authenticator + 24 + 16 + plain)])
        )
        precondition(authenticator + 24 + 16 + plain == length, "NTS reply layout")
    }

    /// Writes a kiss-o'-death (RFC 5905 §7.4): leap 3, stratum 0, the kiss code as reference
    /// ID, the origin echoed so the client can trust it, and no usable timestamps (receive and
    /// transmit zero, which RFC 4330 clients reject as time).
    @inlinable
    static func writeKissOfDeath(_ code: KissCode, version: UInt8, poll: UInt8, origin: UInt64, reply: UnsafeMutableRawBufferPointer) {
        reply[0] = LeapIndicator.unsynchronized.rawValue << 6 | version << 3 | NTPMode.server.rawValue
        reply[1] = 0
        reply[2] = poll
        reply[3] = 0
        NTPWire.store32(0, reply, NTPWire.rootDelayOffset)
        NTPWire.store32(0, reply, NTPWire.rootDispersionOffset)
        NTPWire.store32(code.rawValue, reply, NTPWire.referenceIDOffset)
        NTPWire.store64(0, reply, NTPWire.referenceTimeOffset)
        NTPWire.store64(origin, reply, NTPWire.originOffset)
        NTPWire.store64(0, reply, NTPWire.receiveOffset)
        NTPWire.store64(0, reply, NTPWire.transmitOffset)
    }

    /// Writes the transmit timestamp (T3) into a `.time` or `.timeForInterleavedClient` reply
    /// written by `handle`.
    ///
    /// T3 is made strictly later than T2 and different from the origin, whatever the clock did
    /// between them: equal timestamps would make a client's duplicate and bogus tests
    /// (RFC 5905 §8) misfire, and an earlier T3 would be a negative server processing time.
    @inlinable
    public func stampTransmitTime(_ transmitTime: UTCInstant, reply: UnsafeMutableRawBufferPointer, random: inout FastRandom) {
        let written = UnsafeRawBufferPointer(reply)
        let receive = NTPWire.load64(written, NTPWire.receiveOffset)
        let origin = NTPWire.load64(written, NTPWire.originOffset)
        // The lowest bit clear, so T3 never equals an (odd) receive timestamp: a basic client's
        // origin then never looks like an interleaved request (RFC 9769, chrony's marking).
        var transmit = (NTPTimestamp(transmitTime).rawValue & ~randomMask | random.next() & randomMask) & ~1
        // Compare modulo 2^64 so the test holds across an era boundary.
        if Int64(bitPattern: transmit &- receive) <= 0 { transmit = (receive &+ 2) & ~1 }
        if transmit == origin { transmit &+= 2 }
        NTPWire.store64(transmit, reply, NTPWire.transmitOffset)
    }

    /// 2^`precision` seconds in nanoseconds, rounded up (a bound): what a precision field
    /// (RFC 5905 §7.3) says the clock's step is.
    public static func nanoseconds(precision p: Int8) -> Int64 {
        let p = Int(p)
        if p >= 0 { return 1_000_000_000 << min(p, 30) }
        if p <= -30 { return 1 }
        return Int64((1e9 * Double.pow2(p)).rounded(.up))
    }

    /// The precision (log2 seconds) of a clock whose smallest observable step is
    /// `resolutionNanoseconds` (RFC 5905 §7.3: the time to read the clock): log2 of the step,
    /// rounded to the nearest integer, as chronyd states it, at most 0. A clock read in 20 ns
    /// is 2^-26 s (15 ns), not 2^-25 s (30 ns): rounding up would double the random fill below
    /// the precision, which is most of the error left in an interleaved exchange.
    public static func precision(resolutionNanoseconds: Int64) -> Int8 {
        let step = Double(max(1, resolutionNanoseconds)) / 1e9
        // The nearest p: the first whose upper half-way point, 2^(p + 1/2), is above the step.
        var p = -32
        while p < 0, step >= Double.pow2(p) * 2.0.squareRoot() { p += 1 }
        return Int8(p)
    }
}

extension Double {
    static func pow2(_ exponent: Int) -> Double {
        Double(sign: .plus, exponent: exponent, significand: 1)
    }
}
