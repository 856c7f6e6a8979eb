"""systemd integration: Type=notify (READY=1, STOPPING=1) and socket activation (sd_listen_fds(3)):
a service manager binds, tockd serves what it inherits.

systemd-socket-activate plays systemd for one kind of socket at a time and starts tockd on the
first request, which tockd then answers. It refuses port 0, so Tests/interop/socket_activate.py
binds its socket on port 0 and hands it over through LISTEN_FDS, which systemd-socket-activate
takes as its own (it says `Listening on ADDRESS:PORT as 3.`). socket_activate.py alone passes UDP
and TCP together, non-blocking as systemd does, and can drop to an unprivileged user first.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import sys
import time

import pytest

from conftest import HMS_LINE, INTEROP, IS_ROOT, TOCKD, ClosedPorts, Notify, expect_exit, expect_ok, run, tock

SOCKET_ACTIVATE = [sys.executable, str(INTEROP / "socket_activate.py")]
SYSTEMD_SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


# systemd's Type=notify, played by the test: READY=1 once listening, STOPPING=1 on SIGTERM.

def notify_check(procs, notify):
    server = procs.tockd("notify", "--ntp", "127.0.0.1:0", "--clock-source", "local", notify=notify)
    assert f"MAINPID={server.pid}" in server.ready_message.split("\n"), server.ready_message
    # READY means serving: a query must be answered now.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as q:
        q.settimeout(1)
        q.sendto(bytes([0x23]) + bytes(39) + os.urandom(8), ("127.0.0.1", server.port("ntp")))
        assert len(q.recv(100)) == 48
    server.signal(signal.SIGTERM)
    server.notify.wait_for("STOPPING=1", server, timeout=5)
    assert server.popen.wait(timeout=5) == 0


def test_sd_notify_ready_and_stopping_on_a_path_socket(procs, tmp_path):
    notify_check(procs, Notify(tmp_path / "notify"))


def test_sd_notify_ready_and_stopping_on_an_abstract_socket(procs):
    notify_check(procs, Notify())


# systemd-socket-activate.

def start_systemd_socket_activate(procs, name, spec, ssa_args, tockd_args):
    """tockd behind systemd-socket-activate, which holds the socket `spec` (bound on port 0 by
    socket_activate.py) until the first request; returns (tockd, port)."""
    notify = Notify()
    server = procs.tockd(name, *tockd_args, wait=False, notify=notify, prefix=[
        *SOCKET_ACTIVATE, spec, SYSTEMD_SOCKET_ACTIVATE, *ssa_args, "-E", f"NOTIFY_SOCKET={notify.env_value}"])
    m = server.log.wait_for(r"^Listening on 127\.0\.0\.1:(\d+) as 3\.$", proc=server)
    return server, int(m[1])


@pytest.fixture(scope="module")
def ssa_ntp(module_procs):
    return start_systemd_socket_activate(module_procs, "sa-ntp", "udp:127.0.0.1:0", ["--datagram", "--fdname=ntp"],
                                         ["--clock-source", "local", "--stratum", "4"])


def test_systemd_socket_activate_datagram_fdname_ntp_first_query_starts_tockd_which_answers(ssa_ntp):
    server, port = ssa_ntp
    r = expect_ok(tock("query", f"127.0.0.1:{port}", "--timeout", "5", "--json"))
    d = json.loads(r.stdout)
    assert d["synchronized"] and d["stratum"] == 4, d


def test_tockd_logs_the_socket_as_inherited_from_systemd_and_binds_nothing_else(ssa_ntp):
    server, port = ssa_ntp
    # The first query (above, or this one) started tockd.
    expect_ok(tock("query", f"127.0.0.1:{port}", "--timeout", "5"))
    server.wait_ready()
    log = server.log.text()
    assert re.search(rf"address=127\.0\.0\.1:{port} fd=3 fd_name=ntp service=ntp transport=udp "
                     r".*listening on a socket inherited from systemd", log), log
    assert server.log.count("listening") == 1, log


def test_systemd_socket_activate_fdname_daytime_over_the_inherited_tcp_socket(procs):
    server, port = start_systemd_socket_activate(procs, "sa-daytime", "tcp:127.0.0.1:0", ["--fdname=daytime"],
                                                 ["--clock-source", "local", "--daytime-format", "hms"])
    r = expect_ok(tock("query", f"127.0.0.1:{port}", "--protocol", "daytime", "--tcp", "--timeout", "5"))
    assert HMS_LINE.search(r.stdout), r.stdout


# UDP and TCP together through socket_activate.py. As root, NTP's socket is 127.0.0.1:123,
# assigned by port (its name is the unit's, tockd.socket), and tockd runs as nobody: a
# privileged port with no privilege. Otherwise NTP's socket is named ntp, on a port of its own.

@pytest.fixture(scope="module")
def not_served():
    """A port tockd is told to serve (--ntp) but must not: held here, it refuses."""
    ports = ClosedPorts()
    yield ports.udp
    ports.close()


@pytest.fixture(scope="module")
def sa_mix(module_procs, not_served):
    ntp = ["--user", "nobody", "udp:127.0.0.1:123"] if IS_ROOT else ["udp:127.0.0.1:0=ntp"]
    return module_procs.tockd("sa-mix", "--clock-source", "local", "--daytime-format", "hms", "--workers", "2",
                              "--ntp", f"127.0.0.1:{not_served}", prefix=[
                                  *SOCKET_ACTIVATE, *ntp, "tcp:127.0.0.1:0=daytime", "udp:127.0.0.1:0=time",
                                  "udp:[::]:0=ntp"])


def test_inherited_udp_127_0_0_1_ntp_socket_assigned_by_port_serves_ntp(sa_mix):
    ntp = sa_mix.listener("ntp", fd=3)
    if IS_ROOT:
        assert ntp.port == 123 and ntp.fd_name == "tockd.socket", ntp
    expect_ok(tock("query", f"127.0.0.1:{ntp.port}"))


def test_inherited_tcp_socket_named_daytime_serves_daytime(sa_mix):
    r = expect_ok(tock("query", sa_mix.addr("daytime", fd_name="daytime", transport="tcp"), "--protocol", "daytime", "--tcp"))
    assert HMS_LINE.search(r.stdout), r.stdout


def test_no_daytime_over_udp_where_only_tcp_was_inherited(sa_mix):
    expect_exit(tock("query", sa_mix.addr("daytime", fd_name="daytime"), "--protocol", "daytime", "--timeout", "0.5"), 7)


def test_inherited_udp_socket_named_time_serves_time_rdate(sa_mix):
    expect_ok(run(["rdate", "-p", "-u", "-o", sa_mix.port("time", fd_name="time"), "127.0.0.1"]))


def test_inherited_dual_stack_wildcard_answers_ipv4_from_the_address_asked_and_ipv6(sa_mix):
    port = sa_mix.port("ntp", "::")
    expect_ok(tock("query", f"127.0.0.9:{port}"))
    expect_ok(tock("query", f"[::1]:{port}"))


def test_inherited_sockets_replace_the_listener_flags_and_tockd_says_so(sa_mix, not_served):
    assert "ignored: serving the 4 sockets inherited from systemd" in sa_mix.log.text(), sa_mix.log.text()
    r = tock("query", f"127.0.0.1:{not_served}", "--timeout", "0.5")
    assert r.returncode != 0, f"--ntp 127.0.0.1:{not_served} is served:\n{r.stdout}"


def test_roughtime_beside_inherited_sockets_binds_nothing_of_its_own_and_tockd_says_so(procs, tmp_path):
    """--roughtime is a listener like every other: beside sockets from systemd it binds nothing.
    Its port is held here, so a bind would fail and tockd would not start."""
    seed = tmp_path / "roughtime.key"
    seed.write_text(os.urandom(32).hex() + "\n")
    os.chmod(seed, 0o600)
    held = ClosedPorts()
    try:
        server = procs.tockd("sa-roughtime", "--clock-source", "local", "--roughtime", f"127.0.0.1:{held.udp}",
                             "--roughtime-key", str(seed), prefix=[*SOCKET_ACTIVATE, "udp:127.0.0.1:0=ntp"])
        log = server.log.text()
        assert "ignored: serving the 1 socket inherited from systemd" in log, log
        assert not [l for l in server.listeners if l.service == "roughtime"], log
        assert "Roughtime delegation" not in log, log
        expect_ok(tock("query", f"127.0.0.1:{server.listener('ntp', fd=3).port}"))
    finally:
        held.close()


@pytest.mark.skipif(not IS_ROOT, reason="as root only: socket activation drops to nobody")
def test_every_thread_of_the_socket_activated_tockd_runs_as_uid_65534_with_no_capabilities(sa_mix):
    lines = [line for f in glob.glob(f"/proc/{sa_mix.pid}/task/*/status") for line in open(f)
             if line.startswith(("Uid:", "CapEff:", "CapPrm:"))]
    assert len(lines) >= 9, lines
    assert all(line.split()[1:] == ["65534"] * 4 for line in lines if line.startswith("Uid:")), lines
    assert all(int(line.split()[1], 16) == 0 for line in lines if line.startswith("Cap")), lines


def test_idle_workers_on_the_inherited_non_blocking_sockets_sleep(sa_mix):
    def cpu():
        with open(f"/proc/{sa_mix.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    a = cpu()
    time.sleep(1)  # the measurement window
    b = cpu()
    assert b - a < 0.3, f"{b - a:.2f} s of CPU in 1 s idle"


def test_sigterm_stops_the_socket_activated_tockd_cleanly(sa_mix):
    # Stops sa_mix: the last test to use it.
    sa_mix.signal(signal.SIGTERM)
    assert sa_mix.popen.wait(timeout=5) == 0
    assert "tockd stopped" in sa_mix.log.text(), sa_mix.log.text()


def test_listen_pid_of_another_process_tockd_ignores_listen_fds_and_binds_its_flags(procs):
    server = procs.tockd("sa-other", "--ntp", "127.0.0.1:0", "--clock-source", "local",
                         env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    expect_ok(tock("query", server.addr("ntp")))
    assert server.stop() == 0


# What systemd would never pass, or a unit tockd cannot serve: exit 1, naming the fd and the fix.
# Each runs once (module fixtures); one test checks the exit status, the next the message.

def refused(*argv):
    return run(argv, timeout=30)


@pytest.fixture(scope="module")
def regular_file():
    return refused(*SOCKET_ACTIVATE, "file:/etc/hostname", TOCKD, "--clock-source", "local")


def test_socket_activation_a_regular_file_at_fd_3_is_refused(regular_file):
    expect_exit(regular_file, 1)


def test_socket_activation_regular_file_message_names_fd_3_and_what_it_is(regular_file):
    assert "socket activation: fd 3 is a regular file, not a socket" in regular_file.stdout, regular_file.stdout


@pytest.fixture(scope="module")
def unix_socket(tmp_path_factory):
    path = tmp_path_factory.mktemp("sa-unix") / "sa.sock"
    return refused(*SOCKET_ACTIVATE, f"unix:{path}=ntp", TOCKD, "--clock-source", "local")


def test_socket_activation_a_unix_domain_socket_is_refused(unix_socket):
    expect_exit(unix_socket, 1)


def test_socket_activation_unix_socket_message_names_fd_3_and_its_family(unix_socket):
    assert "socket activation: fd 3 is a Unix-domain socket; tockd serves IPv4 and IPv6 only" in unix_socket.stdout, \
        unix_socket.stdout


@pytest.fixture(scope="module")
def ntp_over_tcp():
    return refused(*SOCKET_ACTIVATE, "udp:127.0.0.1:0=time", "tcp:127.0.0.1:0=ntp", TOCKD, "--clock-source", "local")


def test_socket_activation_ntp_over_tcp_is_refused(ntp_over_tcp):
    expect_exit(ntp_over_tcp, 1)


def test_socket_activation_ntp_over_tcp_message_names_fd_4_and_the_fix(ntp_over_tcp):
    assert re.search(r'socket activation: fd 4 \(TCP 127\.0\.0\.1:[1-9][0-9]*, name "ntp"\) is a TCP socket, '
                     r"but NTP is served over UDP only", ntp_over_tcp.stdout), ntp_over_tcp.stdout


@pytest.fixture(scope="module")
def listen_fds_many():
    return refused("bash", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=many; exec "$0" --clock-source local', TOCKD)


def test_socket_activation_listen_fds_many_is_refused(listen_fds_many):
    expect_exit(listen_fds_many, 1)


def test_socket_activation_listen_fds_many_message_quotes_it(listen_fds_many):
    assert "socket activation: LISTEN_FDS=many is not a number" in listen_fds_many.stdout, listen_fds_many.stdout


@pytest.fixture(scope="module")
def listen_fds_closed():
    return refused("bash", "-c", 'exec 3>&- 4>&-; export LISTEN_PID=$$ LISTEN_FDS=2; exec "$0" --clock-source local',
                   TOCKD)


def test_socket_activation_listen_fds_2_with_nothing_open_at_fd_3_and_4_is_refused(listen_fds_closed):
    expect_exit(listen_fds_closed, 1)


def test_socket_activation_closed_fds_message_names_fd_3(listen_fds_closed):
    assert "socket activation: fd 3 is not open" in listen_fds_closed.stdout, listen_fds_closed.stdout
