"""tockd's default worker count follows the CPUs it may use: its affinity mask (taskset) and
its control group's CPU quota (a container's --cpus, systemd's CPUQuota=), not the machine's
CPU count."""
import os
from pathlib import Path

import pytest


def start_line(proc):
    """The NTP workers per address and the whole start line (which also says `cpus=`)."""
    m = proc.log.wait_for(r"tockd: (.*ntp_workers_per_address=(\d+) .*tockd started)$", proc=proc)
    return int(m[2]), m[1]


def test_taskset_to_one_cpu_gives_one_worker(procs):
    cpu = sorted(os.sched_getaffinity(0))[0]
    proc = procs.tockd("pinned", "--ntp", "127.0.0.1:0", "--clock-source", "local", prefix=("taskset", "-c", str(cpu)))
    workers, line = start_line(proc)
    assert workers == 1, line
    assert "1 CPU (affinity 1," in line, line


def test_unpinned_workers_follow_the_affinity_mask(procs):
    proc = procs.tockd("unpinned", "--ntp", "127.0.0.1:0", "--clock-source", "local")
    workers, line = start_line(proc)
    assert f"affinity {len(os.sched_getaffinity(0))}," in line, line
    assert 1 <= workers <= len(os.sched_getaffinity(0)), line


def quota_group():
    """A fresh cgroup limited to one CPU, v2 (cpu.max) or v1 (cpu.cfs_quota_us), or None
    where this host lets us make neither."""
    if os.geteuid() != 0:
        return None
    name = f"tock-test-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists() and "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
        group, limits = v2 / name, [("cpu.max", "100000 100000")]
    elif (Path("/sys/fs/cgroup/cpu") / "cpu.cfs_quota_us").exists():
        group, limits = Path("/sys/fs/cgroup/cpu") / name, [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "100000")]
    else:
        return None
    group.mkdir()
    try:
        for file, value in limits:
            (group / file).write_text(value)
    except OSError:
        group.rmdir()  # made here, empty: leave nothing behind
        raise
    return group


def test_a_one_cpu_cgroup_quota_gives_one_worker(procs):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the quota cannot lower the count")
    try:
        group = quota_group()
    except OSError as e:
        pytest.skip(f"cannot make a cgroup here: {e}")
    if group is None:
        pytest.skip("no writable cgroup CPU controller (needs root)")
    try:
        # The shell joins the group and execs tockd, which keeps its PID.
        join = ("sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh")
        proc = procs.tockd("quota", "--ntp", "127.0.0.1:0", "--clock-source", "local", prefix=join)
        workers, line = start_line(proc)
        assert workers == 1, line
        assert "cgroup CPU quota 1)" in line, line
        proc.stop()
    finally:
        procs.stop_all()
        group.rmdir()
