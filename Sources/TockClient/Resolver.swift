import Glibc
import TockSockets

/// Resolves host names to addresses (A and AAAA, through the system resolver).
package enum Resolver {
    /// The addresses of `host` on `port`, IPv4 and IPv6 as the system orders them; a numeric
    /// literal is returned as is.
    package static func resolve(_ host: String, port: UInt16) throws(ClientError) -> [SocketEndpoint] {
        if let literal = SocketEndpoint(ip: host, port: port) { return [literal] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Sockets.datagram
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &result)
        guard rc == 0, let first = result else {
            throw .resolution(host: host, reason: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var out: [SocketEndpoint] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            if let addr = info.pointee.ai_addr, info.pointee.ai_family == AF_INET || info.pointee.ai_family == AF_INET6 {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(info.pointee.ai_addrlen)))
                }
                var endpoint = SocketEndpoint(storage: storage, length: info.pointee.ai_addrlen)
                endpoint.port = port
                if !out.contains(endpoint) { out.append(endpoint) }
            }
            cursor = info.pointee.ai_next
        }
        guard !out.isEmpty else { throw .resolution(host: host, reason: "no IPv4 or IPv6 address") }
        return out
    }
}
