import Glibc
import TockSockets

/// Turns listener flags (`PORT`, `ADDR:PORT`, `[IPv6]:PORT`, `ADDR`) into socket addresses.
package enum ListenerFlag {
    package struct Error: Swift.Error, CustomStringConvertible {
        package var description: String
    }

    /// The addresses for one service's flags. A bare port means every address: 0.0.0.0 and,
    /// where the host has IPv6, [::].
    package static func addresses(_ flags: [String], defaultPort: UInt16, flag: String) throws(Error) -> [SocketEndpoint] {
        var out: [SocketEndpoint] = []
        for text in flags {
            let parsed: HostAndPort
            do {
                parsed = try HostAndPort(parsing: text, bareNumberIsPort: true)
            } catch {
                throw Error(description: "\(flag) \(error.description); expected PORT, ADDR:PORT or [IPv6]:PORT")
            }
            let port = parsed.port ?? defaultPort
            guard let host = parsed.host, host != "*" else {
                out.append(SocketEndpoint(ip: "0.0.0.0", port: port)!)
                if hostHasIPv6 { out.append(SocketEndpoint(ip: "::", port: port)!) }
                continue
            }
            guard let address = SocketEndpoint(ip: host == "localhost" ? "127.0.0.1" : host, port: port) else {
                throw Error(description: "\(flag) '\(text)': '\(host)' is not an IPv4 or IPv6 address (listeners take numeric addresses)")
            }
            out.append(address)
        }
        var seen = Set<SocketEndpoint>()
        return out.filter { seen.insert($0).inserted }
    }

    /// The 4 or 16 bytes of a numeric IPv4 or IPv6 address, or nil.
    package static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// Whether an IPv6 socket can be created here (containers often have none).
    package static var hostHasIPv6: Bool {
        let fd = socket(AF_INET6, Sockets.datagram, 0)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }
}
