import Glibc
import TockProtocol
import TockSockets

/// A Daytime (RFC 867) or Time (RFC 868) answer.
package struct TextTimeAnswer: Sendable {
    package enum Payload: Sendable {
        /// Daytime text with the line ending removed.
        case daytime(String)
        /// Time: the instant the 32-bit value denotes, in the era nearest our clock.
        case time(UTCInstant)
    }

    package var server: SocketEndpoint
    package var payload: Payload
    /// Our send (or connect) time.
    package var t1: UTCInstant
    /// Our receive time.
    package var t4: UTCInstant

    /// For Time: server time minus the midpoint of our exchange. The server truncates to whole
    /// seconds, so its value stands for the middle of that second (+0.5 s).
    package var offsetNanoseconds: Int64? {
        guard case .time(let instant) = payload else { return nil }
        let midpoint = t1.advanced(byNanoseconds: t4.nanoseconds(since: t1) / 2)
        return instant.advanced(byNanoseconds: 500_000_000).nanoseconds(since: midpoint)
    }
}

/// Queries a Daytime or Time server over UDP or TCP.
package struct TextTimeQuery: Sendable {
    package enum Kind: String, Sendable { case daytime, time }

    package var kind: Kind
    package var tcp: Bool
    package var timeoutNanoseconds: Int64

    package init(kind: Kind, tcp: Bool, timeoutNanoseconds: Int64 = 2_000_000_000) {
        self.kind = kind
        self.tcp = tcp
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// Over UDP, sends an empty datagram (RFC 867 and 868 ignore its content) and reads one
    /// reply; over TCP, connects and reads until the server closes.
    package func run(server: SocketEndpoint) throws(ClientError) -> TextTimeAnswer {
        let name = server.description
        let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
        let socket = try ClientSocket(server: server, type: tcp ? Sockets.stream : Sockets.datagram)
        let t1: UTCInstant
        var bytes: [UInt8] = []
        var t4 = SystemClock.now()
        if tcp {
            t1 = SystemClock.now()
            try socket.connect(deadline: deadline, timedOut: .timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9))
            while bytes.count < 512, let (chunk, time) = try socket.receive(deadline: deadline, capacity: 512) {
                if chunk.isEmpty { break }
                bytes += chunk
                t4 = time
            }
        } else {
            try socket.connect(deadline: deadline)
            t1 = try socket.send([])
            if let (chunk, time) = try socket.receive(deadline: deadline) {
                bytes = chunk
                t4 = time
            }
        }
        guard !bytes.isEmpty else { throw .timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9) }
        switch kind {
        case .time:
            guard let instant = RFC868.decode(bytes, near: t1) else {
                throw .unreadableReply(server: name, reason: "Time reply has \(bytes.count) bytes, not 4")
            }
            return TextTimeAnswer(server: server, payload: .time(instant), t1: t1, t4: t4)
        case .daytime:
            // Strip the line ending byte by byte ("\r\n" is one Character in Swift).
            var end = bytes.endIndex
            while end > bytes.startIndex, [UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0].contains(bytes[end - 1]) { end -= 1 }
            let text = String(decoding: bytes[..<end], as: UTF8.self)
            return TextTimeAnswer(server: server, payload: .daytime(text), t1: t1, t4: t4)
        }
    }
}
