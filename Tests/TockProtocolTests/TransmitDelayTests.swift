import Testing
import TockProtocol

/// The send-delay estimate that corrects basic replies' T3 (`NTPTransmitDelay`).
@Suite("NTP transmit delay estimate")
struct TransmitDelayTests {
    @Test("No correction until three samples are in: the first sends run cold")
    func warmUp() {
        var delay = NTPTransmitDelay()
        #expect(delay.nanoseconds == 0)
        delay.record(40_000)
        delay.record(2_500)
        #expect(delay.nanoseconds == 0)
        delay.record(2_600)
        #expect(delay.nanoseconds == 2_500)
    }

    @Test("The smallest of the last nine: a delayed send never moves T3 past the fastest departure")
    func smallestOfWindow() {
        var delay = NTPTransmitDelay()
        for d: Int64 in [2_000, 2_100, 1_900, 2_050, 1_950] { delay.record(d) }
        #expect(delay.nanoseconds == 1_900)
        delay.record(400_000)  // preempted between the reading and the send
        #expect(delay.nanoseconds == 1_900)
    }

    @Test("Old samples leave the window: the estimate follows a lasting change")
    func followsChange() {
        var delay = NTPTransmitDelay()
        for _ in 0..<9 { delay.record(2_000) }
        for _ in 0..<8 { delay.record(8_000) }
        #expect(delay.nanoseconds == 2_000, "one old sample still in the window")
        delay.record(8_000)
        #expect(delay.nanoseconds == 8_000)
    }

    @Test("Negative and over-a-millisecond delays are not believed", arguments: [Int64(-1), -1_000_000, 1_000_001, Int64.max])
    func implausible(_ value: Int64) {
        var delay = NTPTransmitDelay()
        for _ in 0..<3 { delay.record(3_000) }
        let believed = delay.record(value)
        #expect(!believed)
        #expect(delay.nanoseconds == 3_000)
    }
}
