import NIOCore
import NIOEmbedded
import Testing
import TockProtocol
@testable import TockServer

/// A TCP listener's caps (`ConnectionTable`) and the Daytime/Time handler, on embedded
/// channels: which connection gives way at a cap, which newcomer is refused, and the access
/// list deciding before any byte is written.
@Suite("TCP connections: caps, eviction, Daytime/Time handler") struct StreamHandlerTests {
    static let v4 = ClientAddress(ipv4: 0xC000_0207, port: 40_000)  // 192.0.2.7

    static func connected() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: try SocketAddress(ipAddress: "192.0.2.7", port: 40_000)).wait()
        return channel
    }

    static func client(_ n: UInt32) -> ClientAddress { ClientAddress(ipv4: 0xC633_6400 | n, port: 40_000) }

    static func admitted(_ admission: ConnectionTable.Admission) -> UInt64? {
        if case .admitted(let id) = admission { return id }
        return nil
    }

    @Test("At the per-address cap of connections that have sent, the address's least advanced, oldest one gives way")
    func perAddressEviction() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 100, perAddress: 2), counters: counters)
        let a = try Self.connected(), b = try Self.connected(), c = try Self.connected()
        defer { for ch in [a, b, c] { _ = try? ch.finish(acceptAlreadyClosed: true) } }
        let ids = try [a, b, c].map { try #require(Self.admitted(table.admit($0, client: Self.v4))) }
        #expect(a.isActive && b.isActive && c.isActive, "silent connections count against the listener only")
        table.advance(ids[0], to: .handshaken)
        table.advance(ids[1], to: .receiving)
        #expect(table.advance(ids[2], to: .receiving))
        #expect(a.isActive && !b.isActive && c.isActive, "the least advanced of those that sent was closed")
        #expect(counters.evictions(.perAddressCap) == 1 && counters.drops(.perAddressCap) == 0)
        #expect(table.count == 2)
    }

    @Test("When every connection of the address that has sent is being answered, the next to send is refused")
    func refusedWhenAllAnswering() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 100, perAddress: 2), counters: counters)
        let a = try Self.connected(), b = try Self.connected(), c = try Self.connected()
        defer { for ch in [a, b, c] { _ = try? ch.finish(acceptAlreadyClosed: true) } }
        for ch in [a, b] {
            let id = try #require(Self.admitted(table.admit(ch, client: Self.v4)))
            table.advance(id, to: .receiving)
            table.advance(id, to: .answering)
        }
        let late = try #require(Self.admitted(table.admit(c, client: Self.v4)))
        #expect(!table.advance(late, to: .receiving))
        #expect(a.isActive && b.isActive)
        #expect(counters.drops(.perAddressCap) == 1 && counters.evictions(.perAddressCap) == 0)
        #expect(table.count == 2)
    }

    @Test("IPv6 addresses of one /64 share a cap; another /64 has its own")
    func ipv6PerSlash64() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 100, perAddress: 1), counters: counters)
        let a = try Self.connected(), b = try Self.connected(), c = try Self.connected()
        defer { for ch in [a, b, c] { _ = try? ch.finish(acceptAlreadyClosed: true) } }
        let first = try #require(Self.admitted(table.admit(a, client: ClientAddress(high: 0x2001_0db8_0000_0001, low: 1, port: 1))))
        let second = try #require(Self.admitted(table.admit(b, client: ClientAddress(high: 0x2001_0db8_0000_0001, low: 2, port: 1))))
        let third = try #require(Self.admitted(table.admit(c, client: ClientAddress(high: 0x2001_0db8_0000_0002, low: 2, port: 1))))
        for id in [first, second, third] { table.advance(id, to: .receiving) }
        #expect(!a.isActive && b.isActive && c.isActive, "same /64: one place; another /64: its own")
        #expect(table.count == 2)
    }

    @Test("A full listener closes its oldest silent connection for a newcomer from anywhere, or refuses it")
    func listenerFull() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 3, perAddress: 8), counters: counters)
        let channels = try (0..<5).map { _ in try Self.connected() }
        defer { for ch in channels { _ = try? ch.finish(acceptAlreadyClosed: true) } }
        let first = try #require(Self.admitted(table.admit(channels[0], client: Self.client(1))))
        table.advance(first, to: .handshaken)
        _ = table.admit(channels[1], client: Self.client(2))
        _ = table.admit(channels[2], client: Self.client(3))
        #expect(Self.admitted(table.admit(channels[3], client: Self.client(4))) != nil)
        #expect(channels[0].isActive && !channels[1].isActive, "the oldest silent one, not the older handshaken one")
        #expect(counters.evictions(.connectionLimit) == 1)
        for id in 0..<10 { table.advance(UInt64(id), to: .answering) }
        #expect(table.admit(channels[4], client: Self.client(5)) == .refused(.listenerFull))
        #expect(counters.drops(.connectionLimit) == 1)
        #expect(table.count == 3)
    }

    @Test("A closed connection gives its place back; closeAll closes what is left")
    func removeAndCloseAll() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 1, perAddress: 8), counters: counters)
        let a = try Self.connected(), b = try Self.connected()
        defer { for ch in [a, b] { _ = try? ch.finish(acceptAlreadyClosed: true) } }
        let id = try #require(Self.admitted(table.admit(a, client: Self.v4)))
        table.remove(id)
        #expect(table.count == 0)
        _ = table.admit(b, client: Self.v4)
        #expect(a.isActive && b.isActive && counters.evictions(.connectionLimit) == 0)
        _ = table.closeAll()
        #expect(!b.isActive)
    }

    @Test("A denied peer is closed without a byte")
    func deniedPeer() throws {
        let counters = StreamCounters()
        let table = ConnectionTable(limits: .init(total: 10, perAddress: 10), counters: counters)
        let clock = ClockStateCell(.local(stratum: 2, now: UTCInstant(secondsSinceUnixEpoch: 1_795_546_000), precisionNanoseconds: 30))
        let policy = ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]))
        func handler() -> StreamTimeHandler {
            StreamTimeHandler(core: TextTimeServer(service: .time, format: .rfc867, zone: .utc), clock: clock, counters: counters, policy: policy, limiter: nil, table: table, id: 1)
        }
        let denied = EmbeddedChannel(handler: handler())
        try denied.connect(to: try SocketAddress(ipAddress: "192.0.2.7", port: 40000)).wait()
        defer { _ = try? denied.finish(acceptAlreadyClosed: true) }
        #expect(try denied.readOutbound(as: ByteBuffer.self) == nil)
        #expect(counters.drops(.denied) == 1)
        let allowed = EmbeddedChannel(handler: handler())
        try allowed.connect(to: try SocketAddress(ipAddress: "198.51.100.1", port: 40000)).wait()
        defer { _ = try? allowed.finish(acceptAlreadyClosed: true) }
        #expect(try allowed.readOutbound(as: ByteBuffer.self)?.readableBytes == 4)
    }
}
