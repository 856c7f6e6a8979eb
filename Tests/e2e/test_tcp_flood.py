"""TCP services stay available while one host, or many, hold thousands of idle connections.

An attacker with one ordinary machine opens thousands of TCP connections to tockd's NTS-KE port
(or its Roughtime-over-TCP port), sends nothing, and re-opens each one the server closes; a
legitimate client meanwhile runs a complete exchange every 0.4 s: NTS-KE over TLS 1.3 with an
independent client (pyOpenSSL, Tests/interop/nts_client.py; a response with eight cookies must
come back), and Roughtime over TCP with `tock query --tcp` (signatures and proof verified). At
least 90 % of the legitimate exchanges must succeed for each service, from one flooding address
and from 200. chronyd's NTS-KE server, under the same flood from one address, is measured beside
it when chronyd is there and the test runs as root (printed, not required). Then tockd stops,
during the flood and with a handshake half done, and its output must hold no error or warning.

Loopback only, bounded: each flood holds at most 4,000 connections for 20 exchanges (about 8 s;
at most 100 s if every exchange ran into its timeout).
"""
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from conftest import INTEROP, IS_ROOT, REPO, expect_ok, tock, wait_until

sys.path.insert(0, str(INTEROP))
import nts_client as nts  # noqa: E402

FLOOD = 4000
EXCHANGES = 20
EVERY = 0.4


class Flood:
    """`count` idle TCP connections to `port`, from `addresses` in turn, each re-opened as soon
    as the server closes it, until stopped."""

    def __init__(self, port, count=FLOOD, addresses=("127.0.0.1",)):
        self.port, self.count, self.addresses = port, count, addresses
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.opened = 0
        self.closed_by_server = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_one(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((self.addresses[i % len(self.addresses)], 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return
        self.selector.register(s, selectors.EVENT_READ, i)
        self.opened += 1

    def run(self):
        for i in range(self.count):
            if self.stopping.is_set():
                break
            self.open_one(i)
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.selector.unregister(s)
                    s.close()
                    self.closed_by_server += 1
                    self.open_one(key.data)

    def __enter__(self):
        self.thread.start()
        time.sleep(1.0)  # let it reach its count
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def legitimate(exchange, count=EXCHANGES):
    """(succeeded, tried): `count` exchanges, one every EVERY seconds (or as soon as the last
    ends, if it took longer)."""
    ok = tried = 0
    for _ in range(count):
        started = time.monotonic()
        tried += 1
        try:
            ok += 1 if exchange() else 0
        except Exception:
            pass
        time.sleep(max(0.0, EVERY - (time.monotonic() - started)))
    return ok, tried


def ke_exchange(port, ca):
    session = nts.ke("127.0.0.1", port, ca)
    return len(session.cookies) == 8


@pytest.fixture(scope="module", autouse=True)
def descriptors():
    """Room for the flood's sockets here and in the servers this test starts (they inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 32768)
    if want < 3 * FLOOD:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for a flood of {FLOOD}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("flood")
    subprocess.run([str(REPO / "scripts" / "throwaway-certificate"), str(directory)], check=True, capture_output=True)
    out = tock("roughtime", "keygen", str(directory / "roughtime.key")).stdout
    public = next(line.split()[-1] for line in out.splitlines() if line.startswith("public key (base64)"))
    return directory, public


@pytest.fixture(scope="module")
def server(module_procs, keys):
    directory, _ = keys
    d = module_procs.tockd("flood", "--ntp", "127.0.0.1:0", "--nts-ke", "127.0.0.1:0", "--nts-certificate", directory / "cert.pem",
                           "--nts-private-key", directory / "key.pem", "--roughtime", "127.0.0.1:0",
                           "--roughtime-key", directory / "roughtime.key", "--clock-source", "local", "--metrics", "127.0.0.1:0")
    d.metrics = d.wait_metrics()
    d.ke = d.port("nts-ke")
    d.roughtime = d.port("roughtime")
    return d


MANY = tuple(f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(200))


@pytest.mark.parametrize("sources", [("127.0.0.1",), MANY], ids=["one-address", "200-addresses"])
def test_nts_ke_stays_available_under_idle_connections(server, keys, sources):
    directory, _ = keys
    with Flood(server.ke, addresses=sources) as flood:
        ok, tried = legitimate(lambda: ke_exchange(server.ke, str(directory / "cert.pem")))
    print(f"\ntockd NTS-KE, {FLOOD} idle connections from {len(sources)} address(es): {ok} of {tried} exchanges "
          f"(the flood opened {flood.opened}, the server closed {flood.closed_by_server})")
    assert ok >= 0.9 * tried, f"{ok} of {tried} NTS-KE exchanges"


@pytest.mark.parametrize("sources", [("127.0.0.1",), MANY], ids=["one-address", "200-addresses"])
def test_roughtime_over_tcp_stays_available_under_idle_connections(server, keys, sources):
    _, public = keys

    def query():
        return tock("query", "--protocol", "roughtime", "--tcp", f"127.0.0.1:{server.roughtime}", "--public-key", public,
                    "--timeout", "2").returncode == 0

    with Flood(server.roughtime, addresses=sources) as flood:
        ok, tried = legitimate(query)
    print(f"\ntockd Roughtime/TCP, {FLOOD} idle connections from {len(sources)} address(es): {ok} of {tried} exchanges "
          f"(the flood opened {flood.opened}, the server closed {flood.closed_by_server})")
    assert ok >= 0.9 * tried, f"{ok} of {tried} Roughtime exchanges"


def test_evictions_are_counted_in_metrics_and_tock_status(server):
    """The floods above closed silent connections to admit others: counted by the cap reached."""
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    evicted = [line for line in metrics.splitlines() if line.startswith("tockd_tcp_connections_evicted_total")]
    full = [line for line in evicted if 'reason="connection_limit"' in line and 'protocol="nts-ke"' in line]
    assert full and float(full[0].rsplit(" ", 1)[1]) > 0, "\n".join(evicted)
    out = expect_ok(tock("status", server.metrics)).stdout
    assert "connections closed to admit another: connection_limit" in out, out


@pytest.mark.skipif(not IS_ROOT or not os.path.exists("/usr/sbin/chronyd"), reason="chronyd's NTS-KE server needs chronyd and root")
def test_chronyds_nts_ke_under_the_same_flood_for_comparison(keys, tmp_path):
    directory, _ = keys
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    ntp_port = probe.getsockname()[1]
    probe2 = socket.socket()
    probe2.bind(("127.0.0.1", 0))
    ke_port = probe2.getsockname()[1]
    probe.close()
    probe2.close()
    conf = tmp_path / "chrony.conf"
    conf.write_text(f"local stratum 1\nallow 127.0.0.0/8\nport {ntp_port}\ncmdport 0\nbindaddress 127.0.0.1\n"
                    f"pidfile {tmp_path}/chronyd.pid\ndriftfile {tmp_path}/drift\n"
                    f"ntsserverkey {directory / 'key.pem'}\nntsservercert {directory / 'cert.pem'}\nntsport {ke_port}\n"
                    f"ntsdumpdir {tmp_path}\nntsprocesses 0\n")
    chronyd = subprocess.Popen(["chronyd", "-d", "-x", "-u", "root", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: subprocess.run(["ss", "-ltn", f"sport = :{ke_port}"], capture_output=True, text=True).stdout.count("LISTEN") > 0,
                   10, "chronyd's NTS-KE listening")
        quiet = ke_exchange(ke_port, str(directory / "cert.pem"))
        with Flood(ke_port):
            ok, tried = legitimate(lambda: ke_exchange(ke_port, str(directory / "cert.pem")))
        print(f"\nchronyd 4.3 NTS-KE, {FLOOD} idle connections from 1 address: {ok} of {tried} exchanges "
              f"(without the flood: {'answered' if quiet else 'not answered'})")
    finally:
        chronyd.send_signal(signal.SIGTERM)
        try:
            chronyd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            chronyd.kill()
            chronyd.wait()


def start_all_tcp(procs, keys, name):
    directory, _ = keys
    return procs.tockd(name, "--ntp", "127.0.0.1:0", "--nts-ke", "127.0.0.1:0", "--nts-certificate", directory / "cert.pem",
                       "--nts-private-key", directory / "key.pem", "--roughtime", "127.0.0.1:0",
                       "--roughtime-key", directory / "roughtime.key", "--daytime", "127.0.0.1:0", "--clock-source", "local")


def stopped_cleanly(d):
    d.signal(signal.SIGTERM)
    assert d.popen.wait(timeout=15) == 0
    text = d.log.text()
    bad = [line for line in text.splitlines()
           if "EventLoop" in line or " error " in line or " warning " in line or " critical " in line or "NIO" in line]
    assert not bad, "\n".join(bad)
    assert "tockd stopped" in text


def test_tockd_stops_cleanly_with_no_connection_open(procs, keys):
    stopped_cleanly(start_all_tcp(procs, keys, "stop-idle"))


def test_tockd_stops_cleanly_with_connections_open(procs, keys):
    d = start_all_tcp(procs, keys, "stop-open")
    held = [socket.create_connection(("127.0.0.1", d.port(service))) for service in ("nts-ke", "roughtime") for _ in range(20)]
    held[0].sendall(b"\x16\x03")  # one has started
    try:
        stopped_cleanly(d)
    finally:
        for s in held:
            s.close()


def test_tockd_stops_cleanly_during_a_flood_and_a_handshake(procs, keys):
    """No NIO error or warning at stop: connections open, a flood running, a handshake half done."""
    directory, _ = keys
    d = start_all_tcp(procs, keys, "stop-flood")
    ke, roughtime = d.port("nts-ke"), d.port("roughtime")
    half = socket.create_connection(("127.0.0.1", ke))
    half.sendall(bytes([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]) + os.urandom(32))  # a ClientHello's first 43 bytes
    try:
        with Flood(ke, count=1000), Flood(roughtime, count=1000):
            assert ke_exchange(ke, str(directory / "cert.pem"))
            stopped_cleanly(d)
    finally:
        half.close()
