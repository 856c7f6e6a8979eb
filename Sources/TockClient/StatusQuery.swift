import Foundation
import TockProtocol
import TockSockets

/// Reads a tockd's live figures from its metrics endpoint (`GET /status`, JSON).
///
/// A minimal HTTP/1.0 GET over one TCP connection (the endpoint is local and plain): the
/// reply is read until the server closes, bounded in size and time.
package struct StatusQuery: Sendable {
    /// Most clients per rate-limited service to ask for.
    package var clients: Int
    package var timeoutNanoseconds: Int64

    package init(clients: Int = 10, timeoutNanoseconds: Int64 = 2_000_000_000) {
        self.clients = clients
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// The endpoint's status document.
    package func run(endpoint: SocketEndpoint) throws(ClientError) -> ServerStatus {
        let (code, body) = try get("/status?clients=\(clients)", from: endpoint)
        guard code == 200 else {
            throw .unreadableReply(server: endpoint.description, reason: "HTTP status \(code) for /status: is this a tockd metrics endpoint (tockd --metrics)?")
        }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(ServerStatus.self, from: Data(body))
        } catch {
            throw .unreadableReply(server: endpoint.description, reason: "/status is not a tockd status document: \(error)")
        }
    }

    /// GETs `path`; returns the HTTP status code and the body.
    package func get(_ path: String, from endpoint: SocketEndpoint) throws(ClientError) -> (Int, [UInt8]) {
        let name = endpoint.description
        let deadline = SystemClock.monotonicNanoseconds() + timeoutNanoseconds
        let socket = try ClientSocket(server: endpoint, type: Sockets.stream)
        try socket.connect(deadline: deadline, timedOut: .timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9))
        _ = try socket.send(Array("GET \(path) HTTP/1.0\r\nHost: \(name)\r\nUser-Agent: tock\r\n\r\n".utf8))
        var reply: [UInt8] = []
        while true {
            guard let (chunk, _) = try socket.receive(deadline: deadline, capacity: 65536) else {
                throw .timeout(server: name, seconds: Double(timeoutNanoseconds) / 1e9)
            }
            if chunk.isEmpty { break }
            reply += chunk
            guard reply.count <= 16 << 20 else { throw .unreadableReply(server: name, reason: "reply larger than 16 MiB") }
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let split = reply.indices.first(where: { reply[$0...].starts(with: separator) }) else {
            throw .unreadableReply(server: name, reason: "not an HTTP reply")
        }
        let statusLine = String(decoding: reply[..<split].prefix { $0 != 13 }, as: UTF8.self)
        let fields = statusLine.split(separator: " ")
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/"), let code = Int(fields[1]) else {
            throw .unreadableReply(server: name, reason: "not an HTTP status line: \(statusLine.prefix(80))")
        }
        return (code, Array(reply[(split + 4)...]))
    }
}
