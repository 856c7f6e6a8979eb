import Testing
import TockProtocol

@Suite("ServerClockState and KernelClockReading")
struct ServerClockStateTests {
    static let now = utc(Instants.tuesday2026, 5)
    static let gps = ReferenceID.ascii("GPS")

    func reading(status: Int32, maxError: Int64 = 1_000, state: Int32 = 0) -> KernelClockReading {
        KernelClockReading(status: status, state: state, maxErrorMicroseconds: maxError, estimatedErrorMicroseconds: 10)
    }

    @Test func synchronisedKernelServesItsMaxErrorAsDispersion() {
        let state = reading(status: 0).serverState(stratum: 1, referenceID: Self.gps, now: Self.now)
        #expect(state == ServerClockState(
            leap: .noWarning, stratum: 1, referenceID: Self.gps, referenceTime: Self.now,
            rootDelayNanoseconds: 0, rootDispersionNanoseconds: 1_000_000
        ))
        #expect(state.isSynchronized)
    }

    @Test(arguments: [
        (Int32(0x0040), Int64(1_000)),  // STA_UNSYNC
        (0x0050, 1_000),  // STA_UNSYNC wins over STA_INS
        (0, 16_000_000),  // maxerror at the kernel's limit
        (0, 20_000_000),
    ])
    func unsynchronisedKernel(status: Int32, maxError: Int64) {
        let r = reading(status: status, maxError: maxError)
        #expect(!r.isSynchronized)
        #expect(r.serverState(stratum: 2, referenceID: Self.gps, now: Self.now) == .unsynchronized)
    }

    /// Fails: `isSynchronized` ignores `state`, although `stateError` is documented as "the
    /// return value of adjtimex for an unsynchronised clock". Linux returns TIME_ERROR without
    /// STA_UNSYNC for STA_CLOCKERR and for kernel-PPS faults (PPS signal lost, jitter, wander).
    @Test func timeErrorStateIsUnsynchronised() {
        let r = reading(status: 0, state: KernelClockReading.stateError)
        #expect(!r.isSynchronized)
        #expect(r.serverState(stratum: 2, referenceID: Self.gps, now: Self.now) == .unsynchronized)
    }

    @Test func maxErrorJustBelowTheLimitIsSynchronised() {
        let state = reading(status: 0, maxError: 15_999_999).serverState(stratum: 3, referenceID: 1, now: Self.now)
        #expect(state.leap == .noWarning)
        // As the wire states it: rounded up to the next 2^-16 s.
        #expect(state.rootDispersionNanoseconds == NTPShort(nanoseconds: 15_999_999_000).nanoseconds)
        #expect(state.rootDispersionNanoseconds >= 15_999_999_000 - 15_259)
    }

    @Test(arguments: [
        (Int32(0x0010), LeapIndicator.insertSecond),
        (0x0020, .deleteSecond),
        (0x2001, .noWarning),  // STA_PLL | STA_NANO: no leap
        (0x2011, .insertSecond),
    ])
    func pendingLeapSecondIsPassedThrough(status: Int32, leap: LeapIndicator) {
        let state = reading(status: status).serverState(stratum: 2, referenceID: 0x7F00_0001, now: Self.now)
        #expect(state.leap == leap)
        #expect(state.stratum == 2)
        #expect(state.referenceID == 0x7F00_0001)
    }

    @Test func unsynchronisedConstant() {
        let u = ServerClockState.unsynchronized
        #expect(u.leap == .unsynchronized)
        #expect(u.stratum == 0)
        #expect(u.referenceID == 0x494E_4954, "INIT, as NTPsec sends, never an empty kiss code")
        #expect(NTPPacket(leap: .unsynchronized, version: 4, mode: .server, stratum: 0, referenceID: u.referenceID).kissCode?.demandsStop == false)
        #expect(!u.isSynchronized)
    }

    @Test func localClock() {
        let local = ServerClockState.local(stratum: 10, now: Self.now, precisionNanoseconds: 954)
        #expect(local.leap == .noWarning)
        #expect(local.stratum == 10)
        #expect(local.referenceID == 0x7F7F_0101)  // 127.127.1.1 above stratum 1
        #expect(ServerClockState.local(stratum: 1, now: Self.now, precisionNanoseconds: 954).referenceID == 0x4C4F_434C)  // "LOCL"
        #expect(local.referenceTime == Self.now)
        #expect(local.rootDelayNanoseconds == 0)
        // 954 ns is stated on the wire as one 2^-16 s unit: the state holds what clients see.
        #expect(local.rootDispersionNanoseconds == 15_258)
        #expect(NTPShort(nanoseconds: local.rootDispersionNanoseconds).rawValue == 1)
    }
}
