import NIOCore
import NIOEmbedded
import Testing
import TockProtocol
@testable import TockServer

/// The TCP handler on an embedded channel: the connection cap and the access list decide
/// before any byte is written.
@Suite("TCP Daytime/Time handler") struct StreamHandlerTests {
    static func handler(maxConnections: Int, counters: StreamCounters, policy: ServicePolicy = ServicePolicy()) -> StreamTimeHandler {
        let clock = ClockStateCell(.local(stratum: 2, now: UTCInstant(secondsSinceUnixEpoch: 1_795_546_000), precisionNanoseconds: 30))
        return StreamTimeHandler(
            core: TextTimeServer(service: .time, format: .rfc867, zone: .utc),
            clock: clock,
            connectionTimeout: .seconds(5),
            counters: counters,
            policy: policy,
            limiter: nil,
            maxConnections: maxConnections
        )
    }

    static func connect(_ handler: StreamTimeHandler, from address: String = "192.0.2.7") throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: try SocketAddress(ipAddress: address, port: 40000)).wait()
        return channel
    }

    /// Runs the connection deadline and closes the channel, so nothing outlives the test.
    static func finish(_ channel: EmbeddedChannel) {
        channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }

    @Test("Below the cap a connection gets 4 bytes and is closed; at the cap it is closed unanswered")
    func connectionCap() throws {
        let counters = StreamCounters()
        let first = try Self.connect(Self.handler(maxConnections: 2, counters: counters))
        defer { Self.finish(first) }
        let reply = try first.readOutbound(as: ByteBuffer.self)
        #expect(reply?.readableBytes == 4)

        // Two connections hold the places (as slow clients would)...
        counters.active.store(2, ordering: .relaxed)
        let refused = try Self.connect(Self.handler(maxConnections: 2, counters: counters))
        defer { Self.finish(refused) }
        #expect(try refused.readOutbound(as: ByteBuffer.self) == nil)
        #expect(!refused.isActive)
        #expect(counters.drops(.connectionLimit) == 1)
        #expect(counters.active.load(ordering: .relaxed) == 2, "a refused connection takes no place")

        // ...and once one goes, a new connection is served again.
        counters.active.store(1, ordering: .relaxed)
        let served = try Self.connect(Self.handler(maxConnections: 2, counters: counters))
        defer { Self.finish(served) }
        #expect(try served.readOutbound(as: ByteBuffer.self)?.readableBytes == 4)
    }

    @Test("A denied peer is closed without a byte")
    func deniedPeer() throws {
        let counters = StreamCounters()
        let policy = ServicePolicy(access: AccessList(deny: [AddressPrefix(bytes: [192, 0, 2, 0], length: 24)]))
        let denied = try Self.connect(Self.handler(maxConnections: 10, counters: counters, policy: policy), from: "192.0.2.7")
        defer { Self.finish(denied) }
        #expect(try denied.readOutbound(as: ByteBuffer.self) == nil)
        #expect(counters.drops(.denied) == 1)
        let allowed = try Self.connect(Self.handler(maxConnections: 10, counters: counters, policy: policy), from: "198.51.100.1")
        defer { Self.finish(allowed) }
        #expect(try allowed.readOutbound(as: ByteBuffer.self)?.readableBytes == 4)
    }
}
