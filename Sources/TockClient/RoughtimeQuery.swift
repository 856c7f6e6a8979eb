import Glibc
import TockCrypto
import TockProtocol
import TockSockets

/// One Roughtime exchange (RFC 10049 §5): a 1024-byte request offering `versions` (1 and
/// 0x8000000c unless told otherwise; 0x8000000b or 0x80000008 to ask a server of draft 11 or
/// 08, as Cloudflare's deployment is) with a random nonce, and the reply checked with
/// `RoughtimeClient.verify` against the server's long-term public key.
package struct RoughtimeQuery: Sendable {
    /// The server's long-term Ed25519 public key (32 bytes).
    package var publicKey: [UInt8]
    /// How long to wait for the reply.
    package var timeoutNanoseconds: Int64
    /// The versions the request offers (VER, §5.1.1). Draft-11 versions make a draft-11
    /// request (no TYPE, the leaf hashed from the nonce); mixing dialects is the caller's
    /// choice, as `RoughtimeRequestBuilder` allows it.
    package var versions: [RoughtimeVersion]

    /// A query trusting `publicKey`, offering `versions`.
    package init(publicKey: [UInt8], timeoutNanoseconds: Int64, versions: [RoughtimeVersion] = [.rfc, .draft12]) {
        self.publicKey = publicKey
        self.timeoutNanoseconds = timeoutNanoseconds
        self.versions = versions
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
        let socket = try ClientSocket(server: server, type: Int32(SOCK_DGRAM.rawValue))
        try socket.connect(deadline: SystemClock.monotonicNanoseconds() + timeoutNanoseconds)
        let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
        let sent = try socket.send(request)
        guard let (reply, received) = try socket.receive(deadline: deadline) else {
            throw .timeout(server: server.description, seconds: Double(timeoutNanoseconds) / 1e9)
        }
        var hasher = RoughtimeSHA512()
        do throws(RoughtimeVerificationError) {
            let time = try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: publicKey, verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
            return Answer(server: server, time: time, sent: sent, received: received, requestLength: request.count, replyLength: reply.count)
        } catch {
            throw .roughtimeRejected(server: server.description, error)
        }
    }
}
