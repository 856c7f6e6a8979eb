"""End-to-end tests of the built tockd and tock against real clients: the seed's client, Python's
ntplib, rdate, systemd-socket-activate, the validators in Tests/interop, and tock itself.

Every tockd listens on port 0 and is ready when it says so: it sends READY=1 to the
NOTIFY_SOCKET the fixture made (sd_notify(3)), after which its `listening` lines name the ports
the kernel chose. Every process a test starts is ended by its PID when the fixture that started
it is torn down, also when the test fails.

Environment: TOCK_BIN, the directory holding tockd and tock (default .build/debug, relative to
the repository root). Run through scripts/e2e, which prints `e2e: N passed, N failed` last.
"""
import importlib.metadata
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("TOCK_BIN", ".build/debug"))
if not BIN.is_absolute():
    BIN = REPO / BIN
TOCKD = str(BIN / "tockd")
TOCK = str(BIN / "tock")
INTEROP = REPO / "Tests" / "interop"
SEED = REPO / "Tests" / "e2e" / "seed_client.py"
IS_ROOT = os.geteuid() == 0

# Bounds that only a broken server reaches: a healthy tockd is ready within milliseconds.
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# Every process run to completion is killed (by PID, by subprocess.run) past this.
RUN_TIMEOUT = 120.0

# `HH:MM:SS` as Daytime's hms format and tock's daytime line show it.
HMS_LINE = re.compile(r"daytime +[0-9]{2}:[0-9]{2}:[0-9]{2}$", re.M)

_SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")


def clean_env(**extra):
    """This process's environment without the systemd variables a service manager may have set
    for it, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
    env.update(extra)
    return env


def run(argv, timeout=RUN_TIMEOUT, env=None, **kwargs):
    """Runs argv to completion (killed past `timeout`) and returns the CompletedProcess, with
    stdout and stderr together in `.stdout`."""
    return subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=clean_env() if env is None else env, **kwargs)


def tock(*args, timeout=RUN_TIMEOUT):
    return run([TOCK, *args], timeout=timeout)


def tockd_run(*args, timeout=RUN_TIMEOUT, env=None):
    """tockd run to completion: for the invocations that must exit by themselves."""
    return run([TOCKD, *args], timeout=timeout, env=env)


def interop(script, *args, timeout=RUN_TIMEOUT):
    return run([sys.executable, INTEROP / script, *args], timeout=timeout)


def expect_exit(result, code):
    """Asserts the exit status, showing the output when it differs."""
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{result.stdout}"
    return result


def expect_ok(result):
    return expect_exit(result, 0)


def hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_until(condition, timeout, what, interval=0.005):
    """Polls `condition` until it returns something true, which it returns; fails past `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


class Log:
    """A process's output file, read as it grows; counts lines containing a string, as
    `grep -c` does, without reading the file again from the start."""

    def __init__(self, path):
        self.path = Path(path)
        self._offset = 0
        self._tail = b""
        self._lines = []
        self._counts = {}

    def lines(self):
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        *complete, self._tail = (self._tail + chunk).split(b"\n")
        self._lines.extend(line.decode(errors="replace") for line in complete)
        return self._lines

    def text(self):
        return "\n".join(self.lines() + [self._tail.decode(errors="replace")])

    def count(self, needle):
        lines = self.lines()
        seen, scanned = self._counts.get(needle, (0, 0))
        seen += sum(needle in line for line in lines[scanned:])
        self._counts[needle] = (seen, len(lines))
        return seen

    def wait_for(self, pattern, timeout=READY_TIMEOUT, proc=None):
        """Waits until a line matches the regular expression `pattern`; returns the match."""
        regex = re.compile(pattern)

        def found():
            for line in self.lines():
                m = regex.search(line)
                if m:
                    return m
            if proc is not None and proc.popen.poll() is not None:
                raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}) before logging /{pattern}/:\n{self.text()}")
            return None

        return wait_until(found, timeout, f"/{pattern}/ in {self.path}:\n{self.text()}", interval=0.01)


_ALL_PROCESSES = []


class Proc:
    """A background process whose output goes to NAME.log; stop() ends it by PID."""

    def __init__(self, name, argv, log_dir, env=None, **popen_kwargs):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = Log(Path(log_dir) / f"{name}.log")
        with open(self.log.path, "wb") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=clean_env() if env is None else env, **popen_kwargs)
        self.pid = self.popen.pid
        _ALL_PROCESSES.append(self)

    def running(self):
        return self.popen.poll() is None

    def signal(self, sig):
        self.popen.send_signal(sig)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL past `timeout`; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


class Notify:
    """The service manager's end of sd_notify(3): a Unix datagram socket, abstract by default (no
    file, no permission to grant a tockd that dropped to another user), or at `path`."""

    _names = itertools.count()

    def __init__(self, path=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"tock-e2e-{os.getpid()}-{next(self._names)}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.messages = []

    def wait_for(self, field, proc, timeout=READY_TIMEOUT):
        """The first message (since the last one returned) containing the line `field`, e.g.
        READY=1; fails if `proc` exits first or past `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.messages):
                if field in message.split("\n"):
                    del self.messages[: i + 1]
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {field} from {proc.name} within {timeout} s:\n{proc.log.text()}")
            self.sock.settimeout(min(0.2, remaining))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                if proc.popen.poll() is not None:
                    raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}) before {field}:\n{proc.log.text()}") from None

    def close(self):
        self.sock.close()


@dataclass
class Listener:
    service: str
    transport: str
    host: str
    port: int
    fd: int | None
    fd_name: str | None


_LISTENING = re.compile(r" tockd: (?P<meta>.*) \[TockServer\] listening( on a socket inherited from systemd)?$")
_ADDRESS = re.compile(r"\[(?P<v6>[^\]]*)\]:(?P<p6>\d+)|(?P<v4>[^:]+):(?P<p4>\d+)")


def parse_listeners(lines):
    """The listeners a tockd named in its `listening` lines."""
    found = []
    for line in lines:
        m = _LISTENING.search(line)
        if not m:
            continue
        meta = dict(token.split("=", 1) for token in m["meta"].split() if "=" in token)
        a = _ADDRESS.fullmatch(meta["address"])
        host, port = (a["v6"], a["p6"]) if a["v6"] is not None else (a["v4"], a["p4"])
        found.append(Listener(meta["service"], meta["transport"], host, int(port),
                              int(meta["fd"]) if "fd" in meta else None, meta.get("fd_name")))
    return found


class Tockd(Proc):
    """A tockd (possibly behind a prefix that execs it, so that its PID is tockd's) with a
    NOTIFY_SOCKET of its own."""

    def __init__(self, name, argv, log_dir, env=None, notify=None):
        self.notify = notify or Notify()
        super().__init__(name, argv, log_dir, env=clean_env(**(env or {}), NOTIFY_SOCKET=self.notify.env_value))
        self.ready_message = None
        self.handles_sighup = False

    def wait_ready(self, timeout=READY_TIMEOUT):
        self.ready_message = self.notify.wait_for("READY=1", self, timeout)
        return self.ready_message

    @property
    def listeners(self):
        return parse_listeners(self.log.lines())

    def listener(self, service, host="127.0.0.1", **match):
        for l in self.listeners:
            if l.service == service and (host is None or l.host == host) and all(getattr(l, k) == v for k, v in match.items()):
                return l
        raise AssertionError(f"{self.name}: no {service} listener on {host} {match or ''}:\n{self.log.text()}")

    def port(self, service, host="127.0.0.1", **match):
        return self.listener(service, host, **match).port

    def addr(self, service, host="127.0.0.1", **match):
        """HOST:PORT of a listener, as tock takes it ([v6]:PORT for IPv6)."""
        return hostport(host, self.port(service, host, **match))

    def wait_metrics(self):
        """The metrics endpoint runs beside the server and may log after READY=1."""
        m = self.log.wait_for(r"address=(\S+) .*service=metrics transport=tcp .*listening$", proc=self)
        return m[1]

    def catches(self, signum):
        """Whether tockd has a handler for `signum` (SigCgt in /proc/PID/status)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
        return False

    def reload(self, expect="configuration reloaded", timeout=READY_TIMEOUT):
        """SIGHUP, then waits for the log line that says how the reload ended.

        READY=1 comes from the server, which runs beside the reload service; until that service
        has its SIGHUP handler, tockd ignores the signal (CHECKS.md, "SIGHUP right after
        READY=1"). So the first SIGHUP waits until /proc says tockd catches it (SigCgt)."""
        if not self.handles_sighup:
            self.handles_sighup = wait_until(lambda: self.catches(signal.SIGHUP), timeout, f"{self.name} handles SIGHUP")
        before = self.log.count(expect)
        self.signal(signal.SIGHUP)
        wait_until(lambda: self.log.count(expect) > before, timeout,
                   f"'{expect}' after SIGHUP to {self.name}:\n{self.log.text()[-3000:]}")

    def stop(self, timeout=STOP_TIMEOUT):
        try:
            return super().stop(timeout)
        finally:
            self.notify.close()


class Processes:
    """Starts processes for one fixture and ends them all, by PID, at its teardown."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.started = []

    def unique(self, name):
        """`name`, or name-2, name-3...: each process has a log file of its own."""
        taken = {p.name for p in self.started}
        candidate, n = name, 1
        while candidate in taken or (self.dir / f"{candidate}.log").exists():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def tockd(self, name, *args, prefix=(), env=None, notify=None, wait=True):
        """Starts `[*prefix, tockd, *args]` and, with `wait`, returns once it sent READY=1 to
        `notify` (by default a Notify of its own)."""
        proc = Tockd(self.unique(name), [*prefix, TOCKD, *args], self.dir, env=env, notify=notify)
        self.started.append(proc)
        if wait:
            proc.wait_ready()
        return proc

    def spawn(self, name, argv, env=None, **popen_kwargs):
        proc = Proc(self.unique(name), argv, self.dir, env=env, **popen_kwargs)
        self.started.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def procs(tmp_path):
    p = Processes(tmp_path)
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def module_procs(request, tmp_path_factory):
    p = Processes(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    yield p
    p.stop_all()


@pytest.fixture(scope="session")
def session_procs(tmp_path_factory):
    p = Processes(tmp_path_factory.mktemp("session"))
    yield p
    p.stop_all()


@pytest.fixture(scope="session")
def sync_server(session_procs):
    """A synchronised server (the local clock declared authoritative), stratum 3."""
    return session_procs.tockd("sync", "--ntp", "127.0.0.1:0", "--ntp", "[::1]:0", "--daytime", "127.0.0.1:0",
                               "--daytime-format", "hms", "--time", "127.0.0.1:0", "--clock-source", "local", "--stratum", "3")


@pytest.fixture(scope="session")
def unsync_server(session_procs):
    """An unsynchronised server: NTP says leap 3 / stratum 0, Daytime and Time stay silent."""
    return session_procs.tockd("unsync", "--ntp", "127.0.0.1:0", "--daytime", "127.0.0.1:0", "--time", "127.0.0.1:0",
                               "--clock-source", "unsynchronized")


class ClosedPorts:
    """Ports on 127.0.0.1 that refuse, held for the test so that nothing else takes them: a TCP
    socket bound but not listening (a SYN gets a reset) and a UDP socket connected to itself
    (the kernel delivers it only its own datagrams, so others get ICMP port unreachable)."""

    def __init__(self):
        self.tcp_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp_sock.bind(("127.0.0.1", 0))
        self.udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp_sock.bind(("127.0.0.1", 0))
        self.udp_sock.connect(self.udp_sock.getsockname())
        self.tcp = self.tcp_sock.getsockname()[1]
        self.udp = self.udp_sock.getsockname()[1]

    def close(self):
        self.tcp_sock.close()
        self.udp_sock.close()


@pytest.fixture
def closed_ports():
    ports = ClosedPorts()
    yield ports
    ports.close()


def pytest_sessionstart(session):
    if not (os.access(TOCKD, os.X_OK) and os.access(TOCK, os.X_OK)):
        pytest.exit(f"build first: swift build (missing {TOCKD} or {TOCK})", returncode=1)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.verbosity < 0:
        # -q hides the report header, which names the peers; say it anyway.
        for line in pytest_report_header(session.config):
            reporter.write_line(line)


def pytest_configure(config):
    # SIGTERM ends the run the way Ctrl-C does, so that every fixture still stops its processes.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_unconfigure(config):
    # A last resort for an interrupted run: nothing started here outlives it.
    for proc in _ALL_PROCESSES:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait()


def pytest_report_header(config):
    try:
        ntplib_version = importlib.metadata.version("ntplib")
    except importlib.metadata.PackageNotFoundError:
        ntplib_version = "missing"
    try:
        rdate = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rdate"], capture_output=True, text=True).stdout
    except OSError:
        rdate = ""
    user = "" if IS_ROOT else "; not root, so socket activation runs unprivileged with NTP on a port of its own, not 123"
    return [f"peers: Python {sys.version.split()[0]}, ntplib {ntplib_version}, rdate {rdate or '?'}; binaries {BIN}{user}"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    # Outermost wrapper: runs after the terminal reporter's summary, so this is the last line.
    result = yield
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        stats = reporter.stats
        passed = sum(1 for r in stats.get("passed", []) if getattr(r, "when", "call") == "call")
        failed = len(stats.get("failed", [])) + len(stats.get("error", []))
        reporter.write_line(f"e2e: {passed} passed, {failed} failed")
    return result
