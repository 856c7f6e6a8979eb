#!/usr/bin/env python3
"""Steps the host clock under a running tockd and checks service and rate limiting.

Usage (root, CAP_SYS_TIME): clock_step.py TOCK_BINARY PORT
tockd must listen on 127.0.0.1:PORT with --rate-limit --rate-limit-interval 1
--rate-limit-burst 1 --rate-limit-leak 0 (one response per 2 s). The clock is stepped forward
one day, then back to one hour before the start, and always restored from CLOCK_MONOTONIC at
the end, whatever happens. Prints "N passed, N failed".
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

tock, port = sys.argv[1], int(sys.argv[2])
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def request_from(address):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.settimeout(0.3)
    s.sendto(bytes([0x23]) + bytes(39) + os.urandom(8), ("127.0.0.1", port))
    try:
        return len(s.recv(100)) == 48
    except socket.timeout:
        return False
    finally:
        s.close()


def query():
    out = subprocess.run([tock, "query", f"127.0.0.1:{port}", "--json"], capture_output=True, text=True, timeout=10)
    try:
        d = json.loads(out.stdout)
    except ValueError:
        return None, out.stderr
    return d, out.stdout


# SIGTERM and SIGINT end the script through the `finally` below, which puts the clock back.
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda number, frame: sys.exit(128 + number))
real0 = time.clock_gettime(time.CLOCK_REALTIME)
mono0 = time.clock_gettime(time.CLOCK_MONOTONIC)
try:
    check("before: first request from 127.0.0.80 answered", request_from("127.0.0.80"))
    check("before: second request is limited", not request_from("127.0.0.80"))

    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + 86400)
    d, raw = query()
    check("clock stepped forward 1 day: tock query valid, |offset| < 1 ms", d is not None and d.get("synchronized") and abs(d["offset"]) < 1e-3, raw)
    check("clock stepped forward 1 day: the limit is not reset (a day of wall time is not earned)", not request_from("127.0.0.80"))

    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) - 86400 - 3600)
    check("clock stepped back 1 h: the limit still holds at once", not request_from("127.0.0.80"))
    # Wait one interval of real time (every client here, 127.0.0.1 too, earns a token).
    time.sleep(2.5)
    check("clock stepped back: the limit is not stuck (a token is earned 2 s later)", request_from("127.0.0.80"))
    d, raw = query()
    check("clock stepped back to 1 h before: tock query valid, |offset| < 1 ms", d is not None and d.get("synchronized") and abs(d["offset"]) < 1e-3, raw)
finally:
    elapsed = time.clock_gettime(time.CLOCK_MONOTONIC) - mono0
    time.clock_settime(time.CLOCK_REALTIME, real0 + elapsed)
    print(f"     clock restored (stepped for {elapsed:.1f} s)")
print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
