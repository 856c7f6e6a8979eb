"""Interleaved NTP (RFC 9769) against chronyd 4.3 with `xleave`: chronyd's own view of the
exchanges (`chronyc ntpdata`) says they are interleaved, i.e. each reply carried the kernel
transmit timestamp of tockd's previous reply; with --no-interleaved it says they are basic.
"""
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, run

pytestmark = [
    pytest.mark.skipif(shutil.which("chronyd") is None or shutil.which("chronyc") is None, reason="needs chronyd and chronyc"),
    pytest.mark.skipif(not IS_ROOT, reason="chronyd -x runs as root here"),
]


@pytest.fixture
def short_dir():
    """A directory with a short path, removed afterwards: a Unix socket's path must fit in 108
    bytes, and pytest's tmp_path under the test run's TMPDIR does not always."""
    path = Path(tempfile.mkdtemp(prefix="c"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_chronyd(procs, tmp_path, port, name, run_dir):
    """A chronyd that only measures (-x: never touches the clock) polling tockd every 1/16 s in
    interleaved mode; its command socket in `run_dir`, a short-pathed directory only root may
    enter (mkdtemp makes it 0700), as chronyc needs."""
    socket_path = run_dir / f"{name}.sock"
    assert len(str(socket_path).encode()) < 108, socket_path
    conf = tmp_path / f"{name}.conf"
    conf.write_text(
        f"server 127.0.0.1 port {port} xleave minpoll -4 maxpoll -4 iburst\n"
        "cmdport 0\n"
        f"bindcmdaddress {socket_path}\n"
        f"pidfile {tmp_path / (name + '.pid')}\n"
    )
    chronyd = procs.spawn(name, ["chronyd", "-d", "-x", "-u", "root", "-f", conf])
    return chronyd, socket_path


def ntpdata(socket_path):
    """`chronyc ntpdata` as {field: value}; empty until chronyd has a sample."""
    out = run(["chronyc", "-h", socket_path, "ntpdata"], timeout=10).stdout
    return {k.strip(): v.strip() for k, v in re.findall(r"^([A-Za-z][A-Za-z0-9 ]*?)\s*:\s*(.*)$", out, re.M)}, out


def wait_for_samples(chronyd, socket_path, good, timeout=30.0):
    """Polls ntpdata until chronyd took `good` good replies; returns the last report."""
    deadline = time.monotonic() + timeout
    fields, out = {}, ""
    while time.monotonic() < deadline:
        assert chronyd.running(), f"chronyd exited: {chronyd.log.text()}"
        if socket_path.exists():
            fields, out = ntpdata(socket_path)
            if int(fields.get("Total good RX", "0") or 0) >= good:
                return fields, out
        time.sleep(0.25)
    pytest.fail(f"chronyd took fewer than {good} good replies in {timeout} s:\n{out}\n{chronyd.log.text()}")


def test_chronyd_xleave_gets_interleaved_replies_with_kernel_timestamps(short_dir, procs, tmp_path):
    tockd = procs.tockd("tockd", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--workers", "2")
    chronyd, socket_path = start_chronyd(procs, tmp_path, tockd.port("ntp"), "chronyd-xleave", short_dir)
    # A new client's first request is basic; its second shows interleaved intent (origin =
    # tockd's first receive timestamp) and gets a basic reply, the first whose kernel transmit
    # timestamp tockd asks for; so its third reply is the first that can be interleaved. Then
    # every one is, unless a request overtakes the read of the previous reply's timestamp.
    deadline = time.monotonic() + 30
    while True:
        fields, out = wait_for_samples(chronyd, socket_path, good=8)
        if fields.get("Interleaved") == "Yes" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(out)
    assert fields.get("Interleaved") == "Yes", out
    assert fields.get("TX timestamping") == "Kernel", out
    assert fields.get("RX timestamping") == "Kernel", out
    assert fields.get("Mode") == "Server", out
    # The delay chronyd computes from interleaved timestamps on loopback is tiny.
    delay = float(fields["Peer delay"].split()[0])
    assert 0 <= delay < 0.01, out


def test_no_interleaved_gives_chronyd_basic_replies(short_dir, procs, tmp_path):
    tockd = procs.tockd("tockd-basic", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--no-interleaved")
    chronyd, socket_path = start_chronyd(procs, tmp_path, tockd.port("ntp"), "chronyd-basic", short_dir)
    fields, out = wait_for_samples(chronyd, socket_path, good=8)
    print(out)
    assert fields.get("Interleaved") == "No", out
    assert int(fields["Total good RX"]) >= 8, out


def test_interleaved_client_gets_every_previous_transmit_timestamp(procs):
    """Tests/interop/interleaved_client.py asks for every previous reply's transmit time, from
    one socket: at least 90 % of its replies are interleaved, and every reply is well formed."""
    tockd = procs.tockd("tockd-client", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--workers", "2")
    from conftest import INTEROP
    result = run(["python3", INTEROP / "interleaved_client.py", "127.0.0.1", str(tockd.port("ntp")), "--requests", "500"])
    assert result.returncode == 0, result.stdout
    assert "interleaved=" in result.stdout, result.stdout


def free_udp_port():
    """A UDP port on 127.0.0.1 that nothing holds now, for a server that takes no port 0."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_interleaved(addr):
    """`tock bench --interleaved` (kernel TX timestamps on the client) at a low open-loop rate."""
    import json
    from conftest import expect_ok, tock
    r = expect_ok(tock("bench", addr, "--rate", "400", "--clients", "4", "--duration", "1", "--interleaved", "--json"))
    return json.loads(r.stdout)


def test_bench_interleaved_client_against_chronyd_and_tockd(procs, tmp_path):
    """tock bench's interleaved client (what benchmarks/accuracy measures with) is answered
    interleaved by an independent server, chronyd 4.3, as by tockd: each client's replies after
    its second carry the previous reply's kernel transmit timestamp, every request's own kernel
    transmit timestamp is found, and the error from kernel timestamps at all four points is
    small. Against tockd with --no-interleaved nothing is interleaved and no error is claimed."""
    port = free_udp_port()
    conf = tmp_path / "chronyd-server.conf"
    conf.write_text(f"local stratum 1\nallow 127.0.0.0/8\nport {port}\ncmdport 0\n"
                    f"pidfile {tmp_path / 'chronyd-server.pid'}\nclientloglimit 1048576\n")
    chronyd = procs.spawn("chronyd-server", ["chronyd", "-d", "-x", "-u", "root", "-f", conf])
    tockd = procs.tockd("tockd-bench", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--stratum", "1")
    basic = procs.tockd("tockd-basic", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--stratum", "1", "--no-interleaved")
    from conftest import tock, wait_until
    # chronyd's readiness: it answers a query (0; 4 while its local reference is not yet up).
    wait_until(lambda: tock("query", f"127.0.0.1:{port}", "--timeout", "0.2").returncode in (0, 4), 10, "chronyd answering")
    for name, addr in (("chronyd", f"127.0.0.1:{port}"), ("tockd", tockd.addr("ntp"))):
        d = bench_interleaved(addr)
        assert d["invalid"] == 0 and d["answered"] >= 300, (name, d)
        assert d["t1"] == "kernel" and d["missing_transmit_timestamps"] == 0, (name, d)
        assert d["interleaved_percent"] >= 80, (name, d)
        assert 0 < d["timestamp_error_mean_us"] < 1000, (name, d)
    assert chronyd.running()
    d = bench_interleaved(basic.addr("ntp"))
    assert d["answered"] >= 300 and d["interleaved_replies"] == 0 and d["timestamp_error_mean_us"] == 0, d
