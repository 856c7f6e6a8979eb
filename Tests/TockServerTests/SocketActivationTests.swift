import CTockShims
import Foundation
import Glibc
import Testing
import TockProtocol
import TockSockets

@testable import TockServer

/// A socket of `family`/`type` bound to loopback port 0 (and listening, for TCP unless
/// `listening` is false), close-on-exec cleared as a service manager passes it; nil when the
/// kernel refuses (e.g. no UDP-Lite).
private func boundSocket(_ family: Int32, _ type: Int32, protocol proto: Int32 = 0, listening: Bool = true, nonBlocking: Bool = false) -> (fd: Int32, address: SocketEndpoint)? {
    let fd = socket(family, type, proto)
    guard fd >= 0 else { return nil }
    let address = family == AF_INET6 ? loopbackV6 : loopbackV4
    guard address.withSockAddr({ bind(fd, $0, $1) }) == 0,
          type != Sockets.stream || !listening || listen(fd, 16) == 0,
          let local = try? Sockets.localAddress(fd)
    else {
        close(fd)
        return nil
    }
    if nonBlocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    return (fd, local)
}

/// The error `body` throws, or nil (recorded as an issue) when it does not throw.
private func activationError(_ body: () throws(SocketActivationError) -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> SocketActivationError? {
    do throws(SocketActivationError) {
        try body()
        Issue.record("no error thrown", sourceLocation: sourceLocation)
        return nil
    } catch {
        return error
    }
}

private func intOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32 {
    var value: Int32 = -1
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &value, &length) == 0 ? value : -1
}

@Suite("Socket activation: LISTEN_* variables (sd_listen_fds(3))")
struct SocketActivationEnvironmentTests {
    let pid: Int32 = 4242

    @Test("Not activated: no LISTEN_PID, another process's LISTEN_PID, or no LISTEN_FDS")
    func notForUs() throws {
        #expect(try SocketActivation.announcedDescriptors(listenPID: nil, listenFDs: "2", listenFDNames: nil, pid: pid) == nil)
        #expect(try SocketActivation.announcedDescriptors(listenPID: "4243", listenFDs: "2", listenFDNames: "ntp:time", pid: pid) == nil)
        #expect(try SocketActivation.announcedDescriptors(listenPID: "4242", listenFDs: nil, listenFDNames: nil, pid: pid) == nil)
    }

    @Test("LISTEN_FDS=3 announces descriptors 3, 4, 5; LISTEN_FDNAMES names them by position, empty names count")
    func announced() throws {
        let unnamed = try #require(try SocketActivation.announcedDescriptors(listenPID: "4242", listenFDs: "3", listenFDNames: nil, pid: pid))
        #expect(unnamed.map(\.fd) == [3, 4, 5])
        #expect(unnamed.allSatisfy { $0.name == nil })
        let named = try #require(try SocketActivation.announcedDescriptors(listenPID: "4242", listenFDs: "3", listenFDNames: "ntp::tockd.socket", pid: pid))
        #expect(named.map(\.fd) == [3, 4, 5])
        #expect(named.map(\.name) == ["ntp", nil, "tockd.socket"])
    }

    @Test("Malformed values are errors that quote the variable", arguments: [
        ("abc", "3", nil, "LISTEN_PID=abc is not a process ID"),
        ("-5", "3", nil, "LISTEN_PID=-5"),
        ("4242", "three", nil, "LISTEN_FDS=three is not a number"),
        ("4242", "99999999999999999999999", nil, "is not a number"),
        ("4242", "0", nil, "passed no socket"),
        ("4242", "-1", nil, "passed no socket"),
        ("4242", "1025", nil, "at most 1024"),
        ("4242", "2", "ntp", "has 1 name for LISTEN_FDS=2 sockets"),
        ("4242", "1", "ntp:time", "has 2 names for LISTEN_FDS=1 sockets"),
    ] as [(String, String, String?, String)])
    func malformed(listenPID: String, listenFDs: String, names: String?, expected: String) throws {
        let error = activationError { () throws(SocketActivationError) in
            _ = try SocketActivation.announcedDescriptors(listenPID: listenPID, listenFDs: listenFDs, listenFDNames: names, pid: pid)
        }
        #expect(error?.code == .badEnvironment)
        #expect(error?.fd == nil)
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "")")
    }

    @Test("The upper bound itself is accepted")
    func maximum() throws {
        let fds = try #require(try SocketActivation.announcedDescriptors(listenPID: "4242", listenFDs: "\(SocketActivation.maximumDescriptors)", listenFDNames: nil, pid: pid))
        #expect(fds.count == SocketActivation.maximumDescriptors)
        #expect(fds.last?.fd == Int32(SocketActivation.maximumDescriptors) + 2)
    }
}

@Suite("Socket activation: which service a socket is for")
struct SocketActivationAssignmentTests {
    func at(_ port: UInt16) -> SocketEndpoint { SocketEndpoint(ip: "0.0.0.0", port: port)! }

    @Test("A service name wins over the port; other names and no name go by port")
    func rules() throws {
        #expect(try SocketActivation.assign(fd: 3, name: "ntp", transport: .udp, address: at(5123)) == .ntp)
        #expect(try SocketActivation.assign(fd: 3, name: "daytime", transport: .tcp, address: at(8013)) == .daytime)
        #expect(try SocketActivation.assign(fd: 3, name: "time", transport: .udp, address: at(123)) == .time)
        #expect(try SocketActivation.assign(fd: 3, name: nil, transport: .udp, address: at(123)) == .ntp)
        #expect(try SocketActivation.assign(fd: 3, name: "tockd.socket", transport: .tcp, address: at(13)) == .daytime)
        #expect(try SocketActivation.assign(fd: 3, name: "unknown", transport: .udp, address: SocketEndpoint(ip: "::", port: 37)!) == .time)
        // Names are exact: "NTP" is not a service name, so the port decides.
        #expect(try SocketActivation.assign(fd: 3, name: "NTP", transport: .udp, address: at(37)) == .time)
    }

    @Test("A socket neither name nor port places is an error naming the fd, the address and the fix")
    func unassigned() {
        let error = activationError { () throws(SocketActivationError) in
            _ = try SocketActivation.assign(fd: 7, name: "web", transport: .udp, address: at(8080))
        }
        #expect(error?.code == .unassigned)
        #expect(error?.fd == 7)
        let text = error?.description ?? ""
        #expect(text.hasPrefix("socket activation: fd 7 "), "\(text)")
        #expect(text.contains("UDP 0.0.0.0:8080") && text.contains("\"web\"") && text.contains("FileDescriptorName=ntp"), "\(text)")
    }

    @Test("NTP over TCP is refused, by name or by port")
    func ntpOverTCP() {
        for (name, port) in [("ntp", UInt16(5123)), (nil, 123)] as [(String?, UInt16)] {
            let error = activationError { () throws(SocketActivationError) in
                _ = try SocketActivation.assign(fd: 4, name: name, transport: .tcp, address: at(port))
            }
            #expect(error?.code == .wrongTransport)
            #expect(error?.description.contains("NTP is served over UDP only") == true, "\(error?.description ?? "")")
        }
    }
}

@Suite("Socket activation: what an inherited descriptor is")
struct SocketActivationInspectionTests {
    @Test("UDP over IPv4 and listening TCP over IPv6: transport, address, name and service; marked close-on-exec")
    func sockets() throws {
        let udp = try #require(boundSocket(AF_INET, Sockets.datagram))
        defer { close(udp.fd) }
        let tcp = try #require(boundSocket(AF_INET6, Sockets.stream))
        defer { close(tcp.fd) }
        #expect(fcntl(udp.fd, F_GETFD) & FD_CLOEXEC == 0)
        let sockets = try SocketActivation.classify([(udp.fd, "ntp"), (tcp.fd, "daytime")])
        #expect(sockets == [
            InheritedSocket(fd: udp.fd, name: "ntp", service: .ntp, transport: .udp, address: udp.address),
            InheritedSocket(fd: tcp.fd, name: "daytime", service: .daytime, transport: .tcp, address: tcp.address),
        ])
        #expect(sockets[1].address.isIPv6 && sockets[1].address.port == tcp.address.port)
        #expect(fcntl(udp.fd, F_GETFD) & FD_CLOEXEC != 0, "sd_listen_fds(3) sets FD_CLOEXEC on passed descriptors")
        #expect(fcntl(tcp.fd, F_GETFD) & FD_CLOEXEC != 0)
        #expect(sockets[0].description == "NTP over UDP \(udp.address) (fd \(udp.fd), name \"ntp\")")
    }

    @Test("A bound TCP socket that does not listen yet is accepted (NIO listens on it)")
    func boundNotListening() throws {
        let tcp = try #require(boundSocket(AF_INET, Sockets.stream, listening: false))
        defer { close(tcp.fd) }
        let sockets = try SocketActivation.classify([(tcp.fd, "time")])
        #expect(sockets.first?.transport == .tcp)
    }

    @Test("A regular file, a pipe and a closed descriptor: errors that name the fd and what it is")
    func notSockets() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tock-activation-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let file = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        try #require(file >= 0)
        unlink(path)
        defer { close(file) }
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let cases: [(Int32, SocketActivationError.Code, String)] = [
            (file, .notASocket, "is a regular file, not a socket"),
            (fds[0], .notASocket, "is a pipe, not a socket"),
            // No process has this many descriptors open.
            (Int32.max, .notOpen, "is not open"),
        ]
        for (fd, code, text) in cases {
            let error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(fd, nil)]) }
            #expect(error?.code == code)
            #expect(error?.fd == fd)
            #expect(error?.description.hasPrefix("socket activation: fd \(fd) \(text)") == true, "\(error?.description ?? "")")
        }
    }

    @Test("The first bad descriptor in a list is the one named")
    func firstBad() throws {
        let udp = try #require(boundSocket(AF_INET, Sockets.datagram))
        defer { close(udp.fd) }
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(udp.fd, "ntp"), (fds[1], nil)]) }
        #expect(error?.fd == fds[1])
    }

    @Test("A Unix-domain socket is refused: tockd serves IPv4 and IPv6")
    func unixSocket() throws {
        let fd = socket(AF_UNIX, Sockets.datagram, 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(fd, "ntp")]) }
        #expect(error?.code == .unsupportedFamily)
        #expect(error?.description.contains("fd \(fd) is a Unix-domain socket") == true, "\(error?.description ?? "")")
    }

    @Test("An unbound UDP socket, a TCP connection (Accept=yes) and a UDP-Lite socket are refused")
    func unusableSockets() throws {
        let unbound = socket(AF_INET, Sockets.datagram, 0)
        try #require(unbound >= 0)
        defer { close(unbound) }
        var error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(unbound, "ntp")]) }
        #expect(error?.code == .notBound)

        let listener = try #require(boundSocket(AF_INET, Sockets.stream))
        defer { close(listener.fd) }
        let connection = tcpConnect(to: listener.address)
        try #require(connection >= 0)
        defer { close(connection) }
        error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(connection, "daytime")]) }
        #expect(error?.code == .connected)
        #expect(error?.description.contains("Accept=no") == true, "\(error?.description ?? "")")

        // UDP-Lite (RFC 3828) is SOCK_DGRAM too, but not UDP; skipped where the kernel lacks it.
        if let lite = boundSocket(AF_INET, Sockets.datagram, protocol: Int32(IPPROTO_UDPLITE)) {
            defer { close(lite.fd) }
            error = activationError { () throws(SocketActivationError) in _ = try SocketActivation.classify([(lite.fd, "ntp")]) }
            #expect(error?.code == .unsupportedType)
            #expect(error?.description.contains("protocol \(IPPROTO_UDPLITE)") == true, "\(error?.description ?? "")")
        }
    }
}

@Suite("Socket activation: serving inherited sockets")
struct InheritedSocketServingTests {
    @Test("NTP (two workers on one non-blocking UDP socket), Daytime over TCP only and Time over UDP only answer; stop releases every port")
    func serve() async throws {
        // Non-blocking, as systemd creates its sockets.
        let ntp = try #require(boundSocket(AF_INET, Sockets.datagram, nonBlocking: true))
        let daytime = try #require(boundSocket(AF_INET6, Sockets.stream, nonBlocking: true))
        let time = try #require(boundSocket(AF_INET, Sockets.datagram, nonBlocking: true))
        let inherited = try SocketActivation.classify([(ntp.fd, "ntp"), (daytime.fd, "daytime"), (time.fd, "time")])
        let configuration = TockServerConfiguration(inheritedSockets: inherited, daytimeFormat: .hms, clockSource: .local(stratum: 10), ntpWorkers: 2)
        try await withServer(configuration) { server in
            #expect(server.addresses(.ntp) == [ntp.address])
            #expect(server.addresses(.daytime) == [daytime.address])
            #expect(server.addresses(.time) == [time.address])
            // What tockd sets on its own UDP sockets, it must set on inherited ones.
            #expect(fcntl(ntp.fd, F_GETFL) & O_NONBLOCK == 0, "workers need blocking receives that time out")
            #expect(intOption(ntp.fd, SOL_SOCKET, tock_SO_TIMESTAMPNS) == 1)
            #expect(intOption(ntp.fd, Int32(IPPROTO_IP), tock_IP_PKTINFO) == 1)
            var timeout = timeval()
            var length = socklen_t(MemoryLayout<timeval>.size)
            #expect(getsockopt(ntp.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, &length) == 0 && timeout.tv_sec == 0 && timeout.tv_usec == 200_000)

            let answers = await blocking { (0..<20).compactMap { _ in udpExchange(ntpRequest(version: 4, mode: 3), to: ntp.address) } }
            #expect(answers.count == 20 && answers.allSatisfy { $0.count == 48 && $0[0] & 7 == 4 })
            #expect(server.datagramStatistics(.ntp).replied >= 20)
            let text = await blocking { tcpReadAll(from: daytime.address) }
            #expect(text.end == .endOfFile)
            #expect(parseHMS(String(decoding: text.bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) != nil, "\(text.bytes)")
            let seconds = await blocking { udpExchange([], to: time.address) }
            #expect(seconds?.count == 4)
        }
        // The server owned the descriptors and closed them: the UDP ports are free again (a
        // socket without SO_REUSEPORT can take them), and the TCP port refuses connections (a
        // connection it closed may hold the port in TIME_WAIT, so binding is no test there).
        for address in [ntp.address, time.address] {
            let again = occupy(address, type: Sockets.datagram)
            #expect(again != nil, "UDP \(address) is still bound after stop")
            if let again { close(again.fd) }
        }
        let fd = await blocking { tcpConnect(to: daytime.address) }
        if fd >= 0 { close(fd) }
        #expect(fd == -ECONNREFUSED, "TCP \(daytime.address): connect gave \(fd) after stop, not ECONNREFUSED")
    }

    @Test("An IPv4 client of a dual-stack IPv6 socket is seen as IPv4 by access lists and rate limits")
    func v4Mapped() {
        func bytes(of ip: String) -> [UInt8] {
            var storage = sockaddr_storage()
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            _ = inet_pton(AF_INET6, ip, &sin6.sin6_addr)
            withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
            return withUnsafePointer(to: &storage) { ClientAddress($0).bytes }
        }
        #expect(bytes(of: "::ffff:192.0.2.7") == [192, 0, 2, 7])
        #expect(bytes(of: "::1").count == 16)
        // Not v4-mapped: IPv4-compatible (deprecated) and a near miss stay IPv6.
        #expect(bytes(of: "::192.0.2.7").count == 16)
        #expect(bytes(of: "::fffe:192.0.2.7").count == 16)
        #expect(bytes(of: "1::ffff:192.0.2.7").count == 16)

        var storage = sockaddr_storage()
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        _ = inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr)
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: sin6, as: sockaddr_in6.self) }
        let deny = ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]))
        let allow = ServicePolicy(access: AccessList(allow: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]))
        let client = withUnsafePointer(to: &storage) { ClientAddress($0) }
        #expect(!deny.access.permits(client))
        #expect(allow.access.permits(client))
    }
}
