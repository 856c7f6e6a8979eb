import Atomics
import Synchronization
import CTockShims
import Glibc
import Histogram
import TockProtocol
import TockSockets

/// What the load generator sends.
package enum LoadProtocol: String, Sendable, CaseIterable {
    case ntp, time, daytime
    /// Roughtime (RFC 10049): 1024-byte version-1 requests, a sample of the replies verified.
    case roughtime
}

/// A load test's parameters.
package struct LoadConfiguration: Sendable {
    package var target: SocketEndpoint
    package var `protocol`: LoadProtocol = .ntp
    /// Client sockets (each with its own source port, and source address when the target is on
    /// IPv4 loopback).
    package var clients: Int = 64
    /// Closed loop: requests in flight per client.
    package var window: Int = 4
    /// Open loop: requests per second in total, whatever the replies; nil for closed loop.
    package var rate: Int?
    /// Seconds to run.
    package var durationSeconds: Double = 5
    /// A request unanswered this long is lost.
    package var timeoutNanoseconds: Int64 = 1_000_000_000
    /// Sending and receiving threads.
    package var threads: Int = 1
    /// NTS (RFC 8915): one session per client socket, from a key establishment each, or
    /// empty for plain NTP. Each request then spends a cookie and every reply is
    /// authenticated.
    package var ntsSessions: [NTSSession] = []
    /// Roughtime: the server's long-term public key, for the replies verified.
    package var roughtimePublicKey: [UInt8] = []
    /// Roughtime: verify every this many replies (signatures, Merkle proof, nonce); the others
    /// are matched by their nonce only, so the generator does not become the bottleneck (at
    /// every 16th, two Ed25519 verifications per 16 replies held the generator to about 60 %
    /// of what every 256th reaches on this kind of machine).
    package var roughtimeVerifyEvery: Int = 256
    /// NTP: take T1 from the kernel, as chronyd's client does: every request asks for its
    /// software transmit timestamp (SO_TIMESTAMPING, read back from the socket's error queue),
    /// so the error measured is the server's alone, not the generator's send path. A reply
    /// whose request's timestamp never came is counted (`missingTransmitTimestamps`) and its
    /// error not recorded.
    package var kernelTransmitTimestamps = false
    /// NTP: speak the interleaved client/server mode (RFC 9769, chrony's `xleave`) as chronyd
    /// does: each request's origin is the receive timestamp of the client's last reply, and an
    /// interleaved reply's transmit timestamp, the kernel's of that previous reply, completes
    /// the previous exchange's error. Only interleaved samples are then recorded; needs
    /// `kernelTransmitTimestamps` (T1 of the previous exchange from the kernel too).
    package var interleaved = false

    package init(target: SocketEndpoint) {
        self.target = target
    }
}

/// What a load test measured.
package struct LoadReport: Sendable {
    /// The sending window, seconds: rates are per second of it.
    package var seconds: Double = 0
    package var sent: UInt64 = 0
    package var answered: UInt64 = 0
    /// Replies that failed validation (wrong mode, origin, timestamps out of order or away from
    /// our clock, unexpected length).
    package var invalid: UInt64 = 0
    /// Kiss-o'-death replies.
    package var kissOfDeath: UInt64 = 0
    /// Unsynchronised replies (leap 3).
    package var unsynchronized: UInt64 = 0
    /// Requests unanswered within the timeout, or still unanswered at the end.
    package var lost: UInt64 = 0
    /// NTS: replies whose Unique Identifier and Authenticator verified.
    package var authenticated: UInt64 = 0
    /// NTS: replies to our requests (origin matched) that were not authentic: no or a bad
    /// Authenticator, or not our Unique Identifier. Their time is not used.
    package var unauthenticated: UInt64 = 0
    /// NTS: NAKs (kiss NTSN; also counted as kisses-o'-death).
    package var ntsNAK: UInt64 = 0
    /// NTS: requests that reused a cookie because the client's supply was empty.
    package var cookieReuses: UInt64 = 0
    /// Roughtime: replies fully verified (the sample `roughtimeVerifyEvery` picks).
    package var verified: UInt64 = 0
    /// NTP with `kernelTransmitTimestamps`: replies whose request's kernel transmit timestamp
    /// was not reported (their error is not recorded).
    package var missingTransmitTimestamps: UInt64 = 0
    /// NTP with `interleaved`: replies in interleaved mode (RFC 9769); the others were basic.
    package var interleavedReplies: UInt64 = 0
    /// Round-trip time T4 − T1, nanoseconds.
    package var rtt = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    /// |((T2 − T1) + (T3 − T4)) / 2|, nanoseconds: on loopback client and server share a clock,
    /// so this is how far the server's timestamps are from the truth. In interleaved mode the
    /// previous exchange's, whose T3 is the kernel's transmit timestamp of its reply.
    package var timestampError = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)

    /// The sum of the signed errors recorded in `timestampError`, nanoseconds: with their
    /// count, the mean offset, whose sign says whether the server's timestamps run early
    /// (negative: its T3 is read well before the reply leaves) or late.
    package var timestampOffsetSum: Int64 = 0

    package init() {}

    /// The mean signed error (offset) of the samples in `timestampError`, nanoseconds.
    package var timestampOffsetMean: Double {
        timestampError.totalCount > 0 ? Double(timestampOffsetSum) / Double(timestampError.totalCount) : 0
    }

    package var answeredPerSecond: Double { seconds > 0 ? Double(answered) / seconds : 0 }
    package var lossPercent: Double { sent > 0 ? 100 * Double(lost) / Double(sent) : 0 }

    mutating func add(_ other: LoadReport) {
        sent += other.sent
        answered += other.answered
        invalid += other.invalid
        kissOfDeath += other.kissOfDeath
        unsynchronized += other.unsynchronized
        lost += other.lost
        authenticated += other.authenticated
        unauthenticated += other.unauthenticated
        ntsNAK += other.ntsNAK
        cookieReuses += other.cookieReuses
        verified += other.verified
        missingTransmitTimestamps += other.missingTransmitTimestamps
        interleavedReplies += other.interleavedReplies
        rtt.add(other.rtt)
        timestampError.add(other.timestampError)
        timestampOffsetSum += other.timestampOffsetSum
    }
}

/// A load generator for NTP, Time and Daytime servers, modelled on ntpperf: many client
/// sockets, batched sends and receives (sendmmsg/recvmmsg), every reply validated, kernel
/// receive timestamps for T4.
///
/// Requests carry a random transmit timestamp whose low 16 bits index the client's slot table,
/// so a reply is matched in constant time and a forged or stale one fails the full comparison.
package final class LoadGenerator: Sendable {
    package let configuration: LoadConfiguration
    private let progressSent = ManagedAtomic<UInt64>(0)
    private let progressAnswered = ManagedAtomic<UInt64>(0)

    package init(configuration: LoadConfiguration) {
        self.configuration = configuration
    }

    /// Requests sent and answered so far, for a progress line.
    package var progress: (sent: UInt64, answered: UInt64) {
        (progressSent.load(ordering: .relaxed), progressAnswered.load(ordering: .relaxed))
    }

    /// Opens the client sockets. On IPv4 loopback each client gets its own source address in
    /// 127.0.0.0/8 (127.0.1.0 upwards), so per-address limits on the server see many clients.
    func openClients(count: Int) throws(ClientError) -> [Int32] {
        let target = configuration.target
        let spreadSources = !target.isIPv6 && target.ipString.hasPrefix("127.")
        var fds: [Int32] = []
        for i in 0..<count {
            let fd: Int32
            do throws(SystemError) {
                fd = try Sockets.open(family: target.family, type: Sockets.datagram)
            } catch {
                for f in fds { close(f) }
                throw .network(server: target.description, error)
            }
            do throws(SystemError) {
                try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPNS, value: 1, "SO_TIMESTAMPNS")
                if configuration.kernelTransmitTimestamps, !TransmitTimestampQueue.enable(on: fd) {
                    throw SystemError("SO_TIMESTAMPING")
                }
                try? Sockets.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, value: 1 << 20, "SO_RCVBUF")
                if spreadSources {
                    let source = SocketEndpoint(ip: "127.0.\(1 + i / 250).\(1 + i % 250)", port: 0)!
                    try Sockets.bind(fd, to: source)
                }
            } catch {
                close(fd)
                for f in fds { close(f) }
                throw .network(server: target.description, error)
            }
            let rc = target.withSockAddr { Glibc.connect(fd, $0, $1) }
            guard rc == 0 else {
                close(fd)
                for f in fds { close(f) }
                throw .network(server: target.description, SystemError("connect"))
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            fds.append(fd)
        }
        return fds
    }

    /// Runs the test and returns the merged report.
    package func run() throws(ClientError) -> LoadReport {
        let threads = max(1, min(configuration.threads, configuration.clients))
        let fds = try openClients(count: configuration.clients)
        defer { for fd in fds { close(fd) } }
        let start = SystemClock.monotonicNanoseconds()
        let end = start + Int64(configuration.durationSeconds * 1e9)
        var reports = [LoadReport](repeating: LoadReport(), count: threads)
        let box = ReportBox(count: threads)
        var workers: [WorkerThread] = []
        for t in 0..<threads {
            let mine = stride(from: t, to: fds.count, by: threads).map { fds[$0] }
            let sessions = configuration.ntsSessions.isEmpty ? [] : stride(from: t, to: fds.count, by: threads).map { configuration.ntsSessions[$0] }
            let rate = configuration.rate.map { max(1, $0 / threads) }
            workers.append(WorkerThread.start(name: "bench-\(t)") { [self] in
                var loop = ClientLoop(configuration: configuration, fds: mine, ntsSessions: sessions, rate: rate, sent: progressSent, answered: progressAnswered)
                box.set(t, loop.run(until: end))
            })
        }
        for w in workers { w.join() }
        reports = box.values
        var total = LoadReport()
        for r in reports { total.add(r) }
        // The sending window, not the drain after it: a run whose last requests are lost
        // waits up to half a second for them, and that wait is not load.
        total.seconds = Double(min(SystemClock.monotonicNanoseconds(), end) - start) / 1e9
        return total
    }
}

/// Collects per-thread reports.
final class ReportBox: Sendable {
    private let reports: Mutex<[LoadReport]>
    init(count: Int) { reports = Mutex([LoadReport](repeating: LoadReport(), count: count)) }
    func set(_ i: Int, _ r: LoadReport) {
        reports.withLock { $0[i] = r }
    }
    var values: [LoadReport] { reports.withLock { $0 } }
}
