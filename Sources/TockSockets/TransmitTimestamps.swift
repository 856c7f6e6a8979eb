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
    private static var controlSize: Int { 128 }
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
    package static func enable(on fd: Int32) -> Bool {
        do throws(SystemError) {
            try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPING, value: tock_TX_TIMESTAMPING_FLAGS_NO_ID, "SO_TIMESTAMPING")
            try Sockets.setOption(fd, level: SOL_SOCKET, name: tock_SO_TIMESTAMPING, value: tock_TX_TIMESTAMPING_FLAGS, "SO_TIMESTAMPING")
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
    /// sent with. Returns its length.
    @inline(__always)
    package static func writeRequest(into space: UnsafeMutableRawPointer) -> Int {
        let header = space.assumingMemoryBound(to: cmsghdr.self)
        header.pointee.cmsg_level = SOL_SOCKET
        header.pointee.cmsg_type = tock_SCM_TIMESTAMPING
        header.pointee.cmsg_len = tock_cmsg_len(MemoryLayout<UInt32>.size)
        UnsafeMutableRawPointer(tock_cmsg_data(header)!).storeBytes(of: tock_SOF_TIMESTAMPING_TX_SOFTWARE, as: UInt32.self)
        return requestControlSpace
    }

    /// One recvmmsg(MSG_ERRQUEUE | MSG_DONTWAIT) on `fd`: calls `body` with each datagram number
    /// and its software transmit timestamp, and returns how many reports were read (0 when the
    /// queue was empty). One system call however many reports wait, up to `capacity`.
    @inline(__always)
    package mutating func drain(_ fd: Int32, _ body: (UInt32, UTCInstant) -> Void) -> Int {
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
            if let (id, time) = Self.timestamp(in: &headers[i].msg_hdr) { body(id, time) }
        }
        return n
    }

    /// The datagram number and software timestamp of one error-queue report, if it is a
    /// transmit timestamp: SCM_TIMESTAMPING's ts[0], and a sock_extended_err from
    /// SO_EE_ORIGIN_TIMESTAMPING whose ee_data is the number (IPv4 or IPv6 level: a dual-stack
    /// socket reports at either).
    @inline(__always)
    static func timestamp(in message: inout msghdr) -> (UInt32, UTCInstant)? {
        var time: UTCInstant?
        var id: UInt32?
        var cmsg = tock_cmsg_firsthdr(&message)
        while let c = cmsg {
            let level = c.pointee.cmsg_level
            let type = c.pointee.cmsg_type
            let data = UnsafeRawPointer(tock_cmsg_data(c)!)
            if level == SOL_SOCKET, type == tock_SCM_TIMESTAMPING {
                time = ReceivedControl.softwareTimestamp(type: type, data)
            } else if (level == tock_SOL_IP && type == tock_IP_RECVERR) || (level == tock_SOL_IPV6 && type == tock_IPV6_RECVERR) {
                let err = data.loadUnaligned(as: tock_sock_extended_err.self)
                if Int32(err.ee_errno) == tock_ENOMSG, Int32(err.ee_origin) == tock_SO_EE_ORIGIN_TIMESTAMPING {
                    id = err.ee_data
                }
            }
            cmsg = tock_cmsg_nxthdr(&message, c)
        }
        guard let id, let time else { return nil }
        return (id, time)
    }
}
