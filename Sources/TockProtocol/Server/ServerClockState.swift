/// What the server states about its own clock in every reply: leap indicator, stratum,
/// reference ID and time, root delay and dispersion (RFC 5905 §7.3).
///
/// A clock-state source (the kernel, an operator's declaration) produces it; the responders
/// only copy it onto the wire, so what tockd claims is decided in one place.
public struct ServerClockState: Sendable, Hashable {
    /// `.unsynchronized` when clients must not follow this server; else a pending leap second.
    public var leap: LeapIndicator
    /// The stratum put on the wire; 0 when unsynchronised (RFC 5905 §7.3: "unspecified or invalid").
    public var stratum: UInt8
    /// The reference ID put on the wire.
    public var referenceID: UInt32
    /// When the clock was last set or corrected.
    public var referenceTime: UTCInstant
    /// Round-trip delay to the primary reference, in nanoseconds, as the wire states it (a
    /// 16.16 NTP short: a value is rounded up to the next 2^-16 s), so every display shows what clients
    /// receive.
    public var rootDelayNanoseconds: Int64
    /// Total dispersion to the primary reference, in nanoseconds, as the wire states it.
    public var rootDispersionNanoseconds: Int64
    /// Whether an inserted leap second is being counted now (the kernel's TIME_OOP): the wall
    /// clock repeats 23:59:59, and Daytime shows 23:59:60.
    public var leapSecondInProgress: Bool = false

    /// Creates a state from its fields.
    public init(
        leap: LeapIndicator,
        stratum: UInt8,
        referenceID: UInt32,
        referenceTime: UTCInstant,
        rootDelayNanoseconds: Int64,
        rootDispersionNanoseconds: Int64
    ) {
        self.leap = leap
        self.stratum = stratum
        self.referenceID = referenceID
        self.referenceTime = referenceTime
        self.rootDelayNanoseconds = NTPShort(nanoseconds: rootDelayNanoseconds).nanoseconds
        self.rootDispersionNanoseconds = NTPShort(nanoseconds: rootDispersionNanoseconds).nanoseconds
    }

    /// Whether clients may use this server's time.
    public var isSynchronized: Bool { leap != .unsynchronized }

    /// The state of a clock that must not be followed: leap 3, stratum 0, and the reference
    /// ID `INIT` (RFC 5905 §7.4: "the association has not yet synchronized for the first
    /// time"), as NTPsec sends. A zero reference ID at stratum 0 reads as a kiss-o'-death with
    /// an empty code to some clients; `INIT` says what it is, and tock's own client reports it
    /// as unsynchronised.
    public static let unsynchronized = ServerClockState(
        leap: .unsynchronized,
        stratum: 0,
        referenceID: KissCode.initializing.rawValue,
        referenceTime: UTCInstant(nanosecondsSinceUnixEpoch: 0),
        rootDelayNanoseconds: 0,
        rootDispersionNanoseconds: 0
    )

    /// A local clock declared authoritative by the operator (chrony's `local stratum N`):
    /// always synchronised, no root delay, a root dispersion of the clock's precision.
    public static func local(stratum: UInt8, now: UTCInstant, precisionNanoseconds: Int64) -> ServerClockState {
        ServerClockState(
            leap: .noWarning,
            stratum: stratum,
            referenceID: ReferenceID.localClock(stratum: stratum),
            referenceTime: now,
            rootDelayNanoseconds: 0,
            rootDispersionNanoseconds: precisionNanoseconds
        )
    }
}

/// The kernel's view of its clock, as `adjtimex(2)`/`ntp_adjtime(3)` report it.
///
/// The fields are copied from `struct timex` by the transport; interpreting them is a pure
/// function here so it can be tested with any kernel state.
public struct KernelClockReading: Sendable, Hashable {
    /// `STA_INS`: insert a leap second at the end of the current UTC day.
    public static let statusInsertLeap: Int32 = 0x0010
    /// `STA_DEL`: delete a leap second at the end of the current UTC day.
    public static let statusDeleteLeap: Int32 = 0x0020
    /// `STA_UNSYNC`: the clock is not synchronised.
    public static let statusUnsynchronized: Int32 = 0x0040
    /// `TIME_ERROR`: the return value of adjtimex for an unsynchronised clock.
    public static let stateError: Int32 = 5
    /// `TIME_OOP`: an inserted leap second is in progress.
    public static let stateLeapInProgress: Int32 = 3

    /// `timex.status`.
    public var status: Int32
    /// The return value of adjtimex (`TIME_OK` ... `TIME_ERROR`).
    public var state: Int32
    /// `timex.maxerror`, microseconds: the kernel grows it by 500 ppm until a daemon resets it.
    public var maxErrorMicroseconds: Int64
    /// `timex.esterror`, microseconds.
    public var estimatedErrorMicroseconds: Int64

    /// A reading from the fields of `struct timex` and adjtimex's return value, so tests can
    /// describe any kernel state without calling the kernel.
    public init(status: Int32, state: Int32, maxErrorMicroseconds: Int64, estimatedErrorMicroseconds: Int64) {
        self.status = status
        self.state = state
        self.maxErrorMicroseconds = maxErrorMicroseconds
        self.estimatedErrorMicroseconds = estimatedErrorMicroseconds
    }

    /// The kernel's ceiling for maxerror: at 16 s it considers the clock unsynchronised
    /// (`NTP_PHASE_LIMIT` in kernel/time/ntp.c).
    public static let unsynchronizedMaxErrorMicroseconds: Int64 = 16_000_000

    /// Whether the kernel considers its clock synchronised by some discipline (chronyd, ntpd,
    /// ptp4l, ...): STA_UNSYNC clear, maxerror below 16 s, and adjtimex not returning
    /// TIME_ERROR (which it also does for STA_CLOCKERR and PPS faults).
    public var isSynchronized: Bool {
        state != KernelClockReading.stateError
            && status & KernelClockReading.statusUnsynchronized == 0
            && maxErrorMicroseconds < KernelClockReading.unsynchronizedMaxErrorMicroseconds
    }

    /// The state to serve: unsynchronised when the kernel says so; else `stratum`, the pending
    /// leap passed through, and a root dispersion of the kernel's maximum error.
    ///
    /// The kernel applies STA_INS/STA_DEL at the end of the current UTC day, and disciplines set
    /// them only on that day, so passing them through announces a leap on its last day only
    /// (RFC 8633: no smearing on a public server; the leap is announced, then inserted).
    ///
    /// The kernel does not know the root delay; its maxerror is the discipline's bound on the
    /// whole error (ntpd and chronyd write root delay/2 + root dispersion into it), so it is
    /// served as the root dispersion with a root delay of zero.
    public func serverState(stratum: UInt8, referenceID: UInt32, now: UTCInstant) -> ServerClockState {
        guard isSynchronized else { return .unsynchronized }
        let leap: LeapIndicator
        if status & KernelClockReading.statusInsertLeap != 0 {
            leap = .insertSecond
        } else if status & KernelClockReading.statusDeleteLeap != 0 {
            leap = .deleteSecond
        } else {
            leap = .noWarning
        }
        var state = ServerClockState(
            leap: leap,
            stratum: stratum,
            referenceID: referenceID,
            referenceTime: now,
            rootDelayNanoseconds: 0,
            rootDispersionNanoseconds: maxErrorMicroseconds * 1000
        )
        state.leapSecondInProgress = self.state == KernelClockReading.stateLeapInProgress
        return state
    }
}
