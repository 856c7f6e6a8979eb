import Foundation
import Testing
import TockProtocol
import TockSockets

@testable import TockServer

/// Interleaved mode (RFC 9769) through real sockets: the kernel's transmit timestamp of a reply
/// to a client in interleaved mode comes back in the next reply to a request that carries that
/// reply's receive timestamp. Only replies to requests that showed interleaved intent ask the
/// kernel for a transmit timestamp, so a client's first such request still gets a basic reply.
@Suite("Interleaved NTP service")
struct InterleavedServiceTests {
    /// An NTPv4 client request with these origin, receive and transmit fields.
    static func request(origin: UInt64, receive: UInt64, transmit: UInt64) -> [UInt8] {
        var bytes = ntpRequest(version: 4, mode: 3, transmit: transmit)
        for i in 0..<8 {
            bytes[24 + i] = UInt8(truncatingIfNeeded: origin >> UInt64(56 - 8 * i))
            bytes[32 + i] = UInt8(truncatingIfNeeded: receive >> UInt64(56 - 8 * i))
        }
        return bytes
    }

    /// One exchange from a fresh socket (a new source port each time, as chrony uses, which may
    /// reach the other worker): the reply and the client's receive time.
    static func exchange(_ request: [UInt8], to address: SocketEndpoint) async -> ([UInt8], UTCInstant)? {
        await blocking {
            guard let reply = udpExchange(request, to: address, timeoutMilliseconds: 2000) else { return nil }
            return (reply, SystemClock.now())
        }
    }

    @Test("A request carrying the previous reply's receive timestamp gets that reply's kernel transmit timestamp")
    func kernelTransmitTimestampComesBack() async throws {
        try await withServer(.loopback(daytime: false, time: false)) { server in
            for address in server.addresses(.ntp) {
                let basic = try #require(await Self.exchange(Self.request(origin: 0, receive: 0, transmit: UInt64.random(in: 1...UInt64.max)), to: address), "\(address): no basic reply")
                // The first request showing intent (origin = the basic reply's T2) gets a basic
                // reply, always: the basic reply's transmit timestamp was never asked of the
                // kernel. This reply's is, so the requests after it can be interleaved.
                let intent = Self.request(origin: be64(basic.0, 32), receive: NTPTimestamp(basic.1).rawValue, transmit: UInt64.random(in: 1...UInt64.max))
                var first = try #require(await Self.exchange(intent, to: address), "\(address): no reply to the first interleaved request")
                #expect(be64(first.0, 24) == be64(intent, 40), "\(address): the first interleaved request gets a basic reply")
                var interleaved = 0
                // Each reply's kernel timestamp is read right after its send; on a busy machine a
                // request may overtake that read and get a basic reply, so try a few times.
                for _ in 0..<8 where interleaved == 0 {
                    try await Task.sleep(for: .milliseconds(20))
                    let (previous, clientReceive) = first
                    let previousReceive = be64(previous, 32)
                    let previousUserTransmit = be64(previous, 40)  // T3 read before sendmmsg
                    let t4 = NTPTimestamp(clientReceive).rawValue
                    let request = Self.request(origin: previousReceive, receive: t4, transmit: UInt64.random(in: 1...UInt64.max))
                    let next = try #require(await Self.exchange(request, to: address), "\(address): no reply")
                    let reply = next.0
                    #expect(previousReceive & 1 == 1 && previousUserTransmit & 1 == 0, "receive odd, transmit even")
                    if be64(reply, 24) == t4 {
                        interleaved += 1
                        // Interleaved: origin = our receive field, transmit = the kernel's time
                        // for the previous reply: not before the time read before sending it
                        // (within the precision's random bits), and close after it.
                        let kernel = NTPTimestamp(rawValue: be64(reply, 40)).instant(near: clientReceive)
                        let user = NTPTimestamp(rawValue: previousUserTransmit).instant(near: clientReceive)
                        let late = kernel.nanoseconds(since: user)
                        #expect(late >= -1_000, "\(address): kernel TX \(late) ns before the user-space T3")
                        #expect(late < 100_000_000, "\(address): kernel TX \(late) ns after the user-space T3")
                        #expect(be64(reply, 32) != previousReceive, "this exchange's T2")
                        let t2 = NTPTimestamp(rawValue: be64(reply, 32)).instant(near: clientReceive)
                        #expect(t2 >= kernel, "this T2 after the previous reply left")
                    } else {
                        #expect(be64(reply, 24) == be64(request, 40), "\(address): a basic reply echoes the transmit timestamp")
                    }
                    first = next
                }
                #expect(interleaved > 0, "\(address): no interleaved reply in 8 tries")
            }
            // Counted once published (at the end of each worker's batch).
            #expect(await eventually { server.datagramStatistics(.ntp).interleaved >= 2 }, "interleaved replies counted")
        }
    }

    @Test("With interleaved mode off every reply is basic")
    func offMeansBasic() async throws {
        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.ntpInterleaved = false
        try await withServer(configuration) { server in
            for address in server.addresses(.ntp) {
                var (previous, clientReceive) = try #require(await Self.exchange(Self.request(origin: 0, receive: 0, transmit: 77), to: address))
                for _ in 0..<3 {
                    try await Task.sleep(for: .milliseconds(10))
                    let request = Self.request(origin: be64(previous, 32), receive: NTPTimestamp(clientReceive).rawValue, transmit: UInt64.random(in: 1...UInt64.max))
                    (previous, clientReceive) = try #require(await Self.exchange(request, to: address))
                    #expect(be64(previous, 24) == be64(request, 40))
                }
            }
        }
    }

    @Test("Basic replies are sampled for the send delay that corrects their T3, with interleaved mode on or off", arguments: [true, false])
    func transmitDelaySampled(_ interleaved: Bool) async throws {
        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.ntpInterleaved = interleaved
        configuration.ntpWorkers = 1
        try await withServer(configuration) { server in
            let address = server.addresses(.ntp)[0]
            // The first basic reply is a sample, then every 64th: 130 requests make three.
            for _ in 0..<130 {
                _ = try #require(await Self.exchange(Self.request(origin: 0, receive: 0, transmit: UInt64.random(in: 1...UInt64.max)), to: address))
            }
            #expect(await eventually { server.datagramStatistics(.ntp).transmitDelaySamples >= 3 }, "three samples")
            let statistics = server.datagramStatistics(.ntp)
            let mean = Double(statistics.transmitDelayNanoseconds) / Double(max(1, statistics.transmitDelaySamples))
            // The time from reading T3 to the kernel's timestamp: a send system call, more than
            // nothing and far less than the millisecond over which a sample is not believed.
            #expect(mean > 0 && mean < 1_000_000, "mean send delay \(mean) ns")
            let status = server.status()
            let ntp = try #require(status.services.first { $0.name == "ntp" && $0.transport == "udp" })
            #expect(ntp.transmitDelaySamples == statistics.transmitDelaySamples)
        }
    }

    @Test("The client log is fixed in size: a million addresses leave it as it was")
    func logDoesNotGrow() {
        let log = InterleavedClientLog(memoryBytes: 1 << 16)
        #expect(log.capacity == 4096)
        for i in 0..<1_000_000 {
            let client = ClientAddress(ipv4: UInt32(truncatingIfNeeded: i &* 2_654_435_761), port: 123)
            log.record(receive: UInt64(i) << 1 | 1, slot: log.slot(of: client))
        }
        #expect(log.occupied <= log.capacity)
        // A transmit time belongs only to the receive timestamp it was stored for.
        let client = ClientAddress(ipv4: 0x0A00_0001, port: 1)
        let slot = log.slot(of: client)
        log.record(receive: 1001, slot: slot)
        #expect(log.setTransmitTimestamp(1501, slot: slot, receive: 1001))
        #expect(log.transmitTimestamp(slot: slot, receive: 1001) == 1501)
        log.record(receive: 2001, slot: slot)
        #expect(!log.setTransmitTimestamp(1601, slot: slot, receive: 1001))  // replaced meanwhile
        #expect(log.transmitTimestamp(slot: slot, receive: 2001) == nil)
        #expect(log.transmitTimestamp(slot: slot, receive: 1001) == nil)
    }
}
