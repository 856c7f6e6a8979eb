import Glibc

/// The systemd notification protocol (sd_notify(3)) without libsystemd: one datagram of
/// `KEY=VALUE` lines to the AF_UNIX socket named by `NOTIFY_SOCKET`.
///
/// With `Type=notify`, systemd considers tockd started only on `READY=1`, sent once every
/// socket is bound and every worker runs, and shows `STATUS=` in `systemctl status`.
package enum SystemdNotifier {
    /// Sends `state` (e.g. "READY=1") if tockd runs under a service manager that asked for
    /// notifications; returns whether it was sent. Failures are silent: notification is advice.
    @discardableResult
    package static func notify(_ state: String, environment: [String: String]? = nil) -> Bool {
        let path: String
        if let environment {
            guard let p = environment["NOTIFY_SOCKET"] else { return false }
            path = p
        } else {
            guard let p = getenv("NOTIFY_SOCKET") else { return false }
            path = String(cString: p)
        }
        guard !path.isEmpty, path.hasPrefix("/") || path.hasPrefix("@") else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // An abstract socket is written with a leading '@' and addressed with a leading NUL.
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, length) }
            }
        }
        return sent == message.count
    }
}
