import ArgumentParser
import Glibc
import TockClient
import TockCrypto
import TockProtocol
import TockSockets

/// Exit statuses of `tock query`, one per kind of failure.
enum QueryExit: Int32 {
    case ok = 0
    case timeout = 2
    case kissOfDeath = 3
    case unsynchronized = 4
    case badReply = 5
    case resolution = 6
    case network = 7
    case ntsRefused = 8
    case ntsKeyEstablishment = 9
    case roughtimeBadSignature = 10
    case roughtimeOutsideDelegation = 11
    case roughtimeMerkleProof = 12

    init(_ error: ClientError) {
        switch error {
        case .resolution: self = .resolution
        case .timeout: self = .timeout
        case .network: self = .network
        case .unreadableReply: self = .badReply
        case .ntsRejected: self = .ntsRefused
        case .ntsKeyEstablishment: self = .ntsKeyEstablishment
        case .roughtimeRejected(_, let problem):
            switch problem {
            case .badDelegationSignature, .badResponseSignature: self = .roughtimeBadSignature
            case .outsideDelegation: self = .roughtimeOutsideDelegation
            case .merkleProofFailed: self = .roughtimeMerkleProof
            default: self = .badReply
            }
        case .rejected(_, let problem):
            switch problem {
            case .kissOfDeath: self = .kissOfDeath
            case .unsynchronized: self = .unsynchronized
            default: self = .badReply
            }
        }
    }
}

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a server for the time and show it with offset, delay and the server's state.",
        discussion: """
            SERVER is HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address; names resolve to A and \
            AAAA records and the first address answers. Default ports: NTP 123, Daytime 13, Time 37, \
            Roughtime 2002.

            NTP replies pass RFC 5905's checks: mode 4, origin equal to our (random) transmit \
            timestamp, non-zero timestamps, no kiss-o'-death, leap indicator not 3, stratum 1-15, \
            root distance at most 1.5 s. Each sample uses a new random source port.

            With --nts (RFC 8915), SERVER is the NTS-KE server (default port 4460): tock runs \
            key establishment over TLS 1.3 (ALPN ntske/1, the certificate verified for SERVER \
            against the system's CAs or --ca FILE), then queries the NTP server and port it \
            names (else SERVER's address, port 123) with cookies. A reply counts only if it \
            echoes our Unique Identifier and its Authenticator verifies under the negotiated \
            keys; each sample spends a fresh cookie, and the cookies in replies replace them.

            With --protocol roughtime (RFC 10049), tock sends a 1024-byte request offering \
            versions 1 and 0x8000000c (--roughtime-version 0x8000000b asks a draft-11 server such \
            as Cloudflare's, 0x80000008 a draft-08 one) with a random nonce and checks the reply against \
            --public-key (base64 or hex): the nonce echoed, the certificate signed by that key, \
            the response signed by the online key, the midpoint within MINT..MAXT, and the \
            Merkle proof from our request to the signed root. It prints the midpoint (UTC), the \
            radius, the local clock's offset from the midpoint and the version. With --tcp the \
            same packet goes over a TCP connection (RFC 10049 §5) and the reply, read up to \
            the length its header gives and never longer than the request, gets the same checks.

            Exit status: 0 valid synchronised answer; 2 timeout; 3 kiss-o'-death (RATE, DENY, \
            RSTR, NTSN...; with --nts an authenticated one); 4 server unsynchronised; 5 bogus \
            or malformed reply; 6 name resolution failed; 7 network error (e.g. connection \
            refused); 8 NTS: the reply was not \
            authenticated (no or a bad Authenticator, not our Unique Identifier) or was an NTS \
            NAK (the cookie was refused: run NTS-KE again); 9 NTS key establishment failed \
            (TLS, certificate not trusted or not for SERVER, no ALPN ntske/1, an Error record, \
            no cookies); 10 Roughtime: a signature does not verify (the certificate under \
            --public-key, or the response under the online key); 11 Roughtime: the midpoint lies \
            outside the certificate's MINT..MAXT; 12 Roughtime: the Merkle proof fails; 64 usage \
            error.
            """
    )

    enum ProtocolName: String, ExpressibleByArgument, CaseIterable {
        case ntp, daytime, time, roughtime
    }

    @Argument(help: "The server: HOST[:PORT]; with --nts, the NTS-KE server.")
    var server: String

    @Option(name: .long, help: "Protocol: ntp, daytime (RFC 867), time (RFC 868) or roughtime (RFC 10049).")
    var `protocol`: ProtocolName = .ntp

    @Flag(help: "Use TCP (Daytime, Time and Roughtime; NTP is UDP).")
    var tcp = false

    @Option(name: .short, help: "NTP samples to take; the one with the lowest delay is reported, with the spread of all (1-100).")
    var n: Int = 1

    @Option(help: "Seconds between NTP samples (0-60).")
    var interval: Double = 0.1

    @Option(help: "Seconds to wait for each reply, and with --nts for key establishment (0.01-60).")
    var timeout: Double = 2

    @Option(name: .customLong("ntp-version"), help: "NTP version to ask in, 1-4.")
    var ntpVersion: UInt8 = 4

    @Flag(help: "Use NTS (RFC 8915): SERVER is the NTS-KE server (default port 4460); NTP goes where it says, authenticated.")
    var nts = false

    @Option(name: .customLong("ca"), help: ArgumentHelp("With --nts: trust the CA certificates in this PEM file instead of the system's.", valueName: "file"))
    var caFile: String?

    @Option(name: .customLong("public-key"), help: ArgumentHelp("With --protocol roughtime: the server's long-term Ed25519 public key, base64 or hex.", valueName: "key"))
    var publicKey: String?

    @Option(name: .customLong("roughtime-version"), help: ArgumentHelp("With --protocol roughtime: the version to offer instead of 1 and 0x8000000c (repeatable): 1, 0x8000000c (drafts 12-19), 0x8000000b (draft 11, Cloudflare's deployment) or 0x80000008 (draft 08).", valueName: "version"))
    var roughtimeVersions: [String] = []

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    /// The versions `--roughtime-version` names, or nil when one is not a version this client
    /// can check (a reply in an unknown layout could not be verified).
    var offeredRoughtimeVersions: [RoughtimeVersion]? {
        if roughtimeVersions.isEmpty { return [.rfc, .draft12] }
        var out: [RoughtimeVersion] = []
        for text in roughtimeVersions {
            let lower = text.lowercased()
            let number = lower.hasPrefix("0x") ? UInt32(lower.dropFirst(2), radix: 16) : UInt32(lower)
            guard let number, RoughtimeVersion(rawValue: number).dialect != nil else { return nil }
            out.append(RoughtimeVersion(rawValue: number))
        }
        return out
    }

    func validate() throws {
        if nts {
            guard `protocol` == .ntp else { throw ValidationError("--nts protects NTP only; drop --protocol \(`protocol`.rawValue)") }
            guard ntpVersion == 4 else { throw ValidationError("--nts needs NTPv4 (RFC 8915 §5); drop --ntp-version \(ntpVersion)") }
        } else if caFile != nil {
            throw ValidationError("--ca applies to --nts (the NTS-KE server's certificate)")
        }
        if let caFile, access(caFile, R_OK) != 0 {
            throw ValidationError("--ca \(caFile): \(String(cString: strerror(errno)))")
        }
        guard (1...100).contains(n) else { throw ValidationError("-n must be 1-100, got \(n)") }
        guard (0.01...60).contains(timeout) else { throw ValidationError("--timeout must be 0.01-60 seconds, got \(timeout)") }
        guard (0...60).contains(interval) else { throw ValidationError("--interval must be 0-60 seconds, got \(interval)") }
        guard (1...4).contains(ntpVersion) else { throw ValidationError("--ntp-version must be 1-4, got \(ntpVersion)") }
        if `protocol` == .roughtime {
            guard let publicKey else { throw ValidationError("--protocol roughtime needs the server's --public-key (base64 or hex)") }
            guard RoughtimeKeyText.decode(publicKey) != nil else { throw ValidationError("--public-key must be 32 bytes as 44 base64 characters or 64 hex digits") }
            guard offeredRoughtimeVersions != nil else {
                throw ValidationError("--roughtime-version must be 1, 0x8000000c, 0x8000000b or 0x80000008, got \(roughtimeVersions.joined(separator: ", "))")
            }
        } else if publicKey != nil {
            throw ValidationError("--public-key applies to --protocol roughtime")
        } else if !roughtimeVersions.isEmpty {
            throw ValidationError("--roughtime-version applies to --protocol roughtime")
        }
        if tcp, `protocol` == .ntp { throw ValidationError("--tcp applies to --protocol daytime, time or roughtime; NTP runs over UDP") }
    }

    func run() throws {
        let defaultPort: UInt16 = switch `protocol` {
        case .ntp: nts ? NTSKEClient.defaultPort : 123
        case .daytime: 13
        case .time: 37
        case .roughtime: TockService.roughtime.wellKnownPort
        }
        let parsed: HostAndPort
        do {
            parsed = try HostAndPort(parsing: server, bareNumberIsPort: false)
        } catch {
            throw ValidationError(error.description)
        }
        guard let host = parsed.host else { throw ValidationError("invalid server '\(server)': no host") }
        let timeoutNanoseconds = Int64(timeout * 1e9)
        do throws(ClientError) {
            let addresses = try Resolver.resolve(host, port: parsed.port ?? defaultPort)
            let address = addresses[0]
            switch `protocol` {
            case .ntp where nts:
                let session = try NTSKEClient(host: host, caFile: caFile, timeoutNanoseconds: timeoutNanoseconds).establish(with: address)
                let ntpServer = try session.ntpEndpoint()
                let query = NTSQuery(samples: n, timeoutNanoseconds: timeoutNanoseconds, intervalNanoseconds: Int64(interval * 1e9))
                let result = query.run(session: session, server: ntpServer)
                guard let best = result.ntp.best else { throw result.ntp.lastError ?? .timeout(server: ntpServer.description, seconds: timeout) }
                print(json ? QueryReport.ntsJSON(result, best: best, host: host) : QueryReport.ntsText(result, best: best, host: host))
            case .ntp:
                let query = NTPQuery(version: ntpVersion, samples: n, timeoutNanoseconds: timeoutNanoseconds, intervalNanoseconds: Int64(interval * 1e9))
                let result = query.run(server: address)
                guard let best = result.best else { throw result.lastError ?? .timeout(server: address.description, seconds: timeout) }
                print(json ? QueryReport.ntpJSON(result, best: best, host: host) : QueryReport.ntpText(result, best: best, host: host))
            case .roughtime:
                let query = RoughtimeQuery(publicKey: RoughtimeKeyText.decode(publicKey ?? "") ?? [], timeoutNanoseconds: timeoutNanoseconds,
                                           versions: offeredRoughtimeVersions ?? [.rfc, .draft12], tcp: tcp)
                let answer = try query.run(server: address)
                print(json ? QueryReport.roughtimeJSON(answer, host: host) : QueryReport.roughtimeText(answer, host: host))
            case .daytime, .time:
                let query = TextTimeQuery(kind: `protocol` == .time ? .time : .daytime, tcp: tcp, timeoutNanoseconds: timeoutNanoseconds)
                let answer = try query.run(server: address)
                print(json ? QueryReport.textTimeJSON(answer, tcp: tcp, host: host) : QueryReport.textTimeText(answer, tcp: tcp, host: host))
            }
        } catch {
            if json {
                print(QueryReport.errorJSON(error, host: host))
            }
            FileHandleStandardError.write("tock: \(error.description)\n")
            throw ExitCode(QueryExit(error).rawValue)
        }
    }
}

/// Writes to standard error.
enum FileHandleStandardError {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
