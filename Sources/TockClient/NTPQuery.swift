import Glibc
import TockProtocol
import TockSockets

/// The outcome of querying one NTP server: every accepted sample and why others were not.
package struct NTPQueryResult: Sendable {
    /// The server queried.
    package var server: SocketEndpoint
    /// Accepted samples, in the order taken.
    package var samples: [NTPSample]
    /// The last rejection or timeout, if any sample failed.
    package var lastError: ClientError?
    /// Requests sent.
    package var sent: Int

    /// The sample with the lowest delay: the one least disturbed by queueing (as sntp and
    /// chrony's clock filter prefer).
    package var best: NTPSample? {
        samples.min { $0.delayNanoseconds < $1.delayNanoseconds }
    }

    /// Largest minus smallest offset over the accepted samples.
    package var offsetSpreadNanoseconds: Int64 {
        guard let lo = samples.map(\.offsetNanoseconds).min(), let hi = samples.map(\.offsetNanoseconds).max() else { return 0 }
        return hi - lo
    }
}

/// Queries an NTP server: `samples` exchanges, each from its own socket and random port.
package struct NTPQuery: Sendable {
    package var version: UInt8
    package var samples: Int
    package var timeoutNanoseconds: Int64
    package var intervalNanoseconds: Int64

    package init(version: UInt8 = 4, samples: Int = 1, timeoutNanoseconds: Int64 = 2_000_000_000, intervalNanoseconds: Int64 = 100_000_000) {
        self.version = version
        self.samples = samples
        self.timeoutNanoseconds = timeoutNanoseconds
        self.intervalNanoseconds = intervalNanoseconds
    }

    /// Runs the query. A kiss-o'-death ends it at once: RATE asks us to back off, DENY and RSTR
    /// to stop (RFC 5905 §7.4).
    package func run(server: SocketEndpoint) -> NTPQueryResult {
        var result = NTPQueryResult(server: server, samples: [], lastError: nil, sent: 0)
        var random = SystemRandomNumberGenerator()
        for index in 0..<max(1, samples) {
            if index > 0, intervalNanoseconds > 0 {
                var ts = timespec(tv_sec: Int(intervalNanoseconds / 1_000_000_000), tv_nsec: Int(intervalNanoseconds % 1_000_000_000))
                nanosleep(&ts, nil)
            }
            result.sent += 1
            switch exchange(server: server, random: &random) {
            case .success(let sample):
                result.samples.append(sample)
            case .failure(let error):
                result.lastError = error
                if case .rejected(_, .kissOfDeath) = error { return result }
            }
        }
        return result
    }

    /// One request and its reply. Replies that fail the origin test are ignored while the
    /// timeout lasts (they may be late answers to someone else); any other rejection is final.
    func exchange(server: SocketEndpoint, random: inout SystemRandomNumberGenerator) -> Result<NTPSample, ClientError> {
        let name = server.description
        do throws(ClientError) {
            let exchange = NTPClientExchange(version: version, random: &random)
            let socket = try ClientSocket(server: server, type: Sockets.datagram)
            let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
            try socket.connect(deadline: deadline)
            let t1 = try socket.send(exchange.requestBytes)
            var lastProblem: NTPReplyProblem?
            while let (bytes, t4) = try socket.receive(deadline: deadline) {
                switch exchange.evaluate(reply: bytes, t1: t1, t4: t4) {
                case .success(let sample):
                    return .success(sample)
                case .failure(.bogusOrigin):
                    lastProblem = .bogusOrigin
                case .failure(let problem):
                    return .failure(.rejected(server: name, problem))
                }
            }
            if let lastProblem { return .failure(.rejected(server: name, lastProblem)) }
            return .failure(.timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9))
        } catch {
            return .failure(error)
        }
    }
}
