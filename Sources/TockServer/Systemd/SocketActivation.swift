import Glibc
import TockProtocol
import TockSockets

/// A socket a service manager bound and passed to tockd (socket activation), and the service
/// tockd runs on it.
package struct InheritedSocket: Sendable, Hashable, CustomStringConvertible {
    /// The transports tockd serves.
    package enum Transport: String, Sendable, Hashable {
        case udp, tcp
    }

    /// The descriptor, from 3 (`SD_LISTEN_FDS_START`) up.
    package var fd: Int32
    /// Its entry in `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`), if any.
    package var name: String?
    /// What tockd serves on it.
    package var service: TockService
    /// UDP (`ListenDatagram=`) or TCP (`ListenStream=`).
    package var transport: Transport
    /// The address the socket is bound to.
    package var address: SocketEndpoint

    /// A socket as `SocketActivation.classify` found it; tests and embedders may build one.
    package init(fd: Int32, name: String?, service: TockService, transport: Transport, address: SocketEndpoint) {
        self.fd = fd
        self.name = name
        self.service = service
        self.transport = transport
        self.address = address
    }

    /// `NTP over UDP 0.0.0.0:123 (fd 3, name "ntp")`.
    package var description: String {
        let label = name.map { ", name \"\($0)\"" } ?? ""
        return "\(service.label) over \(transport.rawValue.uppercased()) \(address) (fd \(fd)\(label))"
    }
}

extension TockService {
    /// `NTP`, `Daytime`, `Time`, as messages name the service.
    package var label: String {
        switch self {
        case .ntp: "NTP"
        case .daytime: "Daytime"
        case .time: "Time"
        case .ntsKE: "NTS-KE"
        case .roughtime: "Roughtime"
        }
    }
}

/// Inherited sockets were announced but cannot be served: names the descriptor, what is wrong
/// and what to change.
package struct SocketActivationError: Error, Sendable, CustomStringConvertible {
    /// What kind of problem; compare errors on this.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short name, e.g. "not a socket".
        package let rawValue: String
        /// LISTEN_PID, LISTEN_FDS or LISTEN_FDNAMES is malformed or inconsistent.
        package static let badEnvironment = Code(rawValue: "bad environment")
        /// An announced descriptor is not open.
        package static let notOpen = Code(rawValue: "not open")
        /// An announced descriptor is a file, pipe or device rather than a socket.
        package static let notASocket = Code(rawValue: "not a socket")
        /// A socket of a family other than IPv4 and IPv6 (e.g. AF_UNIX).
        package static let unsupportedFamily = Code(rawValue: "unsupported family")
        /// A socket other than UDP or TCP (SOCK_SEQPACKET, SOCK_RAW, SCTP, ...).
        package static let unsupportedType = Code(rawValue: "unsupported type")
        /// A socket bound to no port.
        package static let notBound = Code(rawValue: "not bound")
        /// A connected TCP socket (`Accept=yes`), not a listening one.
        package static let connected = Code(rawValue: "connected")
        /// Neither the name nor the port says which service the socket is for.
        package static let unassigned = Code(rawValue: "unassigned")
        /// NTP over TCP.
        package static let wrongTransport = Code(rawValue: "wrong transport")
        package var description: String { rawValue }
    }

    /// What kind of problem.
    package var code: Code
    /// The descriptor at fault, if one is.
    package var fd: Int32?
    /// What is wrong, and what to do.
    package var reason: String

    /// An error of `code` about `fd` (nil when no one descriptor is at fault).
    package init(_ code: Code, fd: Int32? = nil, _ reason: String) {
        self.code = code
        self.fd = fd
        self.reason = reason
    }

    package var description: String {
        "socket activation: " + (fd.map { "fd \($0) " } ?? "") + reason
    }
}

/// Socket activation as systemd does it (sd_listen_fds(3), without libsystemd): the service
/// manager binds the sockets and starts tockd with them open from descriptor 3 up, announced by
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`. tockd then needs no privilege at all, even
/// for ports 123, 13 and 37.
///
/// Each socket goes to a service by its name (systemd.socket(5) `FileDescriptorName=ntp`,
/// `daytime` or `time`), or, for any other name or none, by its port (123, 13, 37): one socket
/// unit names all its sockets alike, so a single unit for every service relies on the ports.
package enum SocketActivation {
    /// `SD_LISTEN_FDS_START`: the first passed descriptor.
    package static let firstDescriptor: Int32 = 3
    /// More sockets than any configuration tockd could serve sensibly; a larger count is a
    /// mistake (or garbage), not a socket unit.
    package static let maximumDescriptors = 1024
    /// The variables, removed once read so that no child inherits them (sd_listen_fds(3)
    /// `unset_environment`).
    package static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]

    /// The sockets this process was started with, checked and assigned to services; empty when
    /// it was not socket-activated. Removes the `LISTEN_*` variables from the environment and
    /// marks the descriptors close-on-exec, whatever the outcome.
    ///
    /// Call it on the main thread before any other thread starts: setenv and unsetenv are not
    /// thread-safe.
    package static func inheritedSockets() throws(SocketActivationError) -> [InheritedSocket] {
        let values = variables.map { name in getenv(name).map { String(cString: $0) } }
        for name in variables { unsetenv(name) }
        guard let announced = try announcedDescriptors(listenPID: values[0], listenFDs: values[1], listenFDNames: values[2], pid: getpid()) else {
            return []
        }
        return try classify(announced)
    }

    /// The descriptors the variables announce, with their names, or nil when they are not for
    /// this process (`LISTEN_PID` or `LISTEN_FDS` unset, or `LISTEN_PID` another process's, as
    /// when a parent that was activated did not clear them). Reads no descriptor.
    package static func announcedDescriptors(listenPID: String?, listenFDs: String?, listenFDNames: String?, pid: Int32) throws(SocketActivationError) -> [(fd: Int32, name: String?)]? {
        guard let listenPID else { return nil }
        guard let owner = Int32(listenPID), owner > 0 else {
            throw SocketActivationError(.badEnvironment, "LISTEN_PID=\(listenPID) is not a process ID")
        }
        guard owner == pid, let listenFDs else { return nil }
        guard let count = Int(listenFDs) else {
            throw SocketActivationError(.badEnvironment, "LISTEN_FDS=\(listenFDs) is not a number")
        }
        guard count > 0 else {
            throw SocketActivationError(.badEnvironment, "LISTEN_FDS=\(listenFDs): the service manager passed no socket; give the socket unit a ListenDatagram= or ListenStream= line")
        }
        guard count <= maximumDescriptors else {
            throw SocketActivationError(.badEnvironment, "LISTEN_FDS=\(listenFDs): more sockets than tockd serves (at most \(maximumDescriptors))")
        }
        var names: [String?] = Array(repeating: nil, count: count)
        if let listenFDNames {
            // Empty names are kept, so that positions match descriptors.
            let split = listenFDNames.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard split.count == count else {
                throw SocketActivationError(.badEnvironment, "LISTEN_FDNAMES=\(listenFDNames) has \(split.count) name\(split.count == 1 ? "" : "s") for LISTEN_FDS=\(count) sockets")
            }
            names = split.map { $0.isEmpty ? nil : $0 }
        }
        return names.enumerated().map { (firstDescriptor + Int32($0.offset), $0.element) }
    }

    /// Checks each descriptor is an IPv4/IPv6 UDP or TCP socket bound to a port, marks it
    /// close-on-exec, and assigns it to a service.
    package static func classify(_ descriptors: [(fd: Int32, name: String?)]) throws(SocketActivationError) -> [InheritedSocket] {
        var sockets: [InheritedSocket] = []
        for (fd, name) in descriptors {
            let (transport, address) = try inspect(fd)
            let service = try assign(fd: fd, name: name, transport: transport, address: address)
            sockets.append(InheritedSocket(fd: fd, name: name, service: service, transport: transport, address: address))
        }
        return sockets
    }

    /// The service for a socket: its name if that is `ntp`, `daytime` or `time`, else its port.
    /// Pure, so that every rule is tested without sockets.
    package static func assign(fd: Int32, name: String?, transport: InheritedSocket.Transport, address: SocketEndpoint) throws(SocketActivationError) -> TockService {
        let what = "(\(transport.rawValue.uppercased()) \(address)\(name.map { ", name \"\($0)\"" } ?? ""))"
        let service: TockService
        if let name, let named = TockService(rawValue: name) {
            service = named
        } else if let byPort = TockService.allCases.first(where: { $0.wellKnownPort == address.port }) {
            service = byPort
        } else {
            throw SocketActivationError(.unassigned, fd: fd, "\(what) is for no service tockd knows: name it with FileDescriptorName=ntp, daytime or time, or use port 123 (NTP), 13 (Daytime) or 37 (Time)")
        }
        if service == .ntp, transport == .tcp {
            throw SocketActivationError(.wrongTransport, fd: fd, "\(what) is a TCP socket, but NTP is served over UDP only: use ListenDatagram=, not ListenStream=")
        }
        return service
    }

    /// What `fd` is: its transport and bound address. Marks it close-on-exec.
    static func inspect(_ fd: Int32) throws(SocketActivationError) -> (InheritedSocket.Transport, SocketEndpoint) {
        let flags = fcntl(fd, F_GETFD)
        guard flags >= 0 else {
            throw SocketActivationError(.notOpen, fd: fd, "is not open (\(SystemError.describe(errno))), though LISTEN_FDS announces it")
        }
        _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SocketActivationError(.notOpen, fd: fd, "cannot be examined: fstat: \(SystemError.describe(errno))")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw SocketActivationError(.notASocket, fd: fd, "is \(fileKind(info.st_mode)), not a socket; pass only sockets (ListenDatagram=, ListenStream=)")
        }
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        let family = option(SO_DOMAIN) ?? -1
        guard family == AF_INET || family == AF_INET6 else {
            let kind = family == AF_UNIX ? "a Unix-domain socket" : "a socket of address family \(family)"
            throw SocketActivationError(.unsupportedFamily, fd: fd, "is \(kind); tockd serves IPv4 and IPv6 only (e.g. ListenDatagram=123, ListenStream=0.0.0.0:13)")
        }
        let type = option(SO_TYPE) ?? -1
        let proto = option(SO_PROTOCOL) ?? -1
        let transport: InheritedSocket.Transport
        switch (type, proto) {
        case (Sockets.datagram, Int32(IPPROTO_UDP)): transport = .udp
        case (Sockets.stream, Int32(IPPROTO_TCP)): transport = .tcp
        default:
            throw SocketActivationError(.unsupportedType, fd: fd, "is \(socketKind(type: type, protocol: proto)), not UDP or TCP; use ListenDatagram= (UDP) or ListenStream= (TCP)")
        }
        guard let address = try? Sockets.localAddress(fd), address.port != 0 else {
            throw SocketActivationError(.notBound, fd: fd, "is a \(transport.rawValue.uppercased()) socket bound to no port")
        }
        if transport == .tcp {
            // A connection (Accept=yes hands one per service instance) rather than a listener.
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let connected = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
            } == 0
            if connected {
                throw SocketActivationError(.connected, fd: fd, "(TCP \(address)) is a connection, not a listening socket; set Accept=no in the socket unit")
            }
        }
        return (transport, address)
    }

    /// "a regular file", "a pipe", ... for a stat(2) mode.
    static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a pipe"
        case S_IFLNK: "a symbolic link"
        default: "not a socket (mode \(String(mode, radix: 8)))"
        }
    }

    /// "a SOCK_SEQPACKET socket", "a datagram socket of protocol 136", ...
    static func socketKind(type: Int32, protocol proto: Int32) -> String {
        switch type {
        case Sockets.datagram: "a datagram socket of protocol \(proto)"
        case Sockets.stream: "a stream socket of protocol \(proto)\(proto == Int32(IPPROTO_SCTP) ? " (SCTP)" : "")"
        case Int32(SOCK_SEQPACKET.rawValue): "a SOCK_SEQPACKET socket"
        case Int32(SOCK_RAW.rawValue): "a raw socket"
        default: "a socket of type \(type)"
        }
    }
}
