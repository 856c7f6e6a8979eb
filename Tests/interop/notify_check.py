#!/usr/bin/env python3
"""Plays systemd's part of Type=notify: starts tockd with NOTIFY_SOCKET pointing at a socket of
its own (a path, or an abstract name with --abstract) and checks READY=1 once tockd listens and
STOPPING=1 after SIGTERM.

Usage: notify_check.py TOCKD_BINARY [--abstract]
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

tockd = sys.argv[1]
abstract = "--abstract" in sys.argv
tmp = tempfile.mkdtemp()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if abstract:
    name = f"tock-notify-{os.getpid()}"
    s.bind("\0" + name)
    env_value = "@" + name
else:
    path = os.path.join(tmp, "notify")
    s.bind(path)
    env_value = path
s.settimeout(5)
env = dict(os.environ, NOTIFY_SOCKET=env_value)
proc = subprocess.Popen([tockd, "--ntp", "127.0.0.1:12190", "--clock-source", "local"], env=env, stderr=subprocess.PIPE)
try:
    ready = s.recv(4096).decode()
    assert "READY=1" in ready, ready
    assert f"MAINPID={proc.pid}" in ready, ready
    # READY means serving: a query must be answered now.
    q = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    q.settimeout(1)
    q.sendto(bytes([0x23]) + bytes(39) + os.urandom(8), ("127.0.0.1", 12190))
    assert len(q.recv(100)) == 48
    proc.send_signal(signal.SIGTERM)
    stopping = s.recv(4096).decode()
    assert "STOPPING=1" in stopping, stopping
    assert proc.wait(timeout=5) == 0
    print("READY=1 after binding, STOPPING=1 on SIGTERM:", ready.replace("\n", "; "))
finally:
    if proc.poll() is None:
        proc.kill()
