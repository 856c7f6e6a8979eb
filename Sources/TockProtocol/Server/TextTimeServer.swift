/// A local time zone as the Daytime writer needs it: the offset from UTC and the abbreviation,
/// looked up by the transport (the zone database is I/O) once per batch or connection.
public struct LocalZone: Sendable, Hashable {
    /// Seconds east of UTC.
    public var offsetSeconds: Int
    /// Up to 8 ASCII bytes of the abbreviation, first byte in the highest used position.
    @usableFromInline var packedAbbreviation: UInt64
    /// How many bytes of `packedAbbreviation` are used.
    @usableFromInline var abbreviationLength: Int

    /// A zone with the given offset and abbreviation (at most 8 bytes are kept).
    public init(offsetSeconds: Int, abbreviation: some Collection<UInt8>) {
        self.offsetSeconds = offsetSeconds
        var packed: UInt64 = 0
        var count = 0
        for byte in abbreviation.prefix(8) {
            packed = packed << 8 | UInt64(byte)
            count += 1
        }
        packedAbbreviation = packed
        abbreviationLength = count
    }

    /// UTC, written with the abbreviation `UTC`.
    public static let utc = LocalZone(offsetSeconds: 0, abbreviation: Array("UTC".utf8))
}

/// The decision for Daytime (RFC 867) and Time (RFC 868) requests, shared by the UDP and TCP
/// transports: admission, the clock state, and the reply bytes, with no I/O and no clock reads.
///
/// Both protocols answer anything: RFC 867 and RFC 868 ignore the request's content. Both stay
/// silent while the clock is unsynchronised (RFC 868: "If the server is unable to determine the
/// time at its site, it should either refuse the connection or close it without sending
/// anything"; the same holds for Daytime, which has no way to say "unsynchronised").
public struct TextTimeServer: Sendable {
    /// Which of the two services this is: `.daytime` or `.time`.
    public let service: TockService
    /// How Daytime writes the time.
    public let format: DaytimeFormat
    /// Which zone Daytime writes in; the transport looks it up (`LocalZone`).
    public let zone: DaytimeZone

    /// A server for `service`, which must be `.daytime` or `.time`.
    public init(service: TockService, format: DaytimeFormat = .rfc867, zone: DaytimeZone = .local) {
        precondition(service == .daytime || service == .time, "a text time server serves Daytime or Time")
        self.service = service
        self.format = format
        self.zone = zone
    }

    /// The longest reply `handle` writes.
    public static let maximumReplyLength = max(Daytime.maximumReplyLength, RFC868.replyLength)

    /// How the request arrived, which decides one check.
    public enum Transport: Sendable, Hashable {
        /// A datagram: its source port is checked against reflection ports.
        case datagram
        /// A TCP connection: its peer completed a handshake, so it cannot be a spoofed
        /// reflector, and the connection cap applies in the transport.
        case stream
    }

    /// What to do with one request or connection.
    public enum Action: Sendable, Hashable {
        /// Send the first `length` bytes of the reply buffer.
        case respond(length: Int)
        /// Send nothing (close the connection), and count `reason`.
        case ignore(DropReason)
    }

    /// Whether this service needs the local zone looked up (Daytime in local time).
    public var needsLocalZone: Bool { service == .daytime && zone == .local }

    /// Decides on a request from `client` at `now` and writes the reply into `reply` (at least
    /// `maximumReplyLength` bytes). In order: a datagram from a reflection port is dropped
    /// (RFC 867 and 868 predate reflection loops), then the access list and rate limit, then
    /// silence while the clock is unsynchronised, then the time.
    @inlinable
    public func handle<Table: RateLimitTable>(
        from client: ClientAddress,
        transport: Transport,
        now: UTCInstant,
        localZone: LocalZone,
        clock: ServerClockState,
        admission: ClientAdmission<Table>,
        random: UInt64,
        reply: UnsafeMutableRawBufferPointer
    ) -> Action {
        if transport == .datagram, ReflectionPorts.isReflectionRisk(client.port) { return .ignore(.reflectionPort) }
        switch admission.admit(client, random: random) {
        case .serve: break
        case .drop(let reason), .kiss(_, let reason): return .ignore(reason)
        }
        guard clock.isSynchronized else { return .ignore(.unsynchronized) }
        return .respond(length: write(now: now, localZone: localZone, leapSecond: clock.leapSecondInProgress, into: reply))
    }

    /// Writes the reply for `now`.
    @inlinable
    func write(now: UTCInstant, localZone: LocalZone, leapSecond: Bool, into reply: UnsafeMutableRawBufferPointer) -> Int {
        switch service {
        case .time:
            return RFC868.encode(now, into: reply)
        default:
            let zone = needsLocalZone ? localZone : .utc
            var bigEndian = (zone.abbreviationLength == 0 ? 0 : zone.packedAbbreviation << (8 * UInt64(8 - zone.abbreviationLength))).bigEndian
            return withUnsafeBytes(of: &bigEndian) { raw in
                Daytime.write(
                    now,
                    format: format,
                    utcOffsetSeconds: zone.offsetSeconds,
                    zoneAbbreviation: UnsafeRawBufferPointer(rebasing: raw.prefix(zone.abbreviationLength)),
                    leapSecond: leapSecond,
                    into: reply
                )
            }
        }
    }
}
