import CTockShims
import Glibc
import Testing
import TockProtocol
import TockSockets

/// What the datagram engine assumes of the kernel's per-datagram transmit timestamps
/// (Documentation/networking/timestamping.rst §1.3.3), checked on the kernel the tests run on:
/// only a datagram sent with an SCM_TIMESTAMPING request is timestamped, and
/// `SOF_TIMESTAMPING_OPT_ID` numbers only those (`sk_tskey` advances in `__ip_append_data` only
/// for a datagram that asks), so a worker that counts its requests knows each report's reply.
/// If a kernel numbered every datagram, or timestamped unasked ones, interleaved replies would
/// carry another reply's transmit time: this test fails first.
@Suite("Kernel transmit timestamps per datagram")
struct TransmitTimestampTests {
    /// A UDP socket bound to `ip` on a free port, with receive timestamps and destination
    /// addresses on (as a listener's), and transmit timestamp reporting enabled.
    static func serverSocket(_ ip: String) throws -> (Int32, SocketEndpoint) {
        let address = try #require(SocketEndpoint(ip: ip, port: 0))
        let fd = try Sockets.open(family: address.family, type: Sockets.datagram)
        try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPNS, value: 1, "SO_TIMESTAMPNS")
        if address.isIPv6 {
            try Sockets.setOption(fd, level: Int32(IPPROTO_IPV6), name: tock_IPV6_RECVPKTINFO, value: 1, "IPV6_RECVPKTINFO")
        } else {
            try Sockets.setOption(fd, level: Int32(IPPROTO_IP), name: tock_IP_PKTINFO, value: 1, "IP_PKTINFO")
        }
        try Sockets.bind(fd, to: address)
        #expect(TransmitTimestampQueue.enable(on: fd))
        return (fd, try Sockets.localAddress(fd))
    }

    /// Replies to every datagram waiting on `fd` (`count` of them, already queued on loopback),
    /// asking for a transmit timestamp where `requests` says so, from the request's destination
    /// address (so the request shares the control space with IP_PKTINFO/IPV6_PKTINFO).
    static func reply(on fd: Int32, isIPv6: Bool, requests: [Bool], batch: inout DatagramBatch) -> Int {
        let received = batch.receive(from: fd, flags: tock_MSG_WAITFORONE)
        guard received == requests.count else { return -1 }
        batch.clearQueue()
        for i in 0..<received {
            let bytes = batch.bytes(at: i)
            batch.sendBuffer(i).copyMemory(from: bytes)
            batch.queueReply(length: bytes.count, to: i, from: batch.control(at: i).destination, answerFromDestination: true, isIPv6: isIPv6, requestTransmitTimestamp: requests[i])
        }
        return batch.send(on: fd, from: 0, count: received)
    }

    /// The datagram numbers of the reports on `fd`'s error queue, waiting up to a second for
    /// `expected` of them and then a little more for any extra.
    static func reports(_ fd: Int32, expected: Int, sentAfter: UTCInstant) -> [UInt32] {
        var queue = TransmitTimestampQueue(capacity: 16)
        var ids: [UInt32] = []
        let deadline = SystemClock.monotonicNanoseconds() + 1_000_000_000
        var extraWait = 0
        while SystemClock.monotonicNanoseconds() < deadline, extraWait < 5 {
            _ = queue.drain(fd) { id, time in
                ids.append(id)
                let late = time.nanoseconds(since: sentAfter)
                #expect(late >= 0 && late < 1_000_000_000, "transmit timestamp \(late) ns after the send began")
            }
            if ids.count >= expected { extraWait += 1 }
            usleep(2_000)
        }
        return ids
    }

    @Test("Only datagrams that ask are timestamped, and OPT_ID numbers only those", arguments: ["127.0.0.1", "::1"])
    func perDatagramRequests(ip: String) throws {
        let (fd, address) = try Self.serverSocket(ip)
        defer { close(fd) }
        let probe = UDPProbe(target: address)
        var batch = DatagramBatch(capacity: 8, receiveBufferSize: 256, sendBufferSize: 64)

        // Six replies, three of them asking: the kernel numbers those 0, 1, 2.
        let requests = [false, true, false, false, true, true]
        for i in 0..<requests.count { #expect(probe.send([UInt8(i), 1, 2, 3])) }
        let before = SystemClock.now()
        #expect(Self.reply(on: fd, isIPv6: address.isIPv6, requests: requests, batch: &batch) == requests.count)
        for i in 0..<requests.count {
            #expect(probe.receive(timeoutMilliseconds: 1000)?.first == UInt8(i), "\(ip): reply \(i) arrived")
        }
        #expect(Self.reports(fd, expected: 3, sentAfter: before) == [0, 1, 2], "\(ip): numbered only the datagrams that asked")

        // Replies that do not ask add no report and take no number.
        for i in 0..<2 { #expect(probe.send([UInt8(i)])) }
        #expect(Self.reply(on: fd, isIPv6: address.isIPv6, requests: [false, false], batch: &batch) == 2)
        #expect(Self.reports(fd, expected: 0, sentAfter: before).isEmpty, "\(ip): an unasked datagram was timestamped")
        #expect(probe.send([9]))
        #expect(Self.reply(on: fd, isIPv6: address.isIPv6, requests: [true], batch: &batch) == 1)
        #expect(Self.reports(fd, expected: 1, sentAfter: before) == [3], "\(ip): the count went on from 3")

        // Enabling again restarts the count at 0 (how a worker resynchronises after a failed send).
        #expect(TransmitTimestampQueue.enable(on: fd))
        #expect(probe.send([10]))
        #expect(Self.reply(on: fd, isIPv6: address.isIPv6, requests: [true], batch: &batch) == 1)
        #expect(Self.reports(fd, expected: 1, sentAfter: before) == [0], "\(ip): the count restarted")
    }

    @Test("With transmit timestamps on, the receive time comes once per datagram, in SCM_TIMESTAMPING", arguments: ["127.0.0.1", "::1"])
    func receiveTimeOncePerDatagram(_ ip: String) throws {
        let (fd, address) = try Self.serverSocket(ip)
        defer { close(fd) }
        let probe = UDPProbe(target: address)
        var timestampMessages = 0
        var receiveTime: UTCInstant?
        var before = SystemClock.now()
        // Linux turns receive timestamping on for the whole stack through deferred work the
        // first socket to ask schedules: a datagram sent right after may arrive unstamped. So
        // datagrams are sent until one is stamped (for up to a second), and that one is counted.
        let deadline = SystemClock.monotonicNanoseconds() + 1_000_000_000
        repeat {
            timestampMessages = 0
            before = SystemClock.now()
            #expect(probe.send([1, 2, 3]))
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pfd, 1, 1000) == 1)
            var bytes = [UInt8](repeating: 0, count: 64)
            var control = [UInt8](repeating: 0, count: 512)
            bytes.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { space in
                    var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    withUnsafeMutablePointer(to: &iov) { iovPointer in
                        var message = msghdr()
                        message.msg_iov = iovPointer
                        message.msg_iovlen = 1
                        message.msg_control = space.baseAddress
                        message.msg_controllen = space.count
                        guard recvmsg(fd, &message, 0) == 3 else { return }
                        var cmsg = tock_cmsg_firsthdr(&message)
                        while let c = cmsg {
                            if c.pointee.cmsg_level == SOL_SOCKET, c.pointee.cmsg_type == tock_SCM_TIMESTAMPNS || c.pointee.cmsg_type == tock_SCM_TIMESTAMPING {
                                timestampMessages += 1
                            }
                            cmsg = tock_cmsg_nxthdr(&message, c)
                        }
                        receiveTime = ReceivedControl(reading: &message).receiveTime
                    }
                }
            }
        } while timestampMessages == 0 && SystemClock.monotonicNanoseconds() < deadline
        #expect(timestampMessages == 1, "\(ip): \(timestampMessages) timestamp control messages")
        let received = try #require(receiveTime, "\(ip): no receive time")
        let late = received.nanoseconds(since: before)
        #expect(late >= -1_000 && late < 1_000_000_000, "\(ip): received \(late) ns after the send began")
    }
}
