import Glibc

/// A file holding a secret (an NTS cookie master, an NTS private key, a Roughtime seed or
/// delegation), read only if its owner alone can read it: a secret others can read is no
/// secret, so tockd refuses it, as roughtimed refuses its key file.
///
/// Every secret tock reads goes through `read`, so every one is checked the same way and every
/// refusal says the same thing: what the file is, what is wrong, and the fix.
package enum SecretFile {
    /// Why a secret file cannot be used; `description` names the file and the fix.
    package struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
        /// What is wrong and what to do.
        package var description: String

        /// A problem described as `description`.
        package init(_ description: String) { self.description = description }
    }

    /// Reads at most `limit` bytes of `path`, refusing it unless its owner alone can read it
    /// (no group or other permission bits).
    ///
    /// The mode is checked on the opened descriptor (`fstat`), so the file checked is the file
    /// read. `name` says what the file is in every message ("NTS key file"); `missingHint`, if
    /// given, follows a failure to open it ("make one with: ...").
    package static func read(_ path: String, name: String, limit: Int, missingHint: String? = nil) throws(Problem) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Problem("\(name) \(path): \(String(cString: strerror(errno)))" + (missingHint.map { "; \($0)" } ?? ""))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw Problem("\(name) \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw Problem("\(name) \(path) can be read by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 \(path)")
        }
        var bytes = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, limit - count) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw Problem("\(name) \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            count += n
        }
        return Array(bytes[..<count])
    }
}
