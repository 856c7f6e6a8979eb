import Foundation
import Glibc
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets

/// A plain socket bound to `address` without SO_REUSEADDR or SO_REUSEPORT (and listening, for
/// TCP); returns the fd and the bound address.
func occupy(_ address: SocketEndpoint, type: Int32) -> (fd: Int32, address: SocketEndpoint)? {
    let fd = socket(address.family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    let bound = address.withSockAddr { bind(fd, $0, $1) } == 0
    guard bound, type != Int32(SOCK_STREAM.rawValue) || listen(fd, 16) == 0, let local = try? Sockets.localAddress(fd) else {
        close(fd)
        return nil
    }
    return (fd, local)
}

@Suite("Start-up and shutdown")
struct LifecycleTests {
    @Test("A TCP port already in use: init throws ListenerError naming the address, and releases the UDP socket")
    func tcpPortInUse() async throws {
        let held = try #require(occupy(loopbackV4, type: Int32(SOCK_STREAM.rawValue)))
        defer { close(held.fd) }
        let port = held.address.port
        let configuration = TockServerConfiguration(daytimeListeners: [SocketEndpoint(ip: "127.0.0.1", port: port)!], daytimeFormat: .hms, clockSource: .local(stratum: 10), ntpWorkers: 2)
        do throws(ListenerError) {
            _ = try TockServer(configuration: configuration, logger: quietLogger)
            Issue.record("TockServer bound TCP 127.0.0.1:\(port), which a listening socket holds")
        } catch {
            #expect(error.transport == "TCP")
            #expect(error.errorNumber == EADDRINUSE)
            #expect(error.description.contains("127.0.0.1:\(port)"), "\(error.description)")
            #expect(error.description.contains("already in use"), "\(error.description)")
        }
        // The Daytime UDP socket bound before the TCP one failed must have been closed: a
        // socket without SO_REUSEPORT can take the port.
        let udp = occupy(SocketEndpoint(ip: "127.0.0.1", port: port)!, type: Int32(SOCK_DGRAM.rawValue))
        #expect(udp != nil, "UDP 127.0.0.1:\(port) is still bound after the failed init")
        if let udp { close(udp.fd) }
    }

    @Test("A UDP port held without SO_REUSEPORT: init throws 'already in use'")
    func udpPortInUse() async throws {
        let held = try #require(occupy(loopbackV6, type: Int32(SOCK_DGRAM.rawValue)))
        defer { close(held.fd) }
        let port = held.address.port
        do throws(ListenerError) {
            _ = try TockServer(configuration: TockServerConfiguration(ntpListeners: [SocketEndpoint(ip: "::1", port: port)!], clockSource: .local(stratum: 10), ntpWorkers: 2), logger: quietLogger)
            Issue.record("TockServer bound UDP [::1]:\(port), which another socket holds")
        } catch {
            #expect(error.transport == "UDP")
            #expect(error.description.contains("[::1]:\(port)"), "\(error.description)")
            #expect(error.description.contains("already in use"), "\(error.description)")
        }
    }

    @Test("Addresses of no local interface: init throws 'no interface'", arguments: ["192.0.2.1", "2001:db8::1"])
    func foreignAddress(ip: String) async throws {
        for configuration in [
            TockServerConfiguration(ntpListeners: [SocketEndpoint(ip: ip, port: 0)!], clockSource: .local(stratum: 10), ntpWorkers: 1),
            TockServerConfiguration(daytimeListeners: [SocketEndpoint(ip: ip, port: 0)!], clockSource: .local(stratum: 10)),
            TockServerConfiguration(ntpListeners: [loopbackV4], timeListeners: [SocketEndpoint(ip: ip, port: 0)!], clockSource: .local(stratum: 10), ntpWorkers: 1),
        ] {
            do throws(ListenerError) {
                _ = try TockServer(configuration: configuration, logger: quietLogger)
                Issue.record("TockServer bound \(ip)")
            } catch {
                #expect(error.errorNumber == EADDRNOTAVAIL, "\(error.description)")
                #expect(error.description.contains(ip), "\(error.description)")
                #expect(error.description.contains("no interface"), "\(error.description)")
            }
        }
    }

    @Test("Graceful shutdown: the server stops within 5 s and the ports stop answering")
    func gracefulStop() async throws {
        let server = try TockServer(configuration: .loopback(), logger: quietLogger)
        let running = RunningServer(server)
        try await waitUntilReady(server)
        let ntp = server.addresses(.ntp)
        let text = server.addresses(.daytime) + server.addresses(.time)
        // It works before...
        for address in ntp {
            let reply = await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address) }
            #expect(reply?.count == 48)
        }
        for address in text {
            #expect(await blocking { tcpReadAll(from: address) }.bytes.isEmpty == false)
        }
        // Typically 0.2 s (the workers' receive timeout); the bound leaves room for a loaded CI.
        // Timed to the server's own State.stopped: the service group's return after it runs on
        // the task pool all tests share, which other tests' blocking calls can hold for seconds.
        let stopped = await running.stop(timeout: .seconds(5))
        #expect(stopped, "the server had not stopped 5 s after triggerGracefulShutdown")
        // ... and not after.
        for address in ntp {
            let reply = await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address, timeoutMilliseconds: 300) }
            #expect(reply == nil, "\(address) still answers NTP")
        }
        for address in text {
            let udp = await blocking { udpExchange([], to: address, timeoutMilliseconds: 300) }
            #expect(udp == nil, "\(address) still answers over UDP")
            let fd = await blocking { tcpConnect(to: address) }
            if fd >= 0 { close(fd) }
            #expect(fd == -ECONNREFUSED, "\(address): TCP connect gave \(fd), not ECONNREFUSED")
        }
        #expect(server.datagramStatistics(.ntp).replied >= UInt64(ntp.count))
    }

    @Test("Cancelling the run task stops the server too")
    func cancellation() async throws {
        let server = try TockServer(configuration: .loopback(daytime: false), logger: quietLogger)
        let running = RunningServer(server)
        try await waitUntilReady(server)
        running.runTask.cancel()
        let stopped = await eventually(timeout: .seconds(5)) { running.finished.isSet }
        #expect(stopped, "run() had not returned 5 s after cancellation")
        if !stopped { await running.stop() }
        for address in server.addresses(.ntp) {
            let reply = await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address, timeoutMilliseconds: 300) }
            #expect(reply == nil, "\(address) still answers NTP")
        }
        let fd = await blocking { tcpConnect(to: server.addresses(.time)[0]) }
        if fd >= 0 { close(fd) }
        #expect(fd == -ECONNREFUSED)
    }

    @Test("A second server on a UDP port another process's SO_REUSEPORT sockets hold is refused, not joined")
    func reusePortHeldByAnother() async throws {
        // Stand-in for a running tockd: an SO_REUSEPORT socket of the same user on a fixed port.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        #expect(loopbackV4.withSockAddr { bind(fd, $0, $1) } == 0)
        let held = try Sockets.localAddress(fd)
        for service in [TockService.ntp, .time] {
            var configuration = TockServerConfiguration(clockSource: .local(stratum: 10), ntpWorkers: 2)
            if service == .ntp { configuration.ntpListeners = [held] } else { configuration.timeListeners = [held] }
            do throws(ListenerError) {
                _ = try TockServer(configuration: configuration, logger: quietLogger)
                Issue.record("\(service): TockServer joined UDP \(held), which another SO_REUSEPORT socket holds")
            } catch {
                #expect(error.errorNumber == EADDRINUSE, "\(service): \(error.description)")
                #expect(error.description.contains("\(held)") && error.description.contains("already in use"), "\(error.description)")
            }
        }
    }
}
