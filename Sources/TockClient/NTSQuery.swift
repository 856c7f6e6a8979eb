import Glibc
import TockProtocol
import TockSockets

/// The outcome of NTS-protected queries: the samples as for plain NTP, and the cookies.
package struct NTSQueryResult: Sendable {
    /// The samples, the last failure and the requests sent, as `NTPQuery` reports them. Every
    /// sample in it was authenticated.
    package var ntp: NTPQueryResult
    /// The key establishment the queries used.
    package var session: NTSSession
    /// Cookies received in replies (RFC 8915 §5.7).
    package var cookiesReceived: Int
    /// Cookies left unused at the end.
    package var cookiesLeft: Int
}

/// Queries an NTP server with NTS (RFC 8915 §5.7): `samples` exchanges, each from its own
/// socket and random port, each spending one cookie and asking for enough back to hold eight,
/// as a real client keeps its supply.
package struct NTSQuery: Sendable {
    package var samples: Int
    package var timeoutNanoseconds: Int64
    package var intervalNanoseconds: Int64

    package init(samples: Int = 1, timeoutNanoseconds: Int64 = 2_000_000_000, intervalNanoseconds: Int64 = 100_000_000) {
        self.samples = samples
        self.timeoutNanoseconds = timeoutNanoseconds
        self.intervalNanoseconds = intervalNanoseconds
    }

    /// Runs the queries against `server` with `session`'s keys and cookies. An NTS NAK ends them
    /// at once (the cookies are useless), as does an authenticated kiss-o'-death; running out
    /// of cookies (every reply lost) ends them too.
    package func run(session: NTSSession, server: SocketEndpoint) -> NTSQueryResult {
        var result = NTSQueryResult(
            ntp: NTPQueryResult(server: server, samples: [], lastError: nil, sent: 0),
            session: session, cookiesReceived: 0, cookiesLeft: session.cookies.count
        )
        var cipher = session.cipher()
        var random = SystemRandomNumberGenerator()
        var cookies = session.cookies
        sampling: for index in 0..<max(1, samples) {
            guard !cookies.isEmpty else { break }
            if index > 0, intervalNanoseconds > 0 {
                var ts = timespec(tv_sec: Int(intervalNanoseconds / 1_000_000_000), tv_nsec: Int(intervalNanoseconds % 1_000_000_000))
                nanosleep(&ts, nil)
            }
            // Spend the oldest cookie; ask for it back and for any missing from eight.
            let cookie = cookies.removeFirst()
            let wanted = NTSClientPacket.maximumCookies - cookies.count
            result.ntp.sent += 1
            switch exchange(server: server, cookie: cookie, cookiesWanted: wanted, cipher: &cipher, random: &random) {
            case .success(let answer):
                result.ntp.samples.append(answer.sample)
                result.cookiesReceived += answer.cookies.count
                cookies += answer.cookies.prefix(NTSClientPacket.maximumCookies - cookies.count)
            case .failure(let error):
                result.ntp.lastError = error
                switch error {
                case .ntsRejected(_, .nak), .rejected(_, .kissOfDeath): break sampling
                default: continue
                }
            }
        }
        result.cookiesLeft = cookies.count
        return result
    }

    /// One request and its reply. Replies that are not ours or not authentic (wrong origin or
    /// Unique Identifier, no or a bad Authenticator) are ignored while the timeout lasts, as
    /// RFC 8915 §5.7 has a client discard them: an attacker who can send packets must not be
    /// able to end the exchange. A NAK, or an authentic reply that fails RFC 5905's checks,
    /// is final.
    func exchange(server: SocketEndpoint, cookie: [UInt8], cookiesWanted: Int, cipher: inout NTSSessionCipher, random: inout SystemRandomNumberGenerator) -> Result<NTSClientSample, ClientError> {
        let name = server.description
        do throws(ClientError) {
            let exchange = NTSClientExchange(cookie: cookie, cookiesWanted: cookiesWanted, cipher: &cipher, random: &random)
            let socket = try ClientSocket(server: server, type: Sockets.datagram)
            let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
            try socket.connect(deadline: deadline)
            let t1 = try socket.send(exchange.requestBytes)
            var lastProblem: NTSReplyProblem?
            while let (bytes, t4) = try socket.receive(deadline: deadline) {
                switch exchange.evaluate(reply: bytes, t1: t1, t4: t4, cipher: &cipher) {
                case .success(let answer):
                    return .success(answer)
                case .failure(.nak):
                    return .failure(.ntsRejected(server: name, .nak))
                case .failure(.ntp(.bogusOrigin)):
                    if lastProblem == nil { lastProblem = .ntp(.bogusOrigin) }
                case .failure(.ntp(let problem)):
                    return .failure(.rejected(server: name, problem))
                case .failure(let problem):
                    lastProblem = problem
                }
            }
            switch lastProblem {
            case .ntp(let problem)?: return .failure(.rejected(server: name, problem))
            case let problem?: return .failure(.ntsRejected(server: name, problem))
            case nil: return .failure(.timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9))
            }
        } catch {
            return .failure(error)
        }
    }
}
