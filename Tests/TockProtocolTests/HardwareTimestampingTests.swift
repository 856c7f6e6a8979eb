import Testing
import TockProtocol

/// The decisions behind `--hw-timestamping`: which interfaces can be used and how, how a PTP
/// hardware clock is fitted to the system clock, and where a receive timestamp is moved.
@Suite("Hardware timestamping decisions")
struct HardwareTimestampingTests {
    static func support(
        clock: Int? = 0, raw: Bool = true, receive: Bool = true, transmit: Bool = true, transmitOn: Bool = true,
        all: Bool = true, ntp: Bool = false, speed: Int? = 1000
    ) -> HardwareTimestampingSupport {
        HardwareTimestampingSupport(
            hardwareClock: clock, rawHardware: raw, receiveHardware: receive, transmitHardware: transmit,
            transmitOn: transmitOn, filterAll: all, filterNTP: ntp, linkSpeedMbps: speed
        )
    }

    @Test("An interface is used only with a hardware clock, raw timestamps and transmit timestamps")
    func plans() {
        #expect(Self.support(clock: nil).plan == .failure(.noHardwareClock), "loopback, veth: no PHC")
        #expect(Self.support(clock: -1).plan == .failure(.noHardwareClock))
        #expect(Self.support(raw: false).plan == .failure(.noRawTimestamps))
        #expect(Self.support(transmit: false).plan == .failure(.noTransmitTimestamps))
        #expect(Self.support(transmitOn: false).plan == .failure(.noTransmitTimestamps))
        #expect(Self.support(clock: 3).plan == .success(HardwareTimestampingPlan(hardwareClock: 3, receiveFilter: .all, linkSpeedMbps: 1000)))
        // The NTP filter where the card has no filter for every packet; none: transmit only.
        #expect(Self.support(all: false, ntp: true).plan == .success(HardwareTimestampingPlan(hardwareClock: 0, receiveFilter: .ntp, linkSpeedMbps: 1000)))
        #expect(Self.support(all: false, ntp: false, speed: nil).plan == .success(HardwareTimestampingPlan(hardwareClock: 0, receiveFilter: .none, linkSpeedMbps: nil)))
        #expect(Self.support(receive: false).plan == .success(HardwareTimestampingPlan(hardwareClock: 0, receiveFilter: .none, linkSpeedMbps: 1000)))
        // Each reason reads as a sentence an operator can act on.
        #expect("\(HardwareTimestampingUnavailable.noHardwareClock)" == "the driver reports no PTP hardware clock (PHC)")
        #expect("\(HardwareTimestampingUnavailable.permissionDenied)".contains("CAP_NET_ADMIN"))
        #expect("\(HardwareTimestampingUnavailable.noSuchInterface)" == "no such interface")
    }

    @Test("A receive timestamp moves to the frame's end by the frame's time on the wire")
    func receiveCorrection() {
        // A 90-byte NTP frame (14 Ethernet + 20 IP + 8 UDP + 48) and its 4-byte FCS: 752 bits.
        #expect(HardwareClockMapping.receiveCorrection(frameLength: 90, linkSpeedMbps: 1000) == 752)
        #expect(HardwareClockMapping.receiveCorrection(frameLength: 90, linkSpeedMbps: 10_000) == 75)
        #expect(HardwareClockMapping.receiveCorrection(frameLength: 90, linkSpeedMbps: 100) == 7520)
        #expect(HardwareClockMapping.receiveCorrection(frameLength: 90, linkSpeedMbps: 0) == 0, "speed unknown: no correction")
        #expect(HardwareClockMapping.receiveCorrection(frameLength: 0, linkSpeedMbps: 1000) == 0, "length unknown: no correction")
    }

    /// A simulated card clock: `offset` ns behind the system clock at system time `start`,
    /// running `ppm` fast; a burst of five readings, each taking `delays[i]` ns, the hardware
    /// read a fraction `where[i]` into the reading.
    struct SimulatedClock {
        var start: Int64 = 1_800_000_000_000_000_000
        var offset: Int64 = -37_000_000_123
        var ppm: Double = 40
        func hardware(atSystem system: Int64) -> Int64 {
            let elapsed = Double(system - start)
            return start + offset + Int64((elapsed * (1 + ppm / 1e6)).rounded())
        }
        func burst(at system: Int64, delays: [Int64] = [2_400, 900, 350, 1_800, 600], where position: [Double] = [0.1, 0.9, 0.5, 0.3, 0.7]) -> [HardwareClockReading] {
            var t = system
            return zip(delays, position).map { delay, p in
                defer { t += delay + 1_000 }
                let read = t + Int64(Double(delay) * p)
                return HardwareClockReading(systemBefore: t, hardware: hardware(atSystem: read), systemAfter: t + delay)
            }
        }
    }

    @Test("The tracker fits offset and rate, and converts within a few nanoseconds of the truth")
    func trackerFits() throws {
        let clock = SimulatedClock()
        var tracker = HardwareClockTracker()
        #expect(tracker.add(clock.burst(at: clock.start)) == nil, "one reading cannot tell the rate")
        var system = clock.start
        for _ in 1..<HardwareClockTracker.window {
            system += HardwareClockTracker.intervalNanoseconds
            tracker.add(clock.burst(at: system))
        }
        let mapping = try #require(tracker.mapping)
        #expect(abs(mapping.rate - 1 / (1 + 40e-6)) < 1e-9, "rate \(mapping.rate)")
        // Timestamps from half a second to two seconds after the last burst, as packets take them.
        for ahead: Int64 in [500_000_000, 1_000_000_000, 2_000_000_000] {
            let truth = system + ahead
            let converted = mapping.systemTime(hardware: clock.hardware(atSystem: truth))
            #expect(abs(converted - truth) < 20, "\(ahead) ns ahead: off by \(converted - truth) ns")
        }
        #expect(mapping.validUntil > system + 3 * HardwareClockTracker.intervalNanoseconds, "valid for three missed bursts")
        #expect(mapping.validUntil < system + 4 * HardwareClockTracker.intervalNanoseconds, "and no longer")
    }

    @Test("Of each burst the fastest reading counts: a slow reading's error stays out")
    func fastestReadingCounts() throws {
        let clock = SimulatedClock(ppm: 0)
        var tracker = HardwareClockTracker()
        var system = clock.start
        for _ in 0..<4 {
            // The fast reading (200 ns) is exact in its middle; the slow ones (50 µs) read the
            // hardware clock at their very start, 25 µs off their midpoint.
            tracker.add(clock.burst(at: system, delays: [50_000, 200, 50_000], where: [0, 0.5, 0]))
            system += HardwareClockTracker.intervalNanoseconds
        }
        let mapping = try #require(tracker.mapping)
        let converted = mapping.systemTime(hardware: clock.hardware(atSystem: system))
        #expect(abs(converted - system) < 5, "off by \(converted - system) ns")
    }

    @Test("A step of either clock starts the fit again")
    func stepResets() throws {
        var clock = SimulatedClock()
        var tracker = HardwareClockTracker()
        var system = clock.start
        for _ in 0..<5 {
            tracker.add(clock.burst(at: system))
            system += HardwareClockTracker.intervalNanoseconds
        }
        #expect(tracker.mapping != nil && tracker.resets == 0)
        clock.offset += 5_000_000  // ptp4l or an operator stepped the card's clock by 5 ms
        #expect(tracker.add(clock.burst(at: system)) == nil, "no mapping from the one reading after the step")
        #expect(tracker.resets == 1)
        system += HardwareClockTracker.intervalNanoseconds
        let refit = tracker.add(clock.burst(at: system))
        let mapping = try #require(refit)
        let converted = mapping.systemTime(hardware: clock.hardware(atSystem: system + 300_000_000))
        #expect(abs(converted - (system + 300_000_000)) < 50, "the new fit follows the stepped clock: off by \(converted - system - 300_000_000) ns")
        // A slew is not a step: 500 ppm for a second moves the clock by 0.5 ms, under the threshold.
        clock.offset += 500_000
        system += HardwareClockTracker.intervalNanoseconds
        tracker.add(clock.burst(at: system))
        #expect(tracker.resets == 1)
    }

    @Test("A burst with no usable reading leaves the mapping as it was")
    func emptyBurst() {
        let clock = SimulatedClock()
        var tracker = HardwareClockTracker()
        tracker.add(clock.burst(at: clock.start))
        tracker.add(clock.burst(at: clock.start + HardwareClockTracker.intervalNanoseconds))
        let before = tracker.mapping
        #expect(tracker.add([]) == before)
        #expect(tracker.add([HardwareClockReading(systemBefore: 10, hardware: 5, systemAfter: 9)]) == before, "a reading that ends before it starts")
    }
}
