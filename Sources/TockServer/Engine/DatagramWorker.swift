import Atomics
import CTockShims
import Glibc
import TockProtocol
import TockSockets

/// One thread's receive–decide–send loop on one UDP socket.
///
/// State it owns, allocated once at start and reused for every batch: `batchSize` receive
/// buffers, reply buffers, source addresses, control-message space, iovecs and message headers
/// for recvmmsg and sendmmsg, and the responder. Nothing on the loop allocates, locks, logs or
/// formats.
///
/// Timestamps (what T2 and T3 mean):
/// - T2 (receive) is the kernel's software receive timestamp (`SO_TIMESTAMPNS`): taken when
///   the network stack received the packet, before it waited in the socket buffer, so a
///   backlog does not make T2 late. If the kernel supplies none, the time recvmmsg returned.
/// - T3 (transmit) is read immediately before each sendmmsg call, which sends at most
///   `sendChunk` replies, so no reply leaves long after its transmit time was taken.
final class DatagramWorker<Responder: DatagramResponder>: @unchecked Sendable {
    static var batchSize: Int { 64 }
    /// Datagrams larger than this are counted as oversized and dropped; NTP requests with
    /// extension fields stay well below it.
    static var receiveBufferSize: Int { 2048 }
    static var controlSize: Int { 256 }
    static var replyControlSize: Int { 64 }
    /// Replies sent per sendmmsg call, each chunk stamped with a fresh T3 just before it.
    static var sendChunk: Int { 4 }

    let fd: Int32
    let isIPv6: Bool
    /// Whether to answer from the request's destination address (the socket is bound to a
    /// wildcard address).
    let answerFromDestination: Bool
    var responder: Responder
    let counters: DatagramCounters
    let stopping: ManagedAtomic<Bool>

    init(fd: Int32, isIPv6: Bool, answerFromDestination: Bool, responder: Responder, counters: DatagramCounters, stopping: ManagedAtomic<Bool>) {
        self.fd = fd
        self.isIPv6 = isIPv6
        self.answerFromDestination = answerFromDestination
        self.responder = responder
        self.counters = counters
        self.stopping = stopping
    }

    /// Runs until `stopping` is set; the socket's receive timeout bounds how long that takes.
    func run() {
        let batch = Self.batchSize
        let replyStride = (Responder.replyCapacity + 63) & ~63
        let receiveBuffers = UnsafeMutableRawPointer.allocate(byteCount: batch * Self.receiveBufferSize, alignment: 64)
        let replyBuffers = UnsafeMutableRawPointer.allocate(byteCount: batch * replyStride, alignment: 64)
        let names = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: batch)
        let control = UnsafeMutableRawPointer.allocate(byteCount: batch * Self.controlSize, alignment: 16)
        let replyControl = UnsafeMutableRawPointer.allocate(byteCount: batch * Self.replyControlSize, alignment: 16)
        let receiveIOV = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        let sendIOV = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        let receiveHeaders = UnsafeMutablePointer<tock_mmsghdr>.allocate(capacity: batch)
        let sendHeaders = UnsafeMutablePointer<tock_mmsghdr>.allocate(capacity: batch)
        let totals = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: DatagramCounters.fixedSlots + Responder.dropReasons.count)
        totals.initialize(repeating: 0)
        defer {
            receiveBuffers.deallocate()
            replyBuffers.deallocate()
            names.deallocate()
            control.deallocate()
            replyControl.deallocate()
            receiveIOV.deallocate()
            sendIOV.deallocate()
            receiveHeaders.deallocate()
            sendHeaders.deallocate()
            totals.deallocate()
        }
        for i in 0..<batch {
            receiveIOV[i] = iovec(iov_base: receiveBuffers + i * Self.receiveBufferSize, iov_len: Self.receiveBufferSize)
            receiveHeaders[i] = tock_mmsghdr()
            receiveHeaders[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            receiveHeaders[i].msg_hdr.msg_iov = receiveIOV + i
            receiveHeaders[i].msg_hdr.msg_iovlen = 1
            receiveHeaders[i].msg_hdr.msg_control = control + i * Self.controlSize
            sendHeaders[i] = tock_mmsghdr()
        }
        let truncated = Int32(tock_MSG_TRUNC)
        var previouslyReceived = batch

        while !stopping.load(ordering: .relaxed) {
            for i in 0..<previouslyReceived {
                receiveHeaders[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                receiveHeaders[i].msg_hdr.msg_controllen = Self.controlSize
                receiveHeaders[i].msg_hdr.msg_flags = 0
            }
            let received = Int(tock_recvmmsg(fd, receiveHeaders, UInt32(batch), tock_MSG_WAITFORONE))
            if received <= 0 {
                previouslyReceived = 0
                let e = errno
                if received < 0, e != EAGAIN, e != EWOULDBLOCK, e != EINTR {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED); survive them.
                    totals[DatagramCounters.Slot.receiveErrors.rawValue] &+= 1
                    counters.publish(totals)
                }
                continue
            }
            previouslyReceived = received
            let batchTime = SystemClock.now()
            responder.beginBatch(now: batchTime)
            var replies = 0
            for i in 0..<received {
                let header = receiveHeaders + i
                let length = Int(header.pointee.msg_len)
                if header.pointee.msg_hdr.msg_flags & truncated != 0 {
                    totals[DatagramCounters.Slot.oversized.rawValue] &+= 1
                    continue
                }
                var receiveTime = batchTime
                var destination = ControlInfo()
                Self.readControl(&header.pointee.msg_hdr, receiveTime: &receiveTime, destination: &destination)
                let reply = UnsafeMutableRawBufferPointer(start: replyBuffers + replies * replyStride, count: Responder.replyCapacity)
                let verdict = responder.respond(
                    to: UnsafeRawBufferPointer(start: receiveIOV[i].iov_base, count: length),
                    from: DatagramSource(address: names + i),
                    receiveTime: receiveTime,
                    reply: reply
                )
                switch verdict {
                case .drop(let reason):
                    totals[DatagramCounters.fixedSlots + reason] &+= 1
                case .reply(let replyLength), .kiss(let replyLength):
                    if case .kiss = verdict { totals[DatagramCounters.Slot.kissesSent.rawValue] &+= 1 }
                    sendIOV[replies] = iovec(iov_base: reply.baseAddress, iov_len: replyLength)
                    let out = sendHeaders + replies
                    out.pointee.msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
                    out.pointee.msg_hdr.msg_namelen = header.pointee.msg_hdr.msg_namelen
                    out.pointee.msg_hdr.msg_iov = sendIOV + replies
                    out.pointee.msg_hdr.msg_iovlen = 1
                    out.pointee.msg_hdr.msg_flags = 0
                    if answerFromDestination, destination.present {
                        let space = Self.writeSourceControl(destination, into: replyControl + replies * Self.replyControlSize, isIPv6: isIPv6)
                        out.pointee.msg_hdr.msg_control = replyControl + replies * Self.replyControlSize
                        out.pointee.msg_hdr.msg_controllen = space
                    } else {
                        out.pointee.msg_hdr.msg_control = nil
                        out.pointee.msg_hdr.msg_controllen = 0
                    }
                    replies += 1
                }
            }
            totals[DatagramCounters.Slot.received.rawValue] &+= UInt64(received)
            var sent = 0
            var stamped = 0
            while sent < replies {
                // T3 is read again for every chunk: a reply waits for at most one chunk's
                // sends after its transmit time is taken, not the whole batch's.
                if stamped == sent {
                    stamped = min(replies, sent + Self.sendChunk)
                    let transmitTime = SystemClock.now()
                    for j in sent..<stamped {
                        responder.stampTransmitTime(transmitTime, reply: UnsafeMutableRawBufferPointer(start: sendIOV[j].iov_base, count: sendIOV[j].iov_len))
                    }
                }
                let rc = Int(tock_sendmmsg(fd, sendHeaders + sent, UInt32(stamped - sent), 0))
                if rc > 0 {
                    sent += rc
                    totals[DatagramCounters.Slot.replied.rawValue] &+= UInt64(rc)
                } else {
                    if rc < 0, errno == EINTR { continue }
                    // The first remaining reply failed (ENOBUFS, EPERM from a firewall, a
                    // vanished address): count it and go on with the rest.
                    totals[DatagramCounters.Slot.sendErrors.rawValue] &+= 1
                    sent += 1
                }
            }
            counters.publish(totals)
        }
        counters.publish(totals)
    }

    /// The request's destination address and interface, from IP_PKTINFO / IPV6_PKTINFO.
    struct ControlInfo {
        var present = false
        var ipv4 = in_pktinfo()
        var ipv6 = tock_in6_pktinfo()
    }

    @inline(__always)
    static func readControl(_ msg: inout msghdr, receiveTime: inout UTCInstant, destination: inout ControlInfo) {
        var cmsg = tock_cmsg_firsthdr(&msg)
        while let c = cmsg {
            let level = c.pointee.cmsg_level
            let type = c.pointee.cmsg_type
            let data = UnsafeRawPointer(tock_cmsg_data(c)!)
            if level == SOL_SOCKET, type == tock_SCM_TIMESTAMPNS {
                let ts = data.loadUnaligned(as: timespec.self)
                if ts.tv_sec != 0 {
                    receiveTime = UTCInstant(secondsSinceUnixEpoch: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
                }
            } else if level == Int32(IPPROTO_IP), type == tock_IP_PKTINFO {
                destination.ipv4 = data.loadUnaligned(as: in_pktinfo.self)
                destination.present = true
            } else if level == Int32(IPPROTO_IPV6), type == tock_IPV6_PKTINFO {
                destination.ipv6 = data.loadUnaligned(as: tock_in6_pktinfo.self)
                destination.present = true
            }
            cmsg = tock_cmsg_nxthdr(&msg, c)
        }
    }

    /// Writes the control message that makes the reply leave from the address the request was
    /// sent to, so a client talking to one of several addresses gets its answer from that one.
    @inline(__always)
    static func writeSourceControl(_ info: ControlInfo, into space: UnsafeMutableRawPointer, isIPv6: Bool) -> Int {
        let header = space.assumingMemoryBound(to: cmsghdr.self)
        if isIPv6 {
            header.pointee.cmsg_level = Int32(IPPROTO_IPV6)
            header.pointee.cmsg_type = tock_IPV6_PKTINFO
            header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<tock_in6_pktinfo>.size)
            var pkt = tock_in6_pktinfo()
            pkt.ipi6_addr = info.ipv6.ipi6_addr
            pkt.ipi6_ifindex = info.ipv6.ipi6_ifindex
            UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: pkt, as: tock_in6_pktinfo.self)
            return tock_cmsg_space(MemoryLayout<tock_in6_pktinfo>.size)
        } else {
            header.pointee.cmsg_level = Int32(IPPROTO_IP)
            header.pointee.cmsg_type = tock_IP_PKTINFO
            header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<in_pktinfo>.size)
            var pkt = in_pktinfo()
            pkt.ipi_spec_dst = info.ipv4.ipi_addr
            UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: pkt, as: in_pktinfo.self)
            return tock_cmsg_space(MemoryLayout<in_pktinfo>.size)
        }
    }
}
