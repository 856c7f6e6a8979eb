import Testing
import TockProtocol

@testable import TockServer

/// The worker's sampling of basic replies for the send delay that corrects their T3
/// (`TransmitDelaySampler`), driven as the worker drives it, without sockets.
@Suite("Send-delay sampler")
struct TransmitDelaySamplerTests {
    typealias Sampler = TransmitDelaySampler

    static func at(_ nanoseconds: Int64) -> UTCInstant { UTCInstant(nanosecondsSinceUnixEpoch: 1_800_000_000_000_000_000 + nanoseconds) }

    /// One batch: `replies` basic replies offered for sampling; the index of the one picked.
    static func batch(_ sampler: inout Sampler, replies: Int) -> Int? {
        sampler.slot = -1
        var picked: Int?
        for i in 0..<replies where sampler.due() {
            sampler.slot = i
            picked = i
        }
        return picked
    }

    @Test("The first basic reply is sampled, then every 64th; one per batch, a sample owed by a large batch goes to the next")
    func cadence() {
        var sampler = Sampler()
        #expect(Self.batch(&sampler, replies: 1) == 0)
        var picked: [Int] = []
        for n in 1...200 where Self.batch(&sampler, replies: 1) != nil { picked.append(n) }
        #expect(picked == [64, 128, 192])
        // 200 replies in one batch: one sample (the 64th since the last), and the one owed
        // for the next 64 goes to the next batch's first reply; then the count starts again.
        #expect(Self.batch(&sampler, replies: 200) == 55)
        #expect(Self.batch(&sampler, replies: 1) == 0)
        #expect(Self.batch(&sampler, replies: 63) == nil)
        #expect(Self.batch(&sampler, replies: 1) == 0)
    }

    @Test("A sample's delay counts once it is the awaited datagram; the correction starts after three, per place in the chunk")
    func samplesAndCorrection() {
        var sampler = Sampler()
        #expect(sampler.correction(position: 0) == 0)
        // Three samples at place 0 (2.0, 2.2, 2.1 µs) and three at place 2 (5, 6, 7 µs).
        var id: UInt32 = 0
        for (position, delay) in [(0, Int64(2_000)), (0, 2_200), (0, 2_100), (2, 5_000), (2, 6_000), (2, 7_000)] {
            sampler.sent(id: id, readAt: Self.at(0), position: position)
            #expect(sampler.take(id: id &+ 1, time: Self.at(delay)) == nil, "another datagram's timestamp")
            #expect(sampler.take(id: id, time: Self.at(delay)) == delay)
            #expect(sampler.take(id: id, time: Self.at(delay)) == nil, "taken once")
            id &+= 1
        }
        #expect(sampler.correction(position: 0) == 2_000)
        #expect(sampler.correction(position: 1) == 2_000, "no estimate of its own: the earlier place's")
        #expect(sampler.correction(position: 2) == 5_000)
        #expect(sampler.correction(position: 3) == 5_000, "a later place never leaves sooner")
        #expect(sampler.correction(position: 99) == 5_000)
    }

    @Test("A forgotten or abandoned sample's report is not believed; neither is an implausible delay")
    func forgottenAndImplausible() {
        var sampler = Sampler()
        sampler.sent(id: 7, readAt: Self.at(0), position: 0)
        sampler.forget()
        #expect(sampler.take(id: 7, time: Self.at(2_000)) == nil)
        sampler.sent(id: 8, readAt: Self.at(0), position: 0)
        #expect(sampler.take(id: 8, time: Self.at(-5)) == nil, "before the reading")
        sampler.sent(id: 9, readAt: Self.at(0), position: 0)
        #expect(sampler.take(id: 9, time: Self.at(2_000_000)) == nil, "over a millisecond")
        // A new sample gives up the one still awaited.
        sampler.sent(id: 10, readAt: Self.at(0), position: 0)
        _ = Self.batch(&sampler, replies: 64)
        #expect(sampler.take(id: 10, time: Self.at(2_000)) == nil)
    }

    @Test("Seal times are kept per reply size: the fastest of the recent ones, after three, and only for replies of that size")
    func sealTimes() {
        var sampler = Sampler()
        #expect(sampler.sealTime(length: 232) == 0, "no estimate before any seal")
        sampler.sealed(length: 232, nanoseconds: 900)
        sampler.sealed(length: 240, nanoseconds: 700)
        #expect(sampler.sealTime(length: 232) == 0, "not before three seals")
        sampler.sealed(length: 250, nanoseconds: 800)
        #expect(sampler.sealTime(length: 232) == 700, "the fastest of three replies of one size class (128-255 bytes)")
        #expect(sampler.sealTime(length: 340) == 0, "a larger reply (more cookies) has an estimate of its own")
        sampler.sealed(length: 232, nanoseconds: 5_000_000)
        #expect(sampler.sealTime(length: 232) == 700, "a seal of over a millisecond (a preempted worker) is not believed")
        for _ in 0..<3 { sampler.sealed(length: 5000, nanoseconds: 2_000) }
        #expect(sampler.sealTime(length: 988) == 2_000, "the largest replies share the last class")
    }
}
