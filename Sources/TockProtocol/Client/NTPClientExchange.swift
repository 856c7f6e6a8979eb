/// Why a client rejected an NTP reply (RFC 5905 §8 packet tests, RFC 4330 §5).
public enum NTPReplyProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not a well-formed NTP header.
    case malformed(NTPParseError)
    /// Not mode 4 (server).
    case wrongMode(UInt8)
    /// Version outside 1...4.
    case badVersion(UInt8)
    /// The origin timestamp is not the transmit timestamp we sent: a stale, duplicated or forged
    /// reply (RFC 5905 §8, "bogus").
    case bogusOrigin
    /// Stratum 0 with a kiss code that demands action: RATE, DENY, RSTR (RFC 5905 §7.4) or
    /// NTSN (RFC 8915 §5.7).
    case kissOfDeath(KissCode)
    /// Leap indicator 3, stratum 16, or stratum 0 without an actionable kiss code (e.g. `INIT`):
    /// the server says it has no usable time.
    case unsynchronized
    /// The transmit (or receive) timestamp is zero (RFC 4330 §5: the reply must be discarded).
    case zeroTimestamp
    /// Root distance above the 1.5 s a client may accept (RFC 5905 §11.2, MAXDIST).
    case rootDistanceExceeded(nanoseconds: Int64)

    public var description: String {
        switch self {
        case .malformed(let e): "malformed reply (\(e))"
        case .wrongMode(let m): "reply has mode \(m), not 4 (server)"
        case .badVersion(let v): "reply has unsupported version \(v)"
        case .bogusOrigin: "bogus reply: its origin timestamp is not our transmit timestamp"
        case .kissOfDeath(let code): "kiss-o'-death \(code)"
        case .unsynchronized: "server is unsynchronised (leap indicator 3 or stratum 0/16)"
        case .zeroTimestamp: "reply carries a zero receive or transmit timestamp"
        case .rootDistanceExceeded(let ns): "root distance \(Double(ns) / 1e9) s exceeds 1.5 s"
        }
    }
}

/// One NTP measurement: the four timestamps and what follows from them (RFC 5905 §8).
public struct NTPSample: Sendable, Hashable {
    /// Our send time (T1), kept private: the request carried a random transmit timestamp.
    public var t1: UTCInstant
    /// Server receive time (T2).
    public var t2: UTCInstant
    /// Server transmit time (T3).
    public var t3: UTCInstant
    /// Our receive time (T4).
    public var t4: UTCInstant
    /// The server's header.
    public var packet: NTPPacket

    /// Clock offset θ = ((T2 − T1) + (T3 − T4)) / 2: how far the server is ahead of us.
    public var offsetNanoseconds: Int64 {
        (t2.nanoseconds(since: t1) + t3.nanoseconds(since: t4)) / 2
    }

    /// Round-trip delay δ = (T4 − T1) − (T3 − T2), never below zero.
    public var delayNanoseconds: Int64 {
        max(0, t4.nanoseconds(since: t1) - t3.nanoseconds(since: t2))
    }

    /// The bound on the offset's error from this exchange: half the delay plus both clocks'
    /// precision (an asymmetric path can put the true offset anywhere in θ ± δ/2).
    public func errorNanoseconds(localPrecision: Int8) -> Int64 {
        delayNanoseconds / 2 + Self.nanoseconds(log2Seconds: packet.precision) + Self.nanoseconds(log2Seconds: localPrecision)
    }

    /// Root synchronisation distance λ = (root delay + δ)/2 + root dispersion (RFC 5905 §11.2,
    /// without the dispersion growth of a single sample).
    public var rootDistanceNanoseconds: Int64 {
        (packet.rootDelay.nanoseconds + delayNanoseconds) / 2 + packet.rootDispersion.nanoseconds
    }

    /// The server's time at T4 as we estimate it: our receive time plus the offset.
    public var serverTimeAtReceipt: UTCInstant {
        t4.advanced(byNanoseconds: offsetNanoseconds)
    }

    static func nanoseconds(log2Seconds p: Int8) -> Int64 {
        NTPServer.nanoseconds(precision: p)
    }
}

/// The client side of one NTP exchange (RFC 5905 §8, RFC 4330 §5), without I/O.
///
/// The request's transmit timestamp is random, as chrony's is: the server echoes it as the
/// origin, so a reply proves it saw our request, and an off-path attacker cannot forge one by
/// guessing our clock. T1 is the local time just before sending, which only we know.
public struct NTPClientExchange: Sendable {
    /// The transmit timestamp we put in the request.
    public let requestTransmit: NTPTimestamp
    /// The version we ask in.
    public let version: UInt8

    /// Prepares an exchange with a random transmit timestamp.
    public init<R: RandomNumberGenerator>(version: UInt8 = 4, random: inout R) {
        var value: UInt64 = 0
        while value == 0 { value = random.next() }
        self.requestTransmit = NTPTimestamp(rawValue: value)
        self.version = version
    }

    /// Prepares an exchange with a chosen transmit timestamp (tests).
    public init(version: UInt8 = 4, requestTransmit: NTPTimestamp) {
        self.requestTransmit = requestTransmit
        self.version = version
    }

    /// The 48-byte request: mode 3, our version, everything zero except the transmit timestamp
    /// (RFC 4330 §5 recommends zeroing the rest so the request says nothing about our clock).
    public var requestBytes: [UInt8] {
        NTPPacket(leap: .noWarning, version: version, mode: .client, transmitTimestamp: requestTransmit).bytes
    }

    /// Checks a reply received at `t4` for a request sent at `t1`, in RFC 5905's order: the
    /// origin test comes before the kiss-o'-death test so that a forged kiss cannot stop us.
    public func evaluate(reply: [UInt8], t1: UTCInstant, t4: UTCInstant) -> Result<NTPSample, NTPReplyProblem> {
        let packet: NTPPacket
        do {
            packet = try NTPPacket(decoding: reply)
        } catch {
            return .failure(.malformed(error))
        }
        guard (1...4).contains(packet.version) else { return .failure(.badVersion(packet.version)) }
        guard packet.mode == .server else { return .failure(.wrongMode(packet.mode.rawValue)) }
        guard packet.originTimestamp == requestTransmit else { return .failure(.bogusOrigin) }
        if packet.stratum == 0 {
            if let code = packet.kissCode, Self.isActionableKissCode(code) { return .failure(.kissOfDeath(code)) }
            return .failure(.unsynchronized)
        }
        if packet.leap == .unsynchronized || packet.stratum >= 16 { return .failure(.unsynchronized) }
        guard !packet.transmitTimestamp.isZero, !packet.receiveTimestamp.isZero else { return .failure(.zeroTimestamp) }
        let sample = NTPSample(
            t1: t1,
            t2: packet.receiveTimestamp.instant(near: t1),
            t3: packet.transmitTimestamp.instant(near: t1),
            t4: t4,
            packet: packet
        )
        if sample.rootDistanceNanoseconds > 1_500_000_000 {
            return .failure(.rootDistanceExceeded(nanoseconds: sample.rootDistanceNanoseconds))
        }
        return .success(sample)
    }

    /// The kiss codes that tell a client to act (RFC 5905 §7.4: DENY and RSTR to stop, RATE
    /// to slow down; RFC 8915 §5.7: NTSN to renew its cookies). Other codes at stratum 0, such
    /// as NTPsec's and ntpd's `INIT` before their first synchronisation or `STEP`, only say the
    /// server has no usable time: they are reported as unsynchronised.
    static func isActionableKissCode(_ code: KissCode) -> Bool {
        code == .rate || code == .deny || code == .restrict || code == .ntsNak
    }
}
