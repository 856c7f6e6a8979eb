import CTockShims
import Glibc
import TockProtocol

/// Kernel software transmit timestamps of a UDP socket's datagrams (SO_TIMESTAMPING,
/// Documentation/networking/timestamping.rst), read back from its error queue.
///
/// Only datagrams whose sendmsg asks for one are timestamped (per-packet timestamp requests,
/// §1.3.3: a SOL_SOCKET/SCM_TIMESTAMPING control message carrying SOF_TIMESTAMPING_TX_SOFTWARE,
/// `writeRequest`); the socket-level flags only say how timestamps are reported, so datagrams
/// sent without the request cost nothing. With `SOF_TIMESTAMPING_OPT_ID` the kernel numbers the
/// timestamped datagrams a socket sends (0, 1, 2, … from when the option is set: the count,
/// `sk_tskey`, advances only for a datagram that asks for a timestamp) and reports each one's
/// timestamp with that number, so a sender that counts its own timestamped sends knows which
/// datagram a timestamp belongs to. `OPT_TSONLY` leaves the datagram's bytes out of the
/// report. The interleaved NTP mode (RFC 9769) sends these timestamps to clients as the
/// previous reply's transmit time.
///
/// State it owns, allocated once: the headers and control space for one recvmmsg of up to
/// `capacity` reports. Reading allocates nothing.
package struct TransmitTimestampQueue: ~Copyable {
    /// Reports read per recvmmsg.
    package let capacity: Int
    /// Room for a report's control messages: SCM_TIMESTAMPING (64 bytes) and IPV6_RECVERR with
    /// its address (64) fill 128 on IPv6; the kernel writes the error, which holds the number,
    /// last, so a short buffer would lose the number first.
    private static var controlSize: Int { 256 }
    private let headers: UnsafeMutablePointer<tock_mmsghdr>
    private let control: UnsafeMutableRawPointer

    /// Space for `capacity` reports per read.
    package init(capacity: Int) {
        self.capacity = capacity
        headers = .allocate(capacity: capacity)
        control = .allocate(byteCount: capacity * Self.controlSize, alignment: 16)
        for i in 0..<capacity {
            headers[i] = tock_mmsghdr()
            headers[i].msg_hdr.msg_control = control + i * Self.controlSize
        }
    }

    deinit {
        headers.deallocate()
        control.deallocate()
    }

    /// Makes `fd` report the transmit timestamps its datagrams ask for (software, numbered,
    /// without the datagram), with the counter at 0. Setting the flags without `OPT_ID` first
    /// makes the kernel restart the count when `OPT_ID` is set again, so this also
    /// resynchronises a sender that lost count.
    ///
    /// Software receive timestamps then come in the same SCM_TIMESTAMPING message (ts[0],
    /// which `ReceivedControl` reads), and SO_TIMESTAMPNS is turned off: with both, a kernel
    /// before 6.12 (no SOF_TIMESTAMPING_OPT_RX_FILTER) writes the receive time into every
    /// datagram's control data twice.
    ///
    /// With `hardware` (an interface of the host has hardware timestamping on), the socket also
    /// reports the card's raw timestamps: ts[2] of the same receive message, with the interface
    /// and frame length (SCM_TIMESTAMPING_PKTINFO), and, for a datagram whose request asks the
    /// card too (`writeRequest(hardware:)`), a transmit report of its own on the error queue,
    /// usually after the software one, with the same number. A timestamp-only report does not
    /// say which interface sent it (the kernel attaches IP_PKTINFO only to reports that carry
    /// the packet), so the sender keeps that itself.
    package static func enable(on fd: Int32, hardware: Bool = false) -> Bool {
        let extra = hardware ? tock_HW_TIMESTAMPING_FLAGS : 0
        do throws(SystemError) {
            try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPING, value: tock_TX_TIMESTAMPING_FLAGS_NO_ID | extra, "SO_TIMESTAMPING")
            try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPING, value: tock_TX_TIMESTAMPING_FLAGS | extra, "SO_TIMESTAMPING")
        } catch {
            return false
        }
        try? Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPNS, value: 0, "SO_TIMESTAMPNS")
        return true
    }

    /// The space `writeRequest` takes in a datagram's control buffer.
    package static var requestControlSpace: Int { tock_cmsg_space(MemoryLayout<UInt32>.size) }

    /// Writes, at `space` (aligned for a `cmsghdr`, `requestControlSpace` bytes), the control
    /// message that asks the kernel for a software transmit timestamp of the one datagram it is
    /// sent with, and with `hardware` one from the card too. Returns its length.
    @inline(__always)
    package static func writeRequest(into space: UnsafeMutableRawPointer, hardware: Bool = false) -> Int {
        let header = space.assumingMemoryBound(to: cmsghdr.self)
        header.pointee.cmsg_level = SOL_SOCKET
        header.pointee.cmsg_type = tock_SCM_TIMESTAMPING
        header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<UInt32>.size)
        UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: tock_SOF_TIMESTAMPING_TX_SOFTWARE | (hardware ? tock_SOF_TIMESTAMPING_TX_HARDWARE : 0), as: UInt32.self)
        return requestControlSpace
    }

    /// One recvmmsg(MSG_ERRQUEUE | MSG_DONTWAIT) on `fd`: calls `body` with each datagram number
    /// and its software transmit timestamp, and returns how many reports were read (0 when the
    /// queue was empty). One system call however many reports wait, up to `capacity`.
    @inline(__always)
    package mutating func drain(_ fd: Int32, _ body: (UInt32, UTCInstant) -> Void) -> Int {
        drainReports(fd) { report in
            if let time = report.software { body(report.id, time) }
        }
    }

    /// One recvmmsg(MSG_ERRQUEUE | MSG_DONTWAIT) on `fd`: calls `body` with each transmit
    /// report (software or hardware), and returns how many reports were read.
    @inline(__always)
    package mutating func drainReports(_ fd: Int32, _ body: (TransmitReport) -> Void) -> Int {
        for i in 0..<capacity {
            headers[i].msg_hdr.msg_name = nil
            headers[i].msg_hdr.msg_namelen = 0
            headers[i].msg_hdr.msg_iov = nil
            headers[i].msg_hdr.msg_iovlen = 0
            headers[i].msg_hdr.msg_controllen = Self.controlSize
            headers[i].msg_hdr.msg_flags = 0
        }
        let n = Int(tock_recvmmsg(fd, headers, UInt32(capacity), tock_MSG_ERRQUEUE | tock_MSG_DONTWAIT))
        guard n > 0 else { return 0 }
        for i in 0..<n {
            if let report = Self.report(in: &headers[i].msg_hdr) { body(report) }
        }
        return n
    }

    /// The transmit report in one error-queue message: its datagram number (a sock_extended_err
    /// from SO_EE_ORIGIN_TIMESTAMPING whose ee_data is the number, at the IPv4 or IPv6 level: a
    /// dual-stack socket reports at either), SCM_TIMESTAMPING's ts[0] (software) and ts[2] (the
    /// card's raw time). Nil for anything else.
    @inline(__always)
    static func report(in message: inout msghdr) -> TransmitReport? {
        var report = TransmitReport()
        var numbered = false
        var cmsg = tock_cmsg_firsthdr(&message)
        while let c = cmsg {
            let level = c.pointee.cmsg_level
            let type = c.pointee.cmsg_type
            let data = UnsafeRawPointer(tock_cmsg_data(c)!)
            if level == SOL_SOCKET, type == tock_SCM_TIMESTAMPING {
                (report.software, report.hardware) = ReceivedControl.timestamps(type: type, data)
            } else if (level == tock_SOL_IP && type == tock_IP_RECVERR) || (level == tock_SOL_IPV6 && type == tock_IPV6_RECVERR) {
                let err = data.loadUnaligned(as: tock_sock_extended_err.self)
                if Int32(err.ee_errno) == tock_ENOMSG, Int32(err.ee_origin) == tock_SO_EE_ORIGIN_TIMESTAMPING {
                    report.id = err.ee_data
                    numbered = true
                }
            }
            cmsg = tock_cmsg_nxthdr(&message, c)
        }
        guard numbered, report.software != nil || report.hardware != 0 else { return nil }
        return report
    }
}

/// One transmit timestamp report from a socket's error queue.
package struct TransmitReport {
    /// The datagram's number (SOF_TIMESTAMPING_OPT_ID).
    package var id: UInt32 = 0
    /// The kernel's software timestamp, if this report carries it.
    package var software: UTCInstant?
    /// The card's raw timestamp, nanoseconds on its hardware clock; 0 when this report has none.
    package var hardware: Int64 = 0

    /// An empty report.
    package init() {}
}
