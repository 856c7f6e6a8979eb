import TockProtocol

/// The server core called as the transports call it, with what most tests hold fixed: any
/// client admitted, a synchronised clock whose error bound gives RADI 3, and a receive batch
/// read at `midpoint` seconds (so MIDP is `midpoint`).
enum ServerCalls {
    static let client = ClientAddress(ipv4: 0xC633_6407, port: 40_000)

    /// A synchronised local clock read at `midpoint`, 30 ns precision: RADI 3 (§5.2.5).
    static func clock(at midpoint: UInt64) -> ServerClockState {
        .local(stratum: 1, now: readTime(midpoint), precisionNanoseconds: 30)
    }

    static func readTime(_ midpoint: UInt64) -> UTCInstant {
        UTCInstant(secondsSinceUnixEpoch: Int64(midpoint))
    }
}

extension RoughtimeServer {
    /// `receive` from any client, admitted, with a synchronised clock, in a batch read at
    /// `midpoint`.
    mutating func receive<H: RoughtimeHasher>(_ request: UnsafeRawBufferPointer, midpoint: UInt64, hasher: inout H) -> RoughtimeServerAction {
        receive(request, from: ServerCalls.client, readTime: ServerCalls.readTime(midpoint), clock: ServerCalls.clock(at: midpoint),
                admission: ClientAdmission<NoRateLimit>(policy: ServicePolicy()), random: 0, hasher: &hasher)
    }

    /// `seal` for a batch read at `midpoint` with a synchronised clock (RADI 3).
    mutating func seal<Signer: RoughtimeSigner, H: RoughtimeHasher>(midpoint: UInt64, signer: inout Signer, hasher: inout H) -> RoughtimeSealOutcome {
        seal(readTime: ServerCalls.readTime(midpoint), clock: ServerCalls.clock(at: midpoint), signer: &signer, hasher: &hasher)
    }
}
