import CTockShims
import Glibc
import TockSockets

/// A listener could not be opened: names the address, the reason and the fix.
package struct ListenerError: Error, Sendable, CustomStringConvertible {
    /// What kind of listener: "UDP", "TCP".
    package var transport: String
    package var address: SocketEndpoint
    package var errorNumber: Int32
    /// The descriptor, when the socket was inherited (socket activation) rather than bound.
    package var inheritedFD: Int32? = nil

    package var description: String {
        if let inheritedFD {
            return "cannot set up \(transport) \(address) inherited from systemd (fd \(inheritedFD)): \(SystemError.describe(errorNumber))"
        }
        let what = "cannot bind \(transport) \(address)"
        let port = address.port
        switch errorNumber {
        case EACCES, EPERM:
            return "\(what): permission denied; ports below 1024 need privileges: run as root, grant CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep tockd), or choose a port ≥ 1024, e.g. 127.0.0.1:\(port < 1024 ? Int(port) + 1000 : Int(port))"
        case EADDRINUSE:
            return "\(what): address already in use; another server (chronyd, ntpd, inetd, another tockd?) is listening there: stop it or choose another port"
        case EADDRNOTAVAIL:
            return "\(what): no interface on this host has that address; use one of this host's addresses, or 0.0.0.0 / [::] for all"
        case EAFNOSUPPORT:
            return "\(what): this host does not support \(address.isIPv6 ? "IPv6" : "IPv4")"
        default:
            return "\(what): \(SystemError.describe(errorNumber))"
        }
    }
}

/// Opening listening sockets, the way every transport needs them.
enum ListenerSocket {
    /// Whether `address` is a wildcard (0.0.0.0 or ::).
    static func isWildcard(_ address: SocketEndpoint) -> Bool {
        let ip = address.ipString
        return ip == "0.0.0.0" || ip == "::"
    }

    /// A UDP socket bound to `address`, shared with the listener's other workers by
    /// SO_REUSEPORT so the kernel spreads requests across them by flow hash. Receive timestamps
    /// and destination addresses are enabled; the receive timeout lets the worker notice a stop.
    static func udp(_ address: SocketEndpoint) throws(ListenerError) -> Int32 {
        let fd: Int32
        do {
            fd = try Sockets.open(family: address.family, type: Sockets.datagram)
        } catch {
            throw ListenerError(transport: "UDP", address: address, errorNumber: error.errorNumber)
        }
        do {
            try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_REUSEPORT, value: 1, "SO_REUSEPORT")
            if address.isIPv6 {
                try Sockets.setOption(fd, level: Int32(IPPROTO_IPV6), name: tock_IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
            }
            try configureDatagram(fd, isIPv6: address.isIPv6)
            try Sockets.bind(fd, to: address)
        } catch {
            close(fd)
            throw ListenerError(transport: "UDP", address: address, errorNumber: error.errorNumber)
        }
        return fd
    }

    /// Prepares a UDP socket that systemd bound (socket activation) as `udp` prepares its own:
    /// systemd sets none of these options, and creates its sockets non-blocking, where the
    /// workers need blocking receives that time out. Closes nothing on failure.
    static func adoptUDP(_ fd: Int32, address: SocketEndpoint) throws(ListenerError) {
        do throws(SystemError) {
            let flags = fcntl(fd, F_GETFL)
            guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else { throw SystemError("fcntl(O_NONBLOCK)") }
            try configureDatagram(fd, isIPv6: address.isIPv6)
        } catch {
            throw ListenerError(transport: "UDP", address: address, errorNumber: error.errorNumber, inheritedFD: fd)
        }
    }

    /// The options every UDP listener needs, set before or after bind: kernel receive
    /// timestamps (T2), the destination address of each request (to answer from it), a large
    /// receive buffer, and a receive timeout so that a worker notices a stop within 200 ms.
    /// An IPv6 socket bound dual-stack by systemd (BindIPv6Only=both) reports IPv4 requests
    /// through the IPv6 options as v4-mapped addresses, which Linux also accepts for the reply.
    private static func configureDatagram(_ fd: Int32, isIPv6: Bool) throws(SystemError) {
        try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPNS, value: 1, "SO_TIMESTAMPNS")
        if isIPv6 {
            try Sockets.setOption(fd, level: Int32(IPPROTO_IPV6), name: tock_IPV6_RECVPKTINFO, value: 1, "IPV6_RECVPKTINFO")
        } else {
            try Sockets.setOption(fd, level: Int32(IPPROTO_IP), name: tock_IP_PKTINFO, value: 1, "IP_PKTINFO")
        }
        // A larger receive buffer absorbs bursts while a worker is busy sending.
        try? Sockets.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, value: 4 << 20, "SO_RCVBUF")
        try Sockets.setTimeout(fd, option: SO_RCVTIMEO, nanoseconds: 200_000_000)
    }

    /// A port that is free on `address` for UDP (and TCP when `alsoTCP`), for a listener that
    /// asked for port 0.
    ///
    /// SO_REUSEPORT sockets cannot let the kernel choose: Linux may hand a reuseport socket a
    /// port that another reuseport socket of the same user already holds, and the two would
    /// silently split the traffic. So the port is chosen by sockets without SO_REUSEPORT, which
    /// the kernel only gives unused ports, and then closed for the listener to bind.
    /// Fails with EADDRINUSE when any socket holds `address` already.
    ///
    /// The workers' sockets share their port through SO_REUSEPORT, which would also let them
    /// join a port another process's SO_REUSEPORT sockets hold (a second tockd started by
    /// mistake), and the kernel would split the clients between the two servers. A socket
    /// without SO_REUSEPORT cannot join anyone, so binding one first, and closing it, proves the
    /// port free, as chronyd's plain bind does. Not for inherited sockets, which systemd bound.
    static func requireFree(_ address: SocketEndpoint) throws(ListenerError) {
        guard address.port != 0 else { return }
        do throws(SystemError) {
            let fd = try Sockets.open(family: address.family, type: Sockets.datagram)
            defer { close(fd) }
            if address.isIPv6 {
                try Sockets.setOption(fd, level: Int32(IPPROTO_IPV6), name: tock_IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
            }
            try Sockets.bind(fd, to: address)
        } catch {
            throw ListenerError(transport: "UDP", address: address, errorNumber: error.errorNumber)
        }
    }

    /// Runs `bind` with `address`, or, when it asks for port 0, with a port `freePort` chose,
    /// choosing again while `bind` fails with EADDRINUSE: a port is free only until someone
    /// binds it, and between `freePort` closing its probes and `bind` another socket (any
    /// process's client socket) may take it. At most 16 tries; an explicit port is tried once.
    static func bindingPort<T>(_ address: SocketEndpoint, alsoTCP: Bool, _ bind: (SocketEndpoint) throws(ListenerError) -> T) throws(ListenerError) -> T {
        guard address.port == 0 else { return try bind(address) }
        var tries = 0
        while true {
            var candidate = address
            candidate.port = try freePort(on: address, alsoTCP: alsoTCP)
            do throws(ListenerError) {
                return try bind(candidate)
            } catch {
                tries += 1
                guard error.errorNumber == EADDRINUSE, tries < 16 else { throw error }
            }
        }
    }

    static func freePort(on address: SocketEndpoint, alsoTCP: Bool) throws(ListenerError) -> UInt16 {
        var lastError: Int32 = EADDRINUSE
        for _ in 0..<64 {
            guard let udp = try? Sockets.open(family: address.family, type: Sockets.datagram) else { break }
            defer { close(udp) }
            do throws(SystemError) {
                try Sockets.bind(udp, to: address)
            } catch {
                throw ListenerError(transport: "UDP", address: address, errorNumber: error.errorNumber)
            }
            guard let port = try? Sockets.localAddress(udp).port else { break }
            guard alsoTCP else { return port }
            var candidate = address
            candidate.port = port
            guard let tcp = try? Sockets.open(family: address.family, type: Sockets.stream) else { break }
            defer { close(tcp) }
            do throws(SystemError) {
                try Sockets.bind(tcp, to: candidate)
                return port
            } catch {
                lastError = error.errorNumber
            }
        }
        throw ListenerError(transport: alsoTCP ? "UDP+TCP" : "UDP", address: address, errorNumber: lastError)
    }

    /// The accept queue of every TCP listener (the kernel caps it at net.core.somaxconn): deep
    /// enough that a connection flood does not make the kernel drop a real client's SYN while
    /// the accept loop catches up.
    static let streamBacklog: Int32 = 4096

    /// Has the kernel hand over a connection on `fd` (a listening socket of a protocol whose
    /// client speaks first: NTS-KE, Roughtime) only once its first bytes arrive, or after
    /// `seconds` (TCP_DEFER_ACCEPT): a connection that sends nothing then costs the server no
    /// accept, no place and no timer while the kernel holds it, and a real client's request is
    /// there to read when it is accepted. Best effort: a kernel that refuses it accepts as usual.
    static func deferAccept(_ fd: Int32, seconds: Int32) {
        var value = seconds
        _ = setsockopt(fd, Int32(SOL_TCP), Int32(TCP_DEFER_ACCEPT), &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A listening TCP socket bound to `address`.
    static func tcp(_ address: SocketEndpoint, backlog: Int32 = ListenerSocket.streamBacklog) throws(ListenerError) -> Int32 {
        let fd: Int32
        do {
            fd = try Sockets.open(family: address.family, type: Sockets.stream)
        } catch {
            throw ListenerError(transport: "TCP", address: address, errorNumber: error.errorNumber)
        }
        do throws(SystemError) {
            try Sockets.setOption(fd, level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
            if address.isIPv6 {
                try Sockets.setOption(fd, level: Int32(IPPROTO_IPV6), name: tock_IPV6_V6ONLY, value: 1, "IPV6_V6ONLY")
            }
            try Sockets.bind(fd, to: address)
            guard listen(fd, backlog) == 0 else { throw SystemError("listen") }
        } catch {
            close(fd)
            throw ListenerError(transport: "TCP", address: address, errorNumber: error.errorNumber)
        }
        return fd
    }
}
