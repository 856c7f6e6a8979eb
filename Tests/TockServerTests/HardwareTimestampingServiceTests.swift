import CTockShims
import Glibc
import Testing
import TockProtocol

@testable import TockServer
@testable import TockSockets

/// `--hw-timestamping` around the decisions: decoding the cards' timestamps from control
/// messages, converting them in a worker, a software timestamp standing in until the card's
/// arrives, and the fallback on interfaces without a hardware clock (this machine has none:
/// loopback, and a virtual NIC without a PTP clock).
@Suite("Hardware timestamping in the engine")
struct HardwareTimestampingServiceTests {
    /// Control messages written one after another into a buffer, as the kernel writes them.
    final class ControlMessages {
        let space = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
        var message = msghdr()
        private var used = 0

        init() {
            space.initializeMemory(as: UInt8.self, repeating: 0, count: 512)
        }

        deinit { space.deallocate() }

        func add<T>(level: Int32, type: Int32, _ value: T) {
            let header = (space + used).assumingMemoryBound(to: cmsghdr.self)
            header.pointee.cmsg_level = level
            header.pointee.cmsg_type = type
            header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<T>.size)
            UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: value, as: T.self)
            used += tock_cmsg_space(MemoryLayout<T>.size)
            message.msg_control = space
            message.msg_controllen = used
        }
    }

    static func timestamping(software: Int64, hardware: Int64) -> tock_scm_timestamping {
        var value = tock_scm_timestamping()
        value.ts.0 = timespec(tv_sec: Int(software / 1_000_000_000), tv_nsec: Int(software % 1_000_000_000))
        value.ts.2 = timespec(tv_sec: Int(hardware / 1_000_000_000), tv_nsec: Int(hardware % 1_000_000_000))
        return value
    }

    @Test("A received packet's hardware timestamp, interface and frame length are read from its control messages")
    func receiveControl() {
        let control = ControlMessages()
        control.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING, Self.timestamping(software: 1_800_000_000_123_456_789, hardware: 1_799_999_963_000_000_042))
        var info = tock_scm_ts_pktinfo()
        info.if_index = 7
        info.pkt_length = 90
        control.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING_PKTINFO, info)
        var pktinfo = in_pktinfo()
        pktinfo.ipi_ifindex = 3
        control.add(level: Int32(IPPROTO_IP), type: tock_IP_PKTINFO, pktinfo)
        let received = ReceivedControl(reading: &control.message)
        #expect(received.receiveTime == UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_123_456_789))
        #expect(received.hardwareReceiveTime == 1_799_999_963_000_000_042)
        #expect(received.timestampInterface == 7)
        #expect(received.frameLength == 90)
        #expect(received.arrivalInterface == 3, "IP_PKTINFO's interface, for kernels without SCM_TIMESTAMPING_PKTINFO")

        let software = ControlMessages()
        software.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING, Self.timestamping(software: 1_800_000_000_000_000_001, hardware: 0))
        let plain = ReceivedControl(reading: &software.message)
        #expect(plain.hardwareReceiveTime == 0 && plain.timestampInterface == 0, "no card timestamp: none claimed")
    }

    @Test("Error-queue reports: software and hardware ones carry the same number; a report without a number or a time is none")
    func transmitReports() throws {
        func report(software: Int64, hardware: Int64, id: UInt32, interface: Int32?) -> TransmitReport? {
            let control = ControlMessages()
            var err = tock_sock_extended_err()
            err.ee_errno = UInt32(tock_ENOMSG)
            err.ee_origin = UInt8(tock_SO_EE_ORIGIN_TIMESTAMPING)
            err.ee_data = id
            control.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING, Self.timestamping(software: software, hardware: hardware))
            control.add(level: tock_SOL_IP, type: tock_IP_RECVERR, err)
            if let interface {
                var pktinfo = in_pktinfo()
                pktinfo.ipi_ifindex = interface
                control.add(level: Int32(IPPROTO_IP), type: tock_IP_PKTINFO, pktinfo)
            }
            return TransmitTimestampQueue.report(in: &control.message)
        }
        let soft = try #require(report(software: 1_800_000_000_000_000_500, hardware: 0, id: 41, interface: nil))
        #expect(soft.id == 41 && soft.software == UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_000_000_500) && soft.hardware == 0)
        let card = try #require(report(software: 0, hardware: 1_799_999_963_000_000_900, id: 41, interface: 7))
        #expect(card.id == 41 && card.software == nil && card.hardware == 1_799_999_963_000_000_900)
        #expect(report(software: 0, hardware: 0, id: 5, interface: 7) == nil, "a report without any timestamp")
    }

    static func clocks(linkSpeed: Int? = 1000) -> HardwareClocks {
        let plan = HardwareTimestampingPlan(hardwareClock: 0, receiveFilter: .all, linkSpeedMbps: linkSpeed)
        return HardwareClocks(interfaces: [
            .init(name: "card0", index: 7, outcome: .success(plan), device: nil, previous: nil),
            .init(name: "lo", index: 1, outcome: .failure(.noHardwareClock), device: nil, previous: nil),
        ], requested: ["card0", "lo"])
    }

    @Test("A worker converts a card's timestamp with the published mapping, moves a receive timestamp to the frame's end, and refuses a stale or foreign one")
    func workerConversion() {
        let clocks = Self.clocks()
        #expect(clocks.isActive)
        var cached = CachedHardwareClocks(clocks)
        let now = UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_000_000_000)
        #expect(cached.systemTime(hardware: 1_799_999_963_000_000_000, interface: 7, receive: true, now: now) == nil, "no mapping yet")
        // The card runs 37 s behind and 10 ppm fast.
        let mapping = HardwareClockMapping(hardwareReference: 1_799_999_963_000_000_000, systemReference: 1_800_000_000_000_000_000, rate: 1 / (1 + 10e-6), validUntil: now.nanosecondsSinceUnixEpoch + 3_500_000_000)
        clocks.publish([mapping, nil], resets: [0, 0])
        cached.refresh()
        let hardware: Int64 = 1_799_999_963_000_000_000 + 100_001_000  // 100 ms and 1 µs later on the card
        let expected = mapping.systemTime(hardware: hardware)
        #expect(abs(expected - (1_800_000_000_000_000_000 + 100_000_000)) < 2, "10 ppm of 100 ms is 1 µs")
        #expect(cached.systemTime(hardware: hardware, interface: 7, receive: false, now: now)?.nanosecondsSinceUnixEpoch == expected)
        #expect(cached.systemTime(hardware: hardware, interface: 7, frameLength: 90, receive: true, now: now)?.nanosecondsSinceUnixEpoch == expected + 752)
        #expect(cached.systemTime(hardware: hardware, interface: 0, receive: false, now: now)?.nanosecondsSinceUnixEpoch == expected, "one card: an unknown interface is that card")
        #expect(cached.systemTime(hardware: hardware, interface: 9, receive: false, now: now) == nil, "another interface's clock is not this card's")
        #expect(cached.systemTime(hardware: 0, interface: 7, receive: false, now: now) == nil)
        let later = UTCInstant(nanosecondsSinceUnixEpoch: now.nanosecondsSinceUnixEpoch + 4_000_000_000)
        #expect(cached.systemTime(hardware: hardware, interface: 7, receive: false, now: later) == nil, "a clock not read for 4 s is not believed")

        let status = clocks.status(now: now)
        #expect(status.count == 2)
        #expect(status[0].name == "card0" && status[0].hardware && status[0].reason == nil && status[0].clock == "/dev/ptp0" && status[0].receiveFilter == "all")
        #expect(abs((status[0].rateErrorPPM ?? 0) + 10) < 0.01, "rate error \(status[0].rateErrorPPM ?? 0) ppm")
        #expect(status[1].name == "lo" && !status[1].hardware && status[1].reason == "the driver reports no PTP hardware clock (PHC)")
    }

    @Test("A packet's card time is used only from its own card, and only where it agrees with the kernel's software time")
    func receiveTimeChecks() {
        let clocks = Self.clocks()
        var cached = CachedHardwareClocks(clocks)
        let now = UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_000_000_000)
        // The card runs exactly 37 s behind the system clock.
        clocks.publish([HardwareClockMapping(hardwareReference: 1_799_999_963_000_000_000, systemReference: now.nanosecondsSinceUnixEpoch, rate: 1, validUntil: now.nanosecondsSinceUnixEpoch + 3_000_000_000), nil], resets: [0, 0])
        cached.refresh()
        let control = ControlMessages()
        let software: Int64 = 1_800_000_000_000_050_000
        control.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING, Self.timestamping(software: software, hardware: 1_799_999_963_000_040_000))
        var info = tock_scm_ts_pktinfo()
        info.if_index = 7
        info.pkt_length = 90
        control.add(level: SOL_SOCKET, type: tock_SCM_TIMESTAMPING_PKTINFO, info)
        let received = ReceivedControl(reading: &control.message)
        #expect(CachedHardwareClocks.interface(of: received) == 7)
        // 10 µs before the software time (the stack's delay), plus 752 ns for the frame at 1 Gb/s.
        #expect(cached.receiveTime(received, software: UTCInstant(nanosecondsSinceUnixEpoch: software), now: now)?.nanosecondsSinceUnixEpoch == 1_800_000_000_000_040_752)
        // A software time 2 ms away: a clock stepped since the card's clock was read.
        #expect(cached.receiveTime(received, software: UTCInstant(nanosecondsSinceUnixEpoch: software + 2_000_000), now: now) == nil)
    }

    @Test("With two cards, a timestamp whose card is unknown is converted with neither")
    func twoCards() {
        let plan = HardwareTimestampingPlan(hardwareClock: 0, receiveFilter: .all, linkSpeedMbps: nil)
        let clocks = HardwareClocks(interfaces: [
            .init(name: "card0", index: 7, outcome: .success(plan), device: nil, previous: nil),
            .init(name: "card1", index: 8, outcome: .success(plan), device: nil, previous: nil),
        ], requested: ["card0", "card1"])
        var cached = CachedHardwareClocks(clocks)
        let now = UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_000_000_000)
        // Only card0's clock has been read so far.
        clocks.publish([HardwareClockMapping(hardwareReference: 0, systemReference: 37, rate: 1, validUntil: now.nanosecondsSinceUnixEpoch + 1_000_000_000), nil], resets: [0, 0])
        cached.refresh()
        #expect(cached.systemTime(hardware: 1_000, interface: 7, receive: false, now: now)?.nanosecondsSinceUnixEpoch == 1_037)
        #expect(cached.systemTime(hardware: 1_000, interface: 8, receive: false, now: now) == nil, "card1 not read yet")
        #expect(cached.systemTime(hardware: 1_000, interface: 0, receive: false, now: now) == nil, "unknown card: it may be card1")
    }

    @Test("A software transmit timestamp stands in until the card's arrives, which then replaces it")
    func softwareThenHardware() {
        let pending = PendingTransmits()
        pending.add(id: 9, slot: 12, receive: 1001, sentAfter: 5_000)
        #expect(pending.outstanding == 1)
        #expect(pending.take(id: 9, time: 6_000, keep: true)! == (slot: 12, receive: 1001), "the software one is used")
        #expect(pending.outstanding == 1, "and the card's is still awaited")
        #expect(pending.take(id: 9, time: 5_900)! == (slot: 12, receive: 1001), "the card's replaces it")
        #expect(pending.outstanding == 0)
        #expect(pending.take(id: 9, time: 5_950) == nil, "nothing after the final one")
    }

    @Test("On this machine's interfaces (no PTP clock) tockd keeps software timestamps, says why, and serves")
    func fallback() async throws {
        #expect(InterfaceTimestamping.index(of: "lo") != nil)
        #expect(InterfaceTimestamping.support(of: "lo").flatMap(\.plan) == .failure(.noHardwareClock), "loopback has no PTP hardware clock")
        #expect(InterfaceTimestamping.support(of: "nosuch0") == .failure(.noSuchInterface))
        #expect(InterfaceTimestamping.support(of: "a-name-far-too-long-for-linux") == .failure(.noSuchInterface))

        var configuration = TockServerConfiguration.loopback(daytime: false, time: false)
        configuration.hardwareTimestamping = ["lo", "nosuch0"]
        try await withServer(configuration) { server in
            let clocks = try #require(server.hardwareClocks)
            #expect(!clocks.isActive)
            let status = server.status()
            let interfaces = try #require(status.hardwareTimestamping)
            #expect(interfaces.map(\.name) == ["lo", "nosuch0"])
            #expect(interfaces.map(\.hardware) == [false, false])
            #expect(interfaces.map(\.reason) == ["the driver reports no PTP hardware clock (PHC)", "no such interface"])
            #expect(status.services.first { $0.name == "ntp" }?.hardwareReceiveTimestamps == nil, "no hardware counters while no card is on")
            for address in server.addresses(.ntp) {
                let reply = await blocking { udpExchange(ntpRequest(version: 4, mode: 3), to: address, timeoutMilliseconds: 2000) }
                #expect(reply?.count == 48, "\(address): served with software timestamps")
            }
        }

        // `*` takes only interfaces that can: none here.
        var every = TockServerConfiguration.loopback(daytime: false, time: false)
        every.hardwareTimestamping = ["*"]
        try await withServer(every) { server in
            #expect(server.hardwareClocks?.interfaces.isEmpty == true)
            #expect(server.status().hardwareTimestamping == [])
        }
    }
}
