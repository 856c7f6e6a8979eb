import Glibc

/// Dropping root after the privileged ports are bound.
package enum Privileges {
    /// Why privileges could not be dropped.
    package struct DropError: Error, Sendable, CustomStringConvertible {
        package var description: String
    }

    /// Switches the whole process (every thread) to `user`'s uid and gid with no supplementary
    /// groups. Leaving uid 0 clears the permitted and effective capability sets (the kernel's
    /// rule without PR_SET_KEEPCAPS), so nothing is kept, not even CAP_NET_BIND_SERVICE:
    /// sockets are already bound. Returns the capability line the kernel reports afterwards.
    package static func drop(to user: String) throws(DropError) -> String {
        guard getuid() == 0 || geteuid() == 0 else {
            throw DropError(description: "--user \(user) needs tockd to start as root (it binds, then drops to that user)")
        }
        guard let entry = getpwnam(user) else {
            throw DropError(description: "--user \(user): no such user")
        }
        let uid = entry.pointee.pw_uid
        let gid = entry.pointee.pw_gid
        guard uid != 0 else { throw DropError(description: "--user \(user) is root: choose an unprivileged user") }
        guard setgroups(0, nil) == 0 else { throw DropError(description: "setgroups: \(String(cString: strerror(errno)))") }
        guard setgid(gid) == 0 else { throw DropError(description: "setgid(\(gid)): \(String(cString: strerror(errno)))") }
        guard setuid(uid) == 0 else { throw DropError(description: "setuid(\(uid)): \(String(cString: strerror(errno)))") }
        // Regaining root must now be impossible.
        guard setuid(0) != 0 else { throw DropError(description: "could still regain root after dropping to \(user)") }
        return effectiveCapabilities
    }

    /// The `CapEff` line of /proc/self/status, e.g. `0000000000000000`.
    package static var effectiveCapabilities: String {
        guard let file = fopen("/proc/self/status", "r") else { return "unknown" }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("CapEff:") {
                return text.dropFirst(7).trimmingCharacters()
            }
        }
        return "unknown"
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == "\n" || $0 == " " }.reversed())
    }
}
