import Foundation
import Glibc
import TockCrypto
import TockProtocol
import TockSockets

/// One server of a Roughtime server list (RFC 10049 §8.3).
package struct RoughtimeListedServer: Sendable, Hashable {
    /// `name`.
    package var name: String
    /// The versions to offer, from `version`.
    package var versions: [RoughtimeVersion]
    /// `publicKey`: the long-term Ed25519 key, 32 bytes.
    package var publicKey: [UInt8]
    /// The first UDP address, HOST:PORT, or the first TCP one if the entry has no UDP address.
    package var address: String
    /// Whether `address` is a TCP address.
    package var tcp: Bool = false
}

/// Reads a Roughtime server list (RFC 10049 §8.3): `{"servers": [{"name", "version",
/// "publicKeyType", "publicKey", "addresses": [{"protocol", "address"}]}]}`.
///
/// Lists in the wild are lenient, and so is this reader: `version` may be a number, a number
/// in a string ("1", "0x8000000c") or a name ("IETF-Roughtime": versions 1 and 0x8000000c);
/// missing or unknown, both are offered. Only ed25519 keys are used; a UDP address is preferred,
/// a TCP one (RFC 10049 serves both) used when an entry has no UDP address.
package enum RoughtimeServerList {
    /// What is wrong with a list.
    package struct ParseError: Error, Sendable, CustomStringConvertible {
        /// What is wrong and where.
        package var description: String
    }

    /// The servers `data` lists, in order.
    package static func parse(_ data: [UInt8]) throws(ParseError) -> [RoughtimeListedServer] {
        let root: Any
        do { root = try JSONSerialization.jsonObject(with: Data(data)) } catch {
            throw ParseError(description: "not JSON: \(error.localizedDescription)")
        }
        guard let object = root as? [String: Any], let servers = object["servers"] as? [[String: Any]] else {
            throw ParseError(description: "no \"servers\" array at the top level (RFC 10049 §8.3)")
        }
        var out: [RoughtimeListedServer] = []
        for (i, entry) in servers.enumerated() {
            let name = entry["name"] as? String ?? "server \(i + 1)"
            if let type = entry["publicKeyType"] as? String, type.lowercased() != "ed25519" {
                throw ParseError(description: "\(name): publicKeyType \(type) is not ed25519")
            }
            guard let keyText = entry["publicKey"] as? String, let key = RoughtimeKeyText.decode(keyText) else {
                throw ParseError(description: "\(name): publicKey is not a 32-byte key in base64 or hex")
            }
            let addresses = entry["addresses"] as? [[String: Any]] ?? []
            func first(_ transport: String) -> String? {
                addresses.first(where: { ($0["protocol"] as? String)?.lowercased() ?? "udp" == transport })?["address"] as? String
            }
            guard let address = first("udp") ?? first("tcp") else {
                throw ParseError(description: "\(name): no UDP or TCP address")
            }
            out.append(RoughtimeListedServer(name: name, versions: versions(entry["version"]), publicKey: key, address: address, tcp: first("udp") == nil))
        }
        guard !out.isEmpty else { throw ParseError(description: "the list names no servers") }
        return out
    }

    /// The versions a `version` field asks for (also what `tock query --roughtime-version`
    /// reads).
    package static func versions(_ field: Any?) -> [RoughtimeVersion] {
        let both: [RoughtimeVersion] = [.rfc, .draft12]
        if let number = field as? Int, let v = UInt32(exactly: number) { return [RoughtimeVersion(rawValue: v)] }
        guard let text = (field as? String)?.trimmingCharacters(in: .whitespaces).lowercased() else { return both }
        if text.hasPrefix("0x"), let v = UInt32(text.dropFirst(2), radix: 16) { return [RoughtimeVersion(rawValue: v)] }
        if let v = UInt32(text) { return [RoughtimeVersion(rawValue: v)] }
        return both
    }
}

/// One exchange of a measurement sequence (RFC 10049 §8.2).
package struct RoughtimeExchange: Sendable {
    /// Which server of the list.
    package var server: Int
    /// The 32 random bytes hashed with the previous response into this nonce; nil for the
    /// first request, whose nonce is random.
    package var rand: [UInt8]?
    /// The request sent.
    package var request: [UInt8]
    /// The reply, if one came.
    package var response: [UInt8]?
    /// What the reply vouches for, if it verified.
    package var time: RoughtimeVerifiedTime?
    /// Why there is no verified time.
    package var failure: String?
}

/// A measurement sequence (RFC 10049 §8.2): every server asked `rounds` times in list order,
/// each nonce after the first chained to the previous response, so a third party can check
/// the order of the responses; then the causal-order check of every pair.
package struct RoughtimeCheck: Sendable {
    /// The servers, in order.
    package var servers: [RoughtimeListedServer]
    /// How many times each is asked.
    package var rounds: Int
    /// How long to wait for each reply.
    package var timeoutNanoseconds: Int64

    /// A check of `servers`.
    package init(servers: [RoughtimeListedServer], rounds: Int, timeoutNanoseconds: Int64) {
        self.servers = servers
        self.rounds = rounds
        self.timeoutNanoseconds = timeoutNanoseconds
    }

    /// Two exchanges whose times break causal order: `earlier` was asked first, yet its
    /// MIDP − RADI lies after `later`'s MIDP + RADI.
    package struct Violation: Sendable, Hashable {
        /// Indices into the exchanges.
        package var earlier: Int
        package var later: Int
    }

    /// Runs the sequence.
    package func run() -> [RoughtimeExchange] {
        var exchanges: [RoughtimeExchange] = []
        var previous: [UInt8]?
        var hasher = RoughtimeSHA512()
        var generator = SystemRandomNumberGenerator()
        func random32() -> [UInt8] { (0..<RoughtimeWire.hashLength).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        for _ in 0..<rounds {
            for (s, server) in servers.enumerated() {
                var rand: [UInt8]?
                let nonce: [UInt8]
                if let previous {
                    let r = random32()
                    rand = r
                    nonce = hasher.chainedNonce(previousResponse: previous, random: r)
                } else {
                    nonce = random32()
                }
                let request = RoughtimeRequestBuilder.packet(nonce: nonce, versions: server.versions)
                var exchange = RoughtimeExchange(server: s, rand: rand, request: request)
                do throws(ClientError) {
                    let reply = try Self.exchange(request, with: server.address, tcp: server.tcp, timeoutNanoseconds: timeoutNanoseconds)
                    exchange.response = reply
                    previous = reply
                    do throws(RoughtimeVerificationError) {
                        exchange.time = try RoughtimeClient.verify(request: request, reply: reply, longTermPublicKey: server.publicKey,
                                                                   verifier: RoughtimeEd25519Verifier(), hasher: &hasher)
                    } catch {
                        exchange.failure = ClientError.explain(error)
                    }
                } catch {
                    exchange.failure = error.description
                }
                exchanges.append(exchange)
            }
        }
        return exchanges
    }

    /// Every pair of verified exchanges i < j with MIDP_i − RADI_i > MIDP_j + RADI_j (§8.2).
    package static func violations(_ exchanges: [RoughtimeExchange]) -> [Violation] {
        var out: [Violation] = []
        for i in exchanges.indices {
            guard let a = exchanges[i].time else { continue }
            for j in (i + 1)..<exchanges.count {
                if let b = exchanges[j].time, !a.isCausallyConsistent(before: b) { out.append(Violation(earlier: i, later: j)) }
            }
        }
        return out
    }

    /// The malfeasance report (§8.4, as Appendix B shows it): every exchange that got a reply,
    /// in order, each with its server's public key, its `rand` (none for the first) and the
    /// request and response packets, all base64. Exchanges without a reply are left out; the
    /// next nonce was chained to the last reply received, so the chain stays whole.
    package static func report(_ exchanges: [RoughtimeExchange], servers: [RoughtimeListedServer]) -> String {
        var entries: [String] = []
        for exchange in exchanges {
            guard let response = exchange.response else { continue }
            var fields = ["\"publicKey\": \"\(RoughtimeKeyText.base64(servers[exchange.server].publicKey))\""]
            if let rand = exchange.rand, !entries.isEmpty { fields.append("\"rand\": \"\(RoughtimeKeyText.base64(rand))\"") }
            fields.append("\"request\": \"\(RoughtimeKeyText.base64(exchange.request))\"")
            fields.append("\"response\": \"\(RoughtimeKeyText.base64(response))\"")
            entries.append("    {" + fields.joined(separator: ", ") + "}")
        }
        return "{\n  \"responses\": [\n" + entries.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    /// Sends `request` to `address` (HOST:PORT) and returns the reply.
    static func exchange(_ request: [UInt8], with address: String, tcp: Bool, timeoutNanoseconds: Int64) throws(ClientError) -> [UInt8] {
        let parsed: HostAndPort
        do { parsed = try HostAndPort(parsing: address, bareNumberIsPort: false) } catch {
            throw .resolution(host: address, reason: error.description)
        }
        guard let host = parsed.host else { throw .resolution(host: address, reason: "no host") }
        let server = try Resolver.resolve(host, port: parsed.port ?? TockService.roughtime.wellKnownPort)[0]
        return try RoughtimeQuery.exchange(request, with: server, tcp: tcp, timeoutNanoseconds: timeoutNanoseconds).reply
    }
}
