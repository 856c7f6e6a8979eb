import Testing
import TockSockets

/// The CPUs tockd plans its workers for (`CPUBudget`), from the kernel's files as a container,
/// a systemd service and a plain shell see them.
@Suite("CPU budget: affinity and cgroup quota")
struct CPUBudgetTests {
    /// A hybrid host (v1 controllers, v2 unified at /sys/fs/cgroup/unified), as Debian's
    /// container hosts mount it.
    static let hybridMounts = """
        30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
        31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
        33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
        34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
        """

    @Test("v1: the cpu controller's group and each ancestor, up to the mount")
    func v1Directories() {
        let groups = "4:memory:/user.slice\n3:cpu,cpuacct:/system.slice/tockd.service\n0::/system.slice/tockd.service\n"
        #expect(CPUBudget.quotaDirectories(cgroups: groups, mountInfo: Self.hybridMounts).map(\.path) == [
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/tockd.service", "/sys/fs/cgroup/cpu,cpuacct/system.slice", "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/unified/system.slice/tockd.service", "/sys/fs/cgroup/unified/system.slice", "/sys/fs/cgroup/unified",
        ])
    }

    @Test("v2 only, inside a container whose group is the mount's root")
    func v2Container() {
        let mounts = "40 35 0:33 /kubepods/pod1/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n"
        // Without a cgroup namespace the process sees the host's path; with one, "/".
        #expect(CPUBudget.quotaDirectories(cgroups: "0::/kubepods/pod1/abc\n", mountInfo: mounts).map(\.path) == ["/sys/fs/cgroup"])
        #expect(CPUBudget.quotaDirectories(cgroups: "0::/\n", mountInfo: mounts).map(\.path) == ["/sys/fs/cgroup"])
    }

    @Test("A mount point with a space, escaped as \\040 in mountinfo")
    func escapedMountPoint() {
        let mounts = "40 35 0:33 / /mnt/cgroup\\040two rw - cgroup2 cgroup2 rw\n"
        #expect(CPUBudget.quotaDirectories(cgroups: "0::/a\n", mountInfo: mounts).map(\.path) == ["/mnt/cgroup two/a", "/mnt/cgroup two"])
    }

    @Test("Quota files: v2 cpu.max and v1 cfs quota/period, rounded up; no limit reads as nil")
    func quotas() {
        #expect(CPUBudget.cpusFromCPUMax("max 100000\n") == nil)
        #expect(CPUBudget.cpusFromCPUMax("100000 100000\n") == 1)
        #expect(CPUBudget.cpusFromCPUMax("150000 100000\n") == 2)
        #expect(CPUBudget.cpusFromCPUMax("50000 100000") == 1)
        #expect(CPUBudget.cpusFromCPUMax("garbage") == nil)
        #expect(CPUBudget.cpusFromCFS(quota: "-1\n", period: "100000\n") == nil)
        #expect(CPUBudget.cpusFromCFS(quota: "250000\n", period: "100000\n") == 3)
        #expect(CPUBudget.cpusFromCFS(quota: "0", period: "0") == nil)
    }

    @Test("The budget is the smaller of affinity and quota, at least one")
    func budget() {
        #expect(CPUBudget(affinity: 64, quota: 1).cpus == 1)
        #expect(CPUBudget(affinity: 1, quota: 4).cpus == 1)
        #expect(CPUBudget(affinity: 8, quota: nil).cpus == 8)
        #expect(CPUBudget(affinity: 2, quota: nil).description == "2 CPUs (affinity 2, no cgroup CPU quota)")
        #expect(CPUBudget(affinity: 64, quota: 1).description == "1 CPU (affinity 64, cgroup CPU quota 1)")
    }

    @Test("Default NTP workers: one per two CPUs, rounded up, at least one", arguments: [
        (1, 1), (2, 1), (3, 2), (4, 2), (16, 8), (64, 32),
    ])
    func defaultWorkers(cpus: Int, workers: Int) {
        #expect(CPUBudget(affinity: cpus, quota: nil).defaultWorkers == workers)
        #expect(CPUBudget(affinity: 128, quota: cpus).defaultWorkers == workers)
    }

    @Test("This process: affinity matches sched_getaffinity's CPU count")
    func current() {
        let budget = CPUBudget.current()
        #expect(budget.affinity >= 1)
        #expect(budget.cpus >= 1 && budget.cpus <= budget.affinity)
    }
}
