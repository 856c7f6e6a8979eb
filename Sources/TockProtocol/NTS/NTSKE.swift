/// NTS Key Establishment (RFC 8915 §4): records, the server's decision for one request, and
/// the client's reading of a response. No I/O: the TLS transport hands in the bytes it read
/// and sends the bytes returned.

/// An NTS-KE record type (RFC 8915 §4.1, IANA "NTS Key Establishment Record Types").
public enum NTSKERecordType: UInt16, Sendable, Hashable, CaseIterable {
    /// Ends a message; critical, empty body (§4.1.1).
    case endOfMessage = 0
    /// The protocols to use after key establishment; critical (§4.1.2).
    case nextProtocol = 1
    /// A fatal error; critical (§4.1.3).
    case error = 2
    /// A non-fatal condition; critical (§4.1.4).
    case warning = 3
    /// The AEAD algorithms for NTS-protected NTP (§4.1.5).
    case aeadAlgorithm = 4
    /// One cookie for NTPv4 (§4.1.6).
    case newCookie = 5
    /// The NTP server to use, when not the KE server's host (§4.1.7).
    case ntpServer = 6
    /// The NTP port to use, when not 123 (§4.1.8).
    case ntpPort = 7
}

/// An NTS-KE Error record's code (RFC 8915 §4.1.3).
public enum NTSKEErrorCode: UInt16, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A record with the critical bit set whose type the server does not know.
    case unrecognizedCriticalRecord = 0
    /// The request was malformed or missing a required record.
    case badRequest = 1
    /// The server could not complete the request.
    case internalServerError = 2

    /// The name RFC 8915 gives the code.
    public var description: String {
        switch self {
        case .unrecognizedCriticalRecord: "unrecognized critical record"
        case .badRequest: "bad request"
        case .internalServerError: "internal server error"
        }
    }
}

/// One NTS-KE record: a critical bit, a 15-bit type and a body (RFC 8915 §4, figure 3).
public struct NTSKERecord: Sendable, Hashable {
    /// Whether a receiver that does not know `type` must fail (the C bit).
    public var critical: Bool
    /// The record type, known or not.
    public var type: UInt16
    /// The body, at most 65535 bytes.
    public var body: [UInt8]

    /// A record of any type.
    public init(critical: Bool, type: UInt16, body: [UInt8] = []) {
        self.critical = critical
        self.type = type
        self.body = body
    }

    /// A record of a known type.
    public init(critical: Bool, _ type: NTSKERecordType, body: [UInt8] = []) {
        self.init(critical: critical, type: type.rawValue, body: body)
    }

    /// A record whose body is a list of 16-bit values (Next Protocol, AEAD, Error, Warning,
    /// Port).
    public init(critical: Bool, _ type: NTSKERecordType, values: [UInt16]) {
        self.init(critical: critical, type, body: values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] })
    }

    /// The body read as 16-bit values, or nil when its length is odd.
    public var values: [UInt16]? {
        guard body.count % 2 == 0 else { return nil }
        return stride(from: 0, to: body.count, by: 2).map { UInt16(body[$0]) << 8 | UInt16(body[$0 + 1]) }
    }

    /// The type, when known.
    public var knownType: NTSKERecordType? { NTSKERecordType(rawValue: type) }

    /// The record on the wire.
    public var bytes: [UInt8] {
        let head = (critical ? 0x8000 : 0) | type & 0x7FFF
        return [UInt8(head >> 8), UInt8(head & 0xFF), UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    /// Records on the wire, one after the other.
    public static func encode(_ records: [NTSKERecord]) -> [UInt8] {
        records.flatMap(\.bytes)
    }
}

/// Reads the records of one NTS-KE message from a byte stream that arrives in pieces (TLS
/// records, or a client that sends one byte at a time): `append` what arrived, and the
/// message is complete once End of Message has been read (RFC 8915 §4).
public struct NTSKEMessageReader: Sendable {
    /// The largest message accepted. RFC 8915 sets no limit; requests of real clients are
    /// under 100 bytes, and the issue's floor is 1024, so 4096 leaves room without letting a
    /// peer make the server buffer much.
    public static let defaultMaximumLength = 4096

    /// What the bytes so far amount to.
    public enum State: Sendable, Hashable {
        /// End of Message has not arrived yet.
        case incomplete
        /// A whole message: its records, End of Message last.
        case complete([NTSKERecord])
        /// Not a valid message: records past End of Message, a body longer than allowed, or
        /// a message over the size limit.
        case invalid(String)
    }

    private var buffer: [UInt8] = []
    private var records: [NTSKERecord] = []
    /// The state after the last `append`.
    public private(set) var state = State.incomplete
    /// The size limit for the whole message.
    public let maximumLength: Int
    private var consumed = 0

    /// A reader accepting messages up to `maximumLength` bytes.
    public init(maximumLength: Int = NTSKEMessageReader.defaultMaximumLength) {
        self.maximumLength = maximumLength
    }

    /// Adds bytes as they arrive and returns the new state. Bytes after a complete message
    /// make it invalid (a client sends one request, then waits).
    @discardableResult
    public mutating func append(_ bytes: some Collection<UInt8>) -> State {
        guard case .incomplete = state else {
            if !bytes.isEmpty, case .complete = state { state = .invalid("data after End of Message") }
            return state
        }
        buffer.append(contentsOf: bytes)
        while case .incomplete = state {
            let available = buffer.count - consumed
            guard available >= 4 else { break }
            let head = Int(buffer[consumed]) << 8 | Int(buffer[consumed + 1])
            let length = Int(buffer[consumed + 2]) << 8 | Int(buffer[consumed + 3])
            if consumed + 4 + length > maximumLength {
                state = .invalid("message longer than \(maximumLength) bytes")
                break
            }
            guard available >= 4 + length else { break }
            let record = NTSKERecord(critical: head & 0x8000 != 0, type: UInt16(head & 0x7FFF), body: Array(buffer[(consumed + 4)..<(consumed + 4 + length)]))
            consumed += 4 + length
            records.append(record)
            if record.type == NTSKERecordType.endOfMessage.rawValue {
                state = consumed == buffer.count ? .complete(records) : .invalid("data after End of Message")
            }
        }
        if case .incomplete = state, buffer.count > maximumLength {
            state = .invalid("message longer than \(maximumLength) bytes")
        }
        return state
    }
}

/// The AEAD algorithms NTS uses (RFC 8915 §5.1; IANA "AEAD Algorithms").
public enum NTSAEADAlgorithm: UInt16, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// AEAD_AES_SIV_CMAC_256 (RFC 5297): mandatory to implement; 32-byte keys.
    case aesSIVCMAC256 = 15
    /// AEAD_AES_SIV_CMAC_512 (RFC 5297): 64-byte keys.
    case aesSIVCMAC512 = 17

    /// The key length in bytes (each of C2S and S2C).
    public var keyLength: Int {
        switch self {
        case .aesSIVCMAC256: 32
        case .aesSIVCMAC512: 64
        }
    }

    /// The algorithm with this key length.
    public init?(keyLength: Int) {
        guard let algorithm = Self.allCases.first(where: { $0.keyLength == keyLength }) else { return nil }
        self = algorithm
    }

    /// The IANA name.
    public var description: String {
        switch self {
        case .aesSIVCMAC256: "AEAD_AES_SIV_CMAC_256"
        case .aesSIVCMAC512: "AEAD_AES_SIV_CMAC_512"
        }
    }
}

/// The NTS-KE server's decision for one complete request (RFC 8915 §4.1): which protocol and
/// algorithm, or which error. The transport derives the keys from the TLS session for the
/// chosen algorithm and has `response(...)` write the records.
public struct NTSKEServer: Sendable {
    /// The Next Protocol ID of NTPv4 (RFC 8915 §7.7).
    public static let ntpV4: UInt16 = 0
    /// The TLS ALPN protocol ID NTS-KE must negotiate (RFC 8915 §4).
    public static let alpn = "ntske/1"
    /// Cookies sent per key establishment: eight, as chrony and the RFC's examples do, so a
    /// client can make eight exchanges before it needs a new one from a reply.
    public static let cookiesPerResponse = 8

    /// Algorithms the server accepts, in no particular order: it follows the client's
    /// preference among them.
    public let algorithms: [NTSAEADAlgorithm]
    /// The NTP server to announce, when NTP is served by another host (§4.1.7).
    public let ntpServer: String?
    /// The NTP port to announce, when it is not 123 (§4.1.8).
    public let ntpPort: UInt16?

    /// A server accepting `algorithms`, announcing another NTP host or port if given.
    public init(algorithms: [NTSAEADAlgorithm] = NTSAEADAlgorithm.allCases, ntpServer: String? = nil, ntpPort: UInt16? = nil) {
        self.algorithms = algorithms
        self.ntpServer = ntpServer
        self.ntpPort = ntpPort
    }

    /// What the server decided.
    public enum Decision: Sendable, Hashable {
        /// Serve NTPv4 with this algorithm: derive its keys and send `response(...)`.
        case negotiated(NTSAEADAlgorithm)
        /// The client offered no protocol the server speaks: answer with an empty Next
        /// Protocol record and no cookies (§4.1.2).
        case noCommonProtocol
        /// NTPv4 agreed, but none of the client's algorithms: answer with an empty AEAD record
        /// and no cookies (§4.1.5).
        case noCommonAlgorithm
        /// Answer with this Error record and close (§4.1.3).
        case error(NTSKEErrorCode, reason: String)
    }

    /// Decides on a complete request.
    ///
    /// A request must have exactly one Next Protocol record with the critical bit, an AEAD
    /// record when it asks for NTPv4, no Error or Warning records (clients send neither), and
    /// End of Message last with an empty body; a critical record of an unknown type is an
    /// Error 0. Server and Port Negotiation records from a client state its preference, which
    /// a server may ignore (§4.1.7, §4.1.8), and New Cookie records from a client mean nothing.
    public func decide(_ records: [NTSKERecord]) -> Decision {
        var protocols: [UInt16]?
        var aeads: [UInt16]?
        for (index, record) in records.enumerated() {
            guard let type = record.knownType else {
                if record.critical { return .error(.unrecognizedCriticalRecord, reason: "unknown critical record type \(record.type)") }
                continue
            }
            switch type {
            case .endOfMessage:
                guard index == records.count - 1, record.body.isEmpty else { return .error(.badRequest, reason: "End of Message not last or not empty") }
            case .nextProtocol:
                guard protocols == nil else { return .error(.badRequest, reason: "more than one Next Protocol record") }
                guard record.critical else { return .error(.badRequest, reason: "Next Protocol record without the critical bit") }
                guard let values = record.values else { return .error(.badRequest, reason: "Next Protocol record of odd length") }
                protocols = values
            case .aeadAlgorithm:
                guard aeads == nil else { return .error(.badRequest, reason: "more than one AEAD record") }
                guard let values = record.values else { return .error(.badRequest, reason: "AEAD record of odd length") }
                aeads = values
            case .error, .warning:
                return .error(.badRequest, reason: "a client sent an \(type == .error ? "Error" : "Warning") record")
            case .ntpPort:
                guard record.body.count == 2 else { return .error(.badRequest, reason: "Port Negotiation record not 2 bytes") }
            case .newCookie, .ntpServer:
                continue
            }
        }
        guard records.last?.type == NTSKERecordType.endOfMessage.rawValue else { return .error(.badRequest, reason: "no End of Message") }
        guard let protocols else { return .error(.badRequest, reason: "no Next Protocol record") }
        guard protocols.contains(Self.ntpV4) else { return .noCommonProtocol }
        guard let aeads else { return .error(.badRequest, reason: "NTPv4 requested without an AEAD record") }
        for id in aeads {
            if let algorithm = NTSAEADAlgorithm(rawValue: id), algorithms.contains(algorithm) { return .negotiated(algorithm) }
        }
        return .noCommonAlgorithm
    }

    /// The response records for a decision; `cookies` are the New Cookie bodies for a
    /// negotiated request (ignored otherwise).
    public func response(for decision: Decision, cookies: [[UInt8]]) -> [NTSKERecord] {
        let end = NTSKERecord(critical: true, .endOfMessage)
        switch decision {
        case .error(let code, _):
            return [NTSKERecord(critical: true, .error, values: [code.rawValue]), end]
        case .noCommonProtocol:
            return [NTSKERecord(critical: true, .nextProtocol), end]
        case .noCommonAlgorithm:
            return [NTSKERecord(critical: true, .nextProtocol, values: [Self.ntpV4]), NTSKERecord(critical: true, .aeadAlgorithm), end]
        case .negotiated(let algorithm):
            var records = [
                NTSKERecord(critical: true, .nextProtocol, values: [Self.ntpV4]),
                NTSKERecord(critical: true, .aeadAlgorithm, values: [algorithm.rawValue]),
            ]
            if let ntpServer { records.append(NTSKERecord(critical: true, .ntpServer, body: Array(ntpServer.utf8))) }
            if let ntpPort { records.append(NTSKERecord(critical: true, .ntpPort, values: [ntpPort])) }
            records += cookies.map { NTSKERecord(critical: false, .newCookie, body: $0) }
            records.append(end)
            return records
        }
    }
}

/// What a client learnt from an NTS-KE response (RFC 8915 §4.1), or why it cannot use it.
public struct NTSKEResponse: Sendable, Hashable {
    /// The algorithm the server chose.
    public var algorithm: NTSAEADAlgorithm
    /// The cookies, in order.
    public var cookies: [[UInt8]]
    /// Where to send NTP, if not the KE server's host.
    public var ntpServer: String?
    /// Which port, if not 123.
    public var ntpPort: UInt16?
    /// Warning codes the server sent.
    public var warnings: [UInt16]

    /// Why a response cannot be used.
    public enum Problem: Error, Sendable, Hashable, CustomStringConvertible {
        /// The server sent an Error record.
        case serverError(UInt16)
        /// The server does not offer NTPv4.
        case noNTPv4
        /// The server offered none of our algorithms, or one we did not ask for.
        case noAlgorithm
        /// No cookies.
        case noCookies
        /// The response breaks the protocol.
        case malformed(String)

        /// What went wrong, for a person.
        public var description: String {
            switch self {
            case .serverError(let code): "the server sent Error \(code) (\(NTSKEErrorCode(rawValue: code)?.description ?? "unknown"))"
            case .noNTPv4: "the server does not offer NTPv4 over NTS"
            case .noAlgorithm: "the server chose no AEAD algorithm we offered"
            case .noCookies: "the server sent no cookies"
            case .malformed(let why): "malformed response: \(why)"
            }
        }
    }

    /// Reads a complete response to a request that offered `offered` algorithms.
    public init(records: [NTSKERecord], offered: [NTSAEADAlgorithm]) throws(Problem) {
        var algorithm: NTSAEADAlgorithm?
        var sawProtocol = false
        var cookies: [[UInt8]] = []
        var ntpServer: String?
        var ntpPort: UInt16?
        var warnings: [UInt16] = []
        for record in records {
            guard let type = record.knownType else {
                if record.critical { throw .malformed("unknown critical record \(record.type)") }
                continue
            }
            switch type {
            case .error:
                throw .serverError(record.values?.first ?? 0xFFFF)
            case .warning:
                warnings += record.values ?? []
            case .nextProtocol:
                guard !sawProtocol else { throw .malformed("two Next Protocol records") }
                sawProtocol = true
                guard record.values == [NTSKEServer.ntpV4] else { throw .noNTPv4 }
            case .aeadAlgorithm:
                guard let values = record.values, values.count == 1, let chosen = NTSAEADAlgorithm(rawValue: values[0]), offered.contains(chosen) else { throw .noAlgorithm }
                algorithm = chosen
            case .newCookie:
                cookies.append(record.body)
            case .ntpServer:
                ntpServer = String(decoding: record.body, as: UTF8.self)
            case .ntpPort:
                guard let values = record.values, values.count == 1 else { throw .malformed("Port record not 2 bytes") }
                ntpPort = values[0]
            case .endOfMessage:
                break
            }
        }
        guard sawProtocol else { throw .malformed("no Next Protocol record") }
        guard let algorithm else { throw .noAlgorithm }
        guard !cookies.isEmpty else { throw .noCookies }
        self.algorithm = algorithm
        self.cookies = cookies
        self.ntpServer = ntpServer
        self.ntpPort = ntpPort
        self.warnings = warnings
    }

    /// The request a client sends: NTPv4, the algorithms in order of preference, End of
    /// Message (RFC 8915 §4.1).
    public static func request(offering algorithms: [NTSAEADAlgorithm]) -> [UInt8] {
        NTSKERecord.encode([
            NTSKERecord(critical: true, .nextProtocol, values: [NTSKEServer.ntpV4]),
            NTSKERecord(critical: true, .aeadAlgorithm, values: algorithms.map(\.rawValue)),
            NTSKERecord(critical: true, .endOfMessage),
        ])
    }
}

/// The TLS exporter inputs that give the NTS keys (RFC 8915 §5.1): the label and, per
/// direction, the context Next Protocol ‖ AEAD ID ‖ 0x00 (client to server) or 0x01.
public enum NTSKeyExport {
    /// The exporter label.
    public static let label = "EXPORTER-network-time-security"

    /// The exporter context for NTPv4 with `algorithm`, client-to-server or server-to-client.
    public static func context(algorithm: NTSAEADAlgorithm, serverToClient: Bool) -> [UInt8] {
        [0, 0, UInt8(algorithm.rawValue >> 8), UInt8(algorithm.rawValue & 0xFF), serverToClient ? 1 : 0]
    }
}
