import CTockShims
import Glibc

/// How many CPUs this process may actually use: the CPUs of its affinity mask (`taskset`,
/// systemd's `CPUAffinity=`, a Kubernetes static CPU policy), capped by the CPU quota of its
/// control group and every ancestor group (a container's `--cpus`, a pod's CPU limit,
/// systemd's `CPUQuota=`), rounded up to whole CPUs, at least 1.
///
/// A worker per CPU the machine has would, under `taskset -c 1` or a 1-CPU pod on a 64-core
/// node, put many workers on one CPU: they then wake each other and bounce the socket's
/// cache lines for nothing. Container-aware runtimes count the same way (the JVM, Go's
/// automaxprocs, .NET).
package struct CPUBudget: Sendable, Equatable, CustomStringConvertible {
    /// CPUs in the affinity mask.
    package var affinity: Int
    /// CPUs the tightest cgroup quota allows (quota / period, rounded up), or nil if no group
    /// on the path sets one.
    package var quota: Int?

    /// A budget of `affinity` CPUs under a quota of `quota` CPUs.
    package init(affinity: Int, quota: Int?) {
        self.affinity = affinity
        self.quota = quota
    }

    /// The number of CPUs to plan for.
    package var cpus: Int { max(1, min(affinity, quota ?? affinity)) }

    /// The default number of NTP workers per address: one per two CPUs, rounded up. Each
    /// request costs about as much kernel time outside its worker (the receive and transmit
    /// processing in softirq context, which Linux runs on whichever CPU a packet arrives on or
    /// leaves from) as the worker spends itself, so a busy worker needs about a second CPU's
    /// worth of room beside it. Measured on two CPUs shared with a load generator: one worker
    /// answered 280–286k requests/s at 3.5 µs of CPU each, two 208–241k/s at 3.9–4.2 µs
    /// (three busy threads on two CPUs); pinned to one CPU alone, the same.
    package var defaultWorkers: Int { (cpus + 1) / 2 }

    /// "2 CPUs (affinity 2, no cgroup CPU quota)", for the start log.
    package var description: String {
        "\(cpus) CPU\(cpus == 1 ? "" : "s") (affinity \(affinity), " + (quota.map { "cgroup CPU quota \($0)" } ?? "no cgroup CPU quota") + ")"
    }

    /// This process's budget, read from the kernel: `sched_getaffinity`, `/proc/self/cgroup`,
    /// `/proc/self/mountinfo` and the groups' `cpu.max` (v2) or `cpu.cfs_quota_us` and
    /// `cpu.cfs_period_us` (v1). Anything unreadable counts as no limit.
    package static func current() -> CPUBudget {
        let mask = Int(tock_affinity_cpu_count())
        let affinity = mask > 0 ? mask : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let groups = readText("/proc/self/cgroup") ?? ""
        let mounts = readText("/proc/self/mountinfo") ?? ""
        var tightest: Int?
        for directory in quotaDirectories(cgroups: groups, mountInfo: mounts) {
            let limit = readText(directory.path + "/cpu.max").flatMap(cpusFromCPUMax)
                ?? readText(directory.path + "/cpu.cfs_quota_us").flatMap { quota in
                    readText(directory.path + "/cpu.cfs_period_us").flatMap { cpusFromCFS(quota: quota, period: $0) }
                }
            if let limit { tightest = min(tightest ?? limit, limit) }
        }
        return CPUBudget(affinity: max(1, affinity), quota: tightest)
    }

    /// One directory whose CPU quota applies to this process.
    package struct QuotaDirectory: Equatable, Sendable {
        /// The directory in the mounted cgroup file system.
        package var path: String
    }

    /// The directories whose quota bounds this process, from `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`: for the unified (v2) hierarchy and for v1's `cpu` controller,
    /// the process's own group and each ancestor up to the mount's root (a quota on a parent
    /// slice binds its children too).
    package static func quotaDirectories(cgroups: String, mountInfo: String) -> [QuotaDirectory] {
        // Mounts: (root within the hierarchy, mount point, v2?, super options).
        var v2Mount: (root: String, point: String)?
        var cpuMount: (root: String, point: String)?
        for line in mountInfo.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let root = String(left[3]), point = unescape(String(left[4]))
            if right[0] == "cgroup2" {
                if v2Mount == nil { v2Mount = (root, point) }
            } else if right[0] == "cgroup", right[2].split(separator: ",").contains("cpu"), cpuMount == nil {
                cpuMount = (root, point)
            }
        }
        var out: [QuotaDirectory] = []
        for line in cgroups.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = fields[1].split(separator: ",")
            let mount: (root: String, point: String)?
            if fields[0] == "0" && fields[1].isEmpty {
                mount = v2Mount
            } else if controllers.contains("cpu") {
                mount = cpuMount
            } else {
                continue
            }
            guard let mount else { continue }
            // The group's path relative to what is mounted: a container sees its own group as
            // the mount's root, or (without a cgroup namespace) under the host's path.
            var relative = String(fields[2])
            if mount.root != "/", relative.hasPrefix(mount.root) { relative = String(relative.dropFirst(mount.root.count)) }
            var parts = relative.split(separator: "/").map(String.init)
            while true {
                out.append(QuotaDirectory(path: mount.point + (parts.isEmpty ? "" : "/" + parts.joined(separator: "/"))))
                if parts.isEmpty { break }
                parts.removeLast()
            }
        }
        return out
    }

    /// CPUs from a v2 `cpu.max` ("max 100000" is no limit; "150000 100000" is 2, rounded up).
    package static func cpusFromCPUMax(_ text: String) -> Int? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let quota = Int(fields[0]), let period = Int(fields[1]), quota > 0, period > 0 else { return nil }
        return (quota + period - 1) / period
    }

    /// CPUs from v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us` (a quota of -1 is no limit).
    package static func cpusFromCFS(quota: String, period: String) -> Int? {
        guard let q = Int(quota.filter { !$0.isWhitespace }), let p = Int(period.filter { !$0.isWhitespace }), q > 0, p > 0 else { return nil }
        return (q + p - 1) / p
    }

    /// mountinfo escapes spaces and a few other bytes as \ooo (proc(5)).
    private static func unescape(_ text: String) -> String {
        guard text.contains("\\") else { return text }
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let b = utf8.popFirst() {
            if b == UInt8(ascii: "\\"), utf8.count >= 3, let v = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(v)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A small text file's contents, or nil.
    private static func readText(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let n = fread(&buffer, 1, buffer.count, file)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }
}
