import CTockShims
import Glibc
import TockProtocol

/// What the kernel said about one received datagram in its control messages.
package struct ReceivedControl {
    /// The kernel's software receive timestamp (SO_TIMESTAMPNS, or ts[0] of SCM_TIMESTAMPING on
    /// a socket with transmit timestamps), if it supplied one: taken when the packet reached the
    /// network stack, before it waited in the socket buffer.
    package var receiveTime: UTCInstant?
    /// The card's raw receive timestamp (ts[2] of SCM_TIMESTAMPING), nanoseconds on its hardware
    /// clock, when hardware timestamping is on for the interface the packet came by; 0 otherwise.
    package var hardwareReceiveTime: Int64 = 0
    /// The interface that took the hardware timestamp and the frame's length at layer 2
    /// (SCM_TIMESTAMPING_PKTINFO); 0 when the kernel did not say.
    package var timestampInterface: UInt32 = 0
    package var frameLength: UInt32 = 0
    /// The request's destination address and interface (IP_PKTINFO / IPV6_PKTINFO).
    package var destination = PacketDestination()

    /// Nothing known yet.
    package init() {}

    /// Walks the control messages of `message` (the one control-message walk in tock: server
    /// workers, the load generator and the query client all read timestamps through it).
    @inline(__always)
    package init(reading message: inout msghdr) {
        var cmsg = tock_cmsg_firsthdr(&message)
        while let c = cmsg {
            let level = c.pointee.cmsg_level
            let type = c.pointee.cmsg_type
            let data = UnsafeRawPointer(tock_cmsg_data(c)!)
            if level == SOL_SOCKET, type == tock_SCM_TIMESTAMPNS || type == tock_SCM_TIMESTAMPING {
                let (software, hardware) = Self.timestamps(type: type, data)
                receiveTime = software ?? receiveTime
                hardwareReceiveTime = hardware
            } else if level == SOL_SOCKET, type == tock_SCM_TIMESTAMPING_PKTINFO {
                let info = data.loadUnaligned(as: tock_scm_ts_pktinfo.self)
                timestampInterface = info.if_index
                frameLength = info.pkt_length
            } else if level == Int32(IPPROTO_IP), type == tock_IP_PKTINFO {
                destination.ipv4 = data.loadUnaligned(as: in_pktinfo.self)
                destination.present = true
            } else if level == Int32(IPPROTO_IPV6), type == tock_IPV6_PKTINFO {
                destination.ipv6 = data.loadUnaligned(as: tock_in6_pktinfo.self)
                destination.present = true
            }
            cmsg = tock_cmsg_nxthdr(&message, c)
        }
    }
}

extension ReceivedControl {
    /// The timestamps a SOL_SOCKET control message of `type` carries, read from it once: the
    /// software one (SCM_TIMESTAMPNS's timespec, or ts[0] of SCM_TIMESTAMPING: receive time on
    /// a datagram, transmit time on an error-queue report; nil when the kernel left it zero) and
    /// the card's raw one (ts[2] of SCM_TIMESTAMPING, nanoseconds on its hardware clock; 0 when
    /// there is none).
    @inline(__always)
    static func timestamps(type: Int32, _ data: UnsafeRawPointer) -> (software: UTCInstant?, hardware: Int64) {
        guard type == tock_SCM_TIMESTAMPING else { return (instant(data.loadUnaligned(as: timespec.self)), 0) }
        let ts = data.loadUnaligned(as: tock_scm_timestamping.self).ts
        return (instant(ts.0), Int64(ts.2.tv_sec) &* 1_000_000_000 &+ Int64(ts.2.tv_nsec))
    }

    @inline(__always)
    private static func instant(_ ts: timespec) -> UTCInstant? {
        guard ts.tv_sec != 0 || ts.tv_nsec != 0 else { return nil }
        return UTCInstant(secondsSinceUnixEpoch: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
    }
}

extension ReceivedControl {
    /// The interface a packet came by (IP_PKTINFO / IPV6_PKTINFO), 0 when unknown.
    package var arrivalInterface: UInt32 {
        guard destination.present else { return 0 }
        return destination.ipv4.ipi_ifindex != 0 ? UInt32(bitPattern: destination.ipv4.ipi_ifindex) : destination.ipv6.ipi6_ifindex
    }
}

/// A request's destination address and interface, from IP_PKTINFO / IPV6_PKTINFO: where a
/// reply must come from when the socket is bound to a wildcard address.
package struct PacketDestination {
    /// Whether the kernel supplied one.
    package var present = false
    /// The IPv4 destination.
    package var ipv4 = in_pktinfo()
    /// The IPv6 destination.
    package var ipv6 = tock_in6_pktinfo()

    /// None.
    package init() {}

    /// Writes the control message that makes a reply leave from this address, so a client
    /// talking to one of several addresses gets its answer from that one. Returns its length.
    @inline(__always)
    func writeSourceControl(into space: UnsafeMutableRawPointer, isIPv6: Bool) -> Int {
        let header = space.assumingMemoryBound(to: cmsghdr.self)
        if isIPv6 {
            header.pointee.cmsg_level = Int32(IPPROTO_IPV6)
            header.pointee.cmsg_type = tock_IPV6_PKTINFO
            header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<tock_in6_pktinfo>.size)
            var pkt = tock_in6_pktinfo()
            pkt.ipi6_addr = ipv6.ipi6_addr
            pkt.ipi6_ifindex = ipv6.ipi6_ifindex
            UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: pkt, as: tock_in6_pktinfo.self)
            return tock_cmsg_space(MemoryLayout<tock_in6_pktinfo>.size)
        } else {
            header.pointee.cmsg_level = Int32(IPPROTO_IP)
            header.pointee.cmsg_type = tock_IP_PKTINFO
            header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<in_pktinfo>.size)
            var pkt = in_pktinfo()
            pkt.ipi_spec_dst = ipv4.ipi_addr
            UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: pkt, as: in_pktinfo.self)
            return tock_cmsg_space(MemoryLayout<in_pktinfo>.size)
        }
    }
}

/// Buffers, addresses, control space, iovecs and message headers for one recvmmsg batch and
/// one sendmmsg batch, allocated once and reused: the datagram engine's workers and the load
/// generator's threads each own one, so their loops neither allocate nor lock.
///
/// Receive side: `receive` fills datagrams 0..<`received`; `bytes(at:)`, `source(at:)`,
/// `control(at:)` and `isTruncated(at:)` read them. Send side: write into `sendBuffer(_:)`,
/// `queue` it (to a received datagram's source, or on a connected socket), then `send`.
package struct DatagramBatch: ~Copyable {
    /// Datagrams per recvmmsg / sendmmsg.
    package let capacity: Int
    /// Bytes per received datagram; larger ones arrive truncated (MSG_TRUNC).
    package let receiveBufferSize: Int
    /// Bytes per queued datagram.
    package let sendBufferSize: Int
    static var controlSize: Int { 256 }
    /// Room for a source address (IPV6_PKTINFO, the larger: 40 bytes) and a transmit
    /// timestamp request (24 bytes).
    static var sendControlSize: Int { 64 }

    private let receiveBuffers: UnsafeMutableRawPointer
    private let sendBuffers: UnsafeMutableRawPointer
    private let names: UnsafeMutablePointer<sockaddr_storage>
    private let control: UnsafeMutableRawPointer
    private let sendControl: UnsafeMutableRawPointer
    private let receiveIOV: UnsafeMutablePointer<iovec>
    private let sendIOV: UnsafeMutablePointer<iovec>
    private let receiveHeaders: UnsafeMutablePointer<tock_mmsghdr>
    private let sendHeaders: UnsafeMutablePointer<tock_mmsghdr>
    /// Datagrams the last `receive` returned.
    package private(set) var received = 0
    /// Datagrams queued for the next sends.
    package private(set) var queued = 0
    /// Headers whose lengths the last receive changed, to reset before the next.
    private var dirty: Int

    /// A batch of `capacity` datagrams.
    package init(capacity: Int, receiveBufferSize: Int, sendBufferSize: Int) {
        precondition(tock_cmsg_space(MemoryLayout<tock_in6_pktinfo>.size) + TransmitTimestampQueue.requestControlSpace <= Self.sendControlSize, "send control space")
        self.capacity = capacity
        self.receiveBufferSize = receiveBufferSize
        self.sendBufferSize = (sendBufferSize + 63) & ~63
        receiveBuffers = .allocate(byteCount: capacity * receiveBufferSize, alignment: 64)
        sendBuffers = .allocate(byteCount: capacity * self.sendBufferSize, alignment: 64)
        names = .allocate(capacity: capacity)
        names.initialize(repeating: sockaddr_storage(), count: capacity)
        control = .allocate(byteCount: capacity * Self.controlSize, alignment: 16)
        sendControl = .allocate(byteCount: capacity * Self.sendControlSize, alignment: 16)
        receiveIOV = .allocate(capacity: capacity)
        sendIOV = .allocate(capacity: capacity)
        receiveHeaders = .allocate(capacity: capacity)
        sendHeaders = .allocate(capacity: capacity)
        dirty = capacity
        for i in 0..<capacity {
            receiveIOV[i] = iovec(iov_base: receiveBuffers + i * receiveBufferSize, iov_len: receiveBufferSize)
            receiveHeaders[i] = tock_mmsghdr()
            receiveHeaders[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
            receiveHeaders[i].msg_hdr.msg_iov = receiveIOV + i
            receiveHeaders[i].msg_hdr.msg_iovlen = 1
            receiveHeaders[i].msg_hdr.msg_control = control + i * Self.controlSize
            sendIOV[i] = iovec(iov_base: sendBuffers + i * self.sendBufferSize, iov_len: 0)
            sendHeaders[i] = tock_mmsghdr()
            sendHeaders[i].msg_hdr.msg_iov = sendIOV + i
            sendHeaders[i].msg_hdr.msg_iovlen = 1
        }
    }

    deinit {
        receiveBuffers.deallocate()
        sendBuffers.deallocate()
        names.deallocate()
        control.deallocate()
        sendControl.deallocate()
        receiveIOV.deallocate()
        sendIOV.deallocate()
        receiveHeaders.deallocate()
        sendHeaders.deallocate()
    }

    // MARK: Receiving

    /// One recvmmsg on `fd`: returns the number of datagrams (also in `received`), or -1 with
    /// `errno` set.
    @inline(__always)
    package mutating func receive(from fd: Int32, flags: Int32) -> Int {
        for i in 0..<dirty {
            receiveHeaders[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            receiveHeaders[i].msg_hdr.msg_controllen = Self.controlSize
            receiveHeaders[i].msg_hdr.msg_flags = 0
        }
        let n = Int(tock_recvmmsg(fd, receiveHeaders, UInt32(capacity), flags))
        received = max(0, n)
        dirty = received
        return n
    }

    /// The bytes of received datagram `i`.
    @inline(__always)
    package func bytes(at i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: receiveIOV[i].iov_base, count: min(Int(receiveHeaders[i].msg_len), receiveBufferSize))
    }

    /// Whether datagram `i` was larger than the receive buffer (and so cut short).
    @inline(__always)
    package func isTruncated(at i: Int) -> Bool {
        receiveHeaders[i].msg_hdr.msg_flags & Int32(tock_MSG_TRUNC) != 0
    }

    /// The sender of datagram `i`.
    @inline(__always)
    package func source(at i: Int) -> ClientAddress {
        ClientAddress(UnsafePointer(names + i))
    }

    /// The control messages of datagram `i`.
    @inline(__always)
    package func control(at i: Int) -> ReceivedControl {
        ReceivedControl(reading: &receiveHeaders[i].msg_hdr)
    }

    // MARK: Sending

    /// The buffer of queue slot `j` (`sendBufferSize` bytes) to write a datagram into.
    @inline(__always)
    package func sendBuffer(_ j: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: sendBuffers + j * sendBufferSize, count: sendBufferSize)
    }

    /// The datagram queued in slot `j`, as long as it was queued.
    @inline(__always)
    package func queuedDatagram(_ j: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: sendIOV[j].iov_base, count: sendIOV[j].iov_len)
    }

    /// Forgets what was queued.
    @inline(__always)
    package mutating func clearQueue() {
        queued = 0
    }

    /// Queues the first `length` bytes of the next slot's buffer as a reply to received
    /// datagram `i`, from its destination address when `answerFromDestination` (a wildcard
    /// socket: the reply must leave from the address the client used), and with a request for
    /// the kernel's transmit timestamp of this one datagram when `requestTransmitTimestamp`
    /// (`TransmitTimestampQueue.writeRequest`).
    @inline(__always)
    package mutating func queueReply(length: Int, to i: Int, from destination: PacketDestination, answerFromDestination: Bool, isIPv6: Bool, requestTransmitTimestamp: Bool = false, hardware: Bool = false) {
        let j = queued
        sendIOV[j].iov_len = length
        let out = sendHeaders + j
        out.pointee.msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
        out.pointee.msg_hdr.msg_namelen = receiveHeaders[i].msg_hdr.msg_namelen
        out.pointee.msg_hdr.msg_flags = 0
        let source = answerFromDestination && destination.present
        if source || requestTransmitTimestamp {
            let space = sendControl + j * Self.sendControlSize
            var length = source ? destination.writeSourceControl(into: space, isIPv6: isIPv6) : 0
            if requestTransmitTimestamp { length += TransmitTimestampQueue.writeRequest(into: space + length, hardware: hardware) }
            out.pointee.msg_hdr.msg_control = space
            out.pointee.msg_hdr.msg_controllen = length
        } else {
            out.pointee.msg_hdr.msg_control = nil
            out.pointee.msg_hdr.msg_controllen = 0
        }
        queued += 1
    }

    /// Sets the length of the datagram queued in slot `j`, for a reply written after it was
    /// queued (Roughtime's, once the batch is signed).
    @inline(__always)
    package mutating func setQueuedLength(_ j: Int, _ length: Int) {
        precondition(j >= 0 && j < queued && length >= 0 && length <= sendBufferSize, "no such queued datagram, or too long")
        sendIOV[j].iov_len = length
    }

    /// Moves the datagram queued in slot `from` to the earlier slot `to` (its bytes, address
    /// and control message), for taking dropped datagrams out of the queue.
    package mutating func moveQueued(from: Int, to: Int) {
        precondition(to < from && from < queued, "moves go to an earlier queued slot")
        let length = sendIOV[from].iov_len
        sendBuffer(to).baseAddress!.copyMemory(from: sendBuffer(from).baseAddress!, byteCount: length)
        sendIOV[to].iov_len = length
        let source = sendHeaders[from].msg_hdr
        sendHeaders[to].msg_hdr.msg_name = source.msg_name
        sendHeaders[to].msg_hdr.msg_namelen = source.msg_namelen
        sendHeaders[to].msg_hdr.msg_flags = 0
        if let control = source.msg_control, source.msg_controllen > 0 {
            let space = sendControl + to * Self.sendControlSize
            space.copyMemory(from: control, byteCount: Int(source.msg_controllen))
            sendHeaders[to].msg_hdr.msg_control = space
            sendHeaders[to].msg_hdr.msg_controllen = source.msg_controllen
        } else {
            sendHeaders[to].msg_hdr.msg_control = nil
            sendHeaders[to].msg_hdr.msg_controllen = 0
        }
    }

    /// Keeps only the first `count` queued datagrams.
    package mutating func truncateQueue(to count: Int) {
        precondition(count >= 0 && count <= queued, "cannot grow the queue")
        queued = count
    }

    /// Adds to queued reply `j` a request for the kernel's transmit timestamp of that datagram
    /// (`TransmitTimestampQueue.writeRequest`; the card's too when `hardware`), after any
    /// source-address control message it already carries. Call once per reply, before its send.
    @inline(__always)
    package mutating func requestTransmitTimestamp(_ j: Int, hardware: Bool = false) {
        let out = sendHeaders + j
        let space = sendControl + j * Self.sendControlSize
        let used = out.pointee.msg_hdr.msg_control == nil ? 0 : Int(out.pointee.msg_hdr.msg_controllen)
        out.pointee.msg_hdr.msg_control = space
        out.pointee.msg_hdr.msg_controllen = used + TransmitTimestampQueue.writeRequest(into: space + used, hardware: hardware)
    }

    /// Queues the first `length` bytes of the next slot's buffer for a connected socket, with a
    /// request for the kernel's transmit timestamp of this datagram when
    /// `requestTransmitTimestamp` (`TransmitTimestampQueue.writeRequest`).
    @inline(__always)
    package mutating func queue(length: Int, requestTransmitTimestamp: Bool = false) {
        let j = queued
        sendIOV[j].iov_len = length
        let out = sendHeaders + j
        out.pointee.msg_hdr.msg_name = nil
        out.pointee.msg_hdr.msg_namelen = 0
        if requestTransmitTimestamp {
            let space = sendControl + j * Self.sendControlSize
            out.pointee.msg_hdr.msg_control = space
            out.pointee.msg_hdr.msg_controllen = TransmitTimestampQueue.writeRequest(into: space)
        } else {
            out.pointee.msg_hdr.msg_control = nil
            out.pointee.msg_hdr.msg_controllen = 0
        }
        out.pointee.msg_hdr.msg_flags = 0
        queued += 1
    }

    /// One sendmmsg of queued slots `start..<start+count` on `fd`: the number sent, or -1 with
    /// `errno` set.
    @inline(__always)
    package func send(on fd: Int32, from start: Int, count: Int, flags: Int32 = 0) -> Int {
        Int(tock_sendmmsg(fd, sendHeaders + start, UInt32(count), flags))
    }
}

extension ClientAddress {
    /// The address and port in a kernel socket address (`AF_INET` or `AF_INET6`). An IPv4
    /// client of a dual-stack socket arrives v4-mapped and stays so, which makes it the same
    /// client as over IPv4.
    @inline(__always)
    package init(_ address: UnsafePointer<sockaddr_storage>) {
        let raw = UnsafeRawPointer(address)
        // sin_port and sin6_port are both at offset 2; sin_addr at 4, sin6_addr at 8.
        let port = UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        if address.pointee.ss_family == sa_family_t(AF_INET6) {
            self.init(
                high: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                port: port
            )
        } else {
            self.init(ipv4: UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)), port: port)
        }
    }

    /// The address of an endpoint.
    package init(_ endpoint: SocketEndpoint) {
        var storage = endpoint.storage
        self = withUnsafePointer(to: &storage) { ClientAddress($0) }
    }
}
