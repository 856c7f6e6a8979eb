import Glibc
import Testing
import TockClient
import TockProtocol
import TockServer
import TockSockets

/// The clock state changes while the server runs: injected through `TockServer.clockState`
/// with `ClockSource.external`, as a kernel discipline would change it.
@Suite("Honest time while running") struct ClockStateTests {
    static func synchronized(stratum: UInt8 = 3) -> ServerClockState {
        .local(stratum: stratum, now: SystemClock.now(), precisionNanoseconds: 30)
    }

    @Test("Synchronised → unsynchronised → synchronised: NTP, Daytime and Time follow within a batch")
    func switchesBothWays() async throws {
        try await withServer(.loopback(daytimeFormat: .hms, clockSource: .external)) { server in
            let ntp = server.addresses(.ntp)[0]
            let time = server.addresses(.time)[0]
            server.clockState.publish(Self.synchronized())
            let first = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 1_000_000_000).run(server: ntp) }
            #expect(first.best?.packet.stratum == 3)
            #expect(udpExchange([], to: time, timeoutMilliseconds: 500)?.count == 4)

            server.clockState.publish(.unsynchronized)
            let second = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 1_000_000_000).run(server: ntp) }
            guard case .rejected(_, .unsynchronized)? = second.lastError else {
                Issue.record("expected an unsynchronised reply, got \(String(describing: second.lastError))")
                return
            }
            #expect(udpExchange([], to: time, timeoutMilliseconds: 300) == nil)
            #expect(tcpReadAll(from: time, timeoutMilliseconds: 1000).bytes.isEmpty)

            server.clockState.publish(Self.synchronized(stratum: 4))
            let third = await blocking { NTPQuery(samples: 1, timeoutNanoseconds: 1_000_000_000).run(server: ntp) }
            #expect(third.best?.packet.stratum == 4)
            #expect(udpExchange([], to: time, timeoutMilliseconds: 500)?.count == 4)
        }
    }

    @Test("A pending leap second is announced; during it Daytime shows second 60")
    func leapSecond() async throws {
        try await withServer(.loopback(daytimeFormat: .iso8601, daytimeZone: .utc, clockSource: .external)) { server in
            var pending = Self.synchronized()
            pending.leap = .insertSecond
            server.clockState.publish(pending)
            let reply = udpExchange(ntpRequest(version: 4, mode: 3), to: server.addresses(.ntp)[0])
            #expect(reply.map { $0[0] >> 6 } == 1)

            var inProgress = pending
            inProgress.leapSecondInProgress = true
            server.clockState.publish(inProgress)
            // The kernel repeats 23:59:59 during the leap second; any second read as :59 then
            // is shown as :60. Outside second 59 the text is unchanged, so check the rule only
            // when the wall clock is at :59, else check that the text is a normal time.
            let text = String(decoding: udpExchange([], to: server.addresses(.daytime)[0]) ?? [], as: UTF8.self)
            let second = Int(text.dropFirst(17).prefix(2)) ?? -1
            let wallSecond = Int(SystemClock.now().secondsSinceUnixEpoch % 60)
            if wallSecond == 59 || second == 60 {
                #expect(second == 60, "\(text)")
            } else {
                #expect((0...58).contains(second), "\(text)")
            }
        }
    }
}
