import Glibc
import TockCrypto
import TockProtocol
import TockSockets

/// One Roughtime exchange (RFC 10049 §5): a 1024-byte request offering `versions` (1 and
/// 0x8000000c unless told otherwise; 0x8000000b or 0x80000008 to ask a server of draft 11 or
/// 08, as Cloudflare's deployment is) with a random nonce, over UDP or TCP, and the reply checked with
/// `RoughtimeClient.verify` against the server's long-term public key.
package struct RoughtimeQuery: Sendable {
    /// The server's long-term Ed25519 public key (32 bytes).
    package var publicKey: [UInt8]
    /// How long to wait for the reply (over TCP, from the connect on).
    package var timeoutNanoseconds: Int64
    /// The versions the request offers (VER, §5.1.1). Draft-11 versions make a draft-11
    /// request (no TYPE, the leaf hashed from the nonce); mixing dialects is the caller's
    /// choice, as `RoughtimeRequestBuilder` allows it.
    package var versions: [RoughtimeVersion]
    /// Whether to ask over TCP: the same packet, its end found from its length field.
    package var tcp: Bool

    /// A query trusting `publicKey`, offering `versions`.
    package init(publicKey: [UInt8], timeoutNanoseconds: Int64, versions: [RoughtimeVersion] = [.rfc, .draft12], tcp: Bool = false) {
        self.publicKey = publicKey
        self.timeoutNanoseconds = timeoutNanoseconds
        self.versions = versions
        self.tcp = tcp
    }

    /// A verified answer.
    package struct Answer: Sendable {
        /// The server asked.
        package var server: SocketEndpoint
        /// What the server vouched for.
        package var time: RoughtimeVerifiedTime
        /// The local time the request left.
        package var sent: UTCInstant
        /// The local time the reply arrived.
        package var received: UTCInstant
        /// The request's and the reply's lengths.
        package var requestLength: Int
        package var replyLength: Int
        /// Whether the exchange ran over TCP.
        package var tcp: Bool = false

        /// The local clock's offset from the midpoint: the middle of the exchange on the local
        /// clock minus MIDP, in nanoseconds (positive: the local clock is ahead).
        package var localOffsetNanoseconds: Int64 {
            let localMiddle = sent.nanosecondsSinceUnixEpoch / 2 + received.nanosecondsSinceUnixEpoch / 2
            return localMiddle - Int64(time.midpoint) * 1_000_000_000
        }
    }

    /// Asks `server` once.
    package func run(server: SocketEndpoint) throws(ClientError) -> Answer {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<RoughtimeWire.hashLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let request = RoughtimeRequestBuilder.packet(nonce: nonce, versions: versions)
        let (reply, sent, received) = try Self.exchange(request, with: server, tcp: tcp, timeoutNanoseconds: timeoutNanoseconds)
        var hasher = RoughtimeSHA512()
        do throws(RoughtimeVerificationError) {
            let time = try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: publicKey, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
            return Answer(server: server, time: time, sent: sent, received: received, requestLength: request.count, replyLength: reply.count, tcp: tcp)
        } catch {
            throw .roughtimeRejected(server: server.description, error)
        }
    }

    /// Sends `request` to `server` over UDP or TCP and returns the reply packet unchecked, with
    /// the local times the request left and the reply arrived. No reply before the timeout (or
    /// a TCP server that closes without one) is `.timeout`.
    package static func exchange(_ request: [UInt8], with server: SocketEndpoint, tcp: Bool, timeoutNanoseconds: Int64) throws(ClientError) -> (reply: [UInt8], sent: UTCInstant, received: UTCInstant) {
        let socket = try ClientSocket(server: server, type: tcp ? Sockets.stream : Sockets.datagram)
        let timedOut = ClientError.timeout(server: server.description, seconds: Double(timeoutNanoseconds) / 1e9)
        try socket.connect(deadline: SystemClock.monotonicNanoseconds() + timeoutNanoseconds, timedOut: timedOut)
        let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
        let sent = try socket.send(request)
        let answer = tcp ? try receiveFrame(socket, deadline: deadline, requestLength: request.count) : try socket.receive(deadline: deadline)
        guard let (reply, received) = answer else { throw timedOut }
        return (reply, sent, received)
    }

    /// Reads one packet from a TCP stream (RFC 10049 §5), its end found by the core from its
    /// length field; nil when nothing arrives before `deadline` or the server closes without a
    /// byte (it sends nothing it may not: unsynchronised, denied, rate-limited). A length field
    /// announcing more than the request is refused before the rest is read (§9.7); a packet
    /// cut short by the server's close is unreadable.
    static func receiveFrame(_ socket: borrowing ClientSocket, deadline: Int64, requestLength: Int) throws(ClientError) -> (bytes: [UInt8], time: UTCInstant)? {
        var bytes: [UInt8] = []
        var received = SystemClock.now()
        while true {
            let decision = bytes.withUnsafeBytes { RoughtimeStream.frame($0, minimumLength: RoughtimeWire.packetHeaderLength, maximumLength: requestLength) }
            let needed: Int
            switch decision {
            case .complete(let length):
                return (Array(bytes[..<length]), received)
            case .reject(.tooLong):
                throw .roughtimeRejected(server: socket.server.description, .replyLargerThanRequest)
            case .reject(.framing(let error)):
                throw .roughtimeRejected(server: socket.server.description, .malformedReply(error))
            case .reject:
                throw .unreadableReply(server: socket.server.description, reason: "not a Roughtime packet")
            case .needMore(let count):
                needed = count
            }
            guard let (chunk, time) = try socket.receive(deadline: deadline, capacity: needed - bytes.count) else { return nil }
            if chunk.isEmpty {
                if bytes.isEmpty { return nil }
                throw .unreadableReply(server: socket.server.description, reason: "the server closed the connection after \(bytes.count) of \(needed) bytes of its reply")
            }
            bytes += chunk
            received = time
        }
    }
}
