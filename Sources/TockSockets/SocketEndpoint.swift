import CTockShims
import Glibc

/// An IPv4 or IPv6 socket address, stored as the kernel takes it (`sockaddr_storage`).
///
/// A value type with no heap storage, so the datagram engine can copy one per packet for free.
package struct SocketEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// The address as the kernel reads it.
    package var storage: sockaddr_storage
    /// The length of the meaningful part of `storage`.
    package var length: socklen_t

    /// Wraps a kernel-provided address.
    package init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// An address from a numeric IPv4 or IPv6 literal (no brackets) and a port, or nil when
    /// `ip` is not a literal.
    package init?(ip: String, port: UInt16) {
        var storage = sockaddr_storage()
        if ip.contains(":") {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, ip, &sin6.sin6_addr) == 1 else { return nil }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        } else {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            guard inet_pton(AF_INET, ip, &sin.sin_addr) == 1 else { return nil }
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin, as: sockaddr_in.self) }
            self.init(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }

    /// `AF_INET` or `AF_INET6`.
    package var family: Int32 { Int32(storage.ss_family) }

    /// Whether this is an IPv6 address.
    package var isIPv6: Bool { family == AF_INET6 }

    /// The port, in host byte order.
    package var port: UInt16 {
        get {
            withUnsafeBytes(of: storage) { raw in
                // sin_port and sin6_port sit at the same offset.
                UInt16(bigEndian: raw.load(fromByteOffset: 2, as: UInt16.self))
            }
        }
        set {
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.storeBytes(of: newValue.bigEndian, toByteOffset: 2, as: UInt16.self)
            }
        }
    }

    /// The numeric address without the port: `127.0.0.1`, `::1`.
    package var ipString: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        withUnsafeBytes(of: storage) { raw in
            if isIPv6 {
                let sin6 = raw.load(as: sockaddr_in6.self)
                var addr = sin6.sin6_addr
                _ = inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count))
            } else {
                let sin = raw.load(as: sockaddr_in.self)
                var addr = sin.sin_addr
                _ = inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count))
            }
        }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:123` or `[::1]:123`.
    package var description: String {
        isIPv6 ? "[\(ipString)]:\(port)" : "\(ipString):\(port)"
    }

    /// Calls `body` with the address as a `sockaddr` pointer and its length.
    package func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        try withUnsafeBytes(of: storage) { raw in
            try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    package static func == (lhs: SocketEndpoint, rhs: SocketEndpoint) -> Bool {
        lhs.length == rhs.length && withUnsafeBytes(of: lhs.storage) { l in
            withUnsafeBytes(of: rhs.storage) { r in
                memcmp(l.baseAddress!, r.baseAddress!, Int(lhs.length)) == 0
            }
        }
    }

    package func hash(into hasher: inout Hasher) {
        withUnsafeBytes(of: storage) { hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: $0.prefix(Int(length)))) }
    }
}

/// A host (name or address literal) and a port, parsed from the forms users type:
/// `PORT`, `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` and a bare IPv6 literal.
package struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
    /// The host: a name, an IPv4 literal or an IPv6 literal without brackets; nil when only a
    /// port was given.
    package var host: String?
    /// The port; nil when none was given.
    package var port: UInt16?

    package init(host: String?, port: UInt16?) {
        self.host = host
        self.port = port
    }

    /// Why a `HOST[:PORT]` string could not be read.
    package struct ParseError: Error, Sendable, CustomStringConvertible {
        package var input: String
        package var reason: String
        package var description: String { "invalid address '\(input)': \(reason)" }
    }

    /// Parses `text`. A string of digits alone is a port when `bareNumberIsPort`, as in
    /// listener flags (`--ntp 1123`); otherwise it is a host.
    package init(parsing text: String, bareNumberIsPort: Bool) throws(ParseError) {
        func port(_ s: Substring) throws(ParseError) -> UInt16 {
            guard let p = UInt16(s), p > 0 || bareNumberIsPort else {
                throw ParseError(input: text, reason: "port '\(s)' is not a number from 0 to 65535")
            }
            return p
        }
        if text.isEmpty { throw ParseError(input: text, reason: "empty") }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw ParseError(input: text, reason: "missing ']'") }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                self.init(host: host, port: nil)
            } else if rest.hasPrefix(":") {
                self.init(host: host, port: try port(rest.dropFirst()))
            } else {
                throw ParseError(input: text, reason: "expected ':PORT' after ']'")
            }
            return
        }
        let colons = text.filter { $0 == ":" }.count
        if colons > 1 {
            // A bare IPv6 literal: no port can be given without brackets.
            self.init(host: text, port: nil)
        } else if colons == 1 {
            let i = text.firstIndex(of: ":")!
            let host = String(text[..<i])
            self.init(host: host.isEmpty ? nil : host, port: try port(text[text.index(after: i)...]))
        } else if bareNumberIsPort, text.allSatisfy(\.isNumber) {
            self.init(host: nil, port: try port(text[...]))
        } else {
            self.init(host: text, port: nil)
        }
    }

    package var description: String {
        let h = host.map { $0.contains(":") ? "[\($0)]" : $0 } ?? "*"
        return port.map { "\(h):\($0)" } ?? h
    }
}
