#!/usr/bin/env python3
"""Serves and queries across the NTP era rollover (2036-02-07 06:28:16 UTC) and the 32-bit
time_t rollover (2038-01-19 03:14:08 UTC) end to end, by stepping the host clock to just before
each instant under a running tockd.

Usage (root, CAP_SYS_TIME): era_step.py TOCK_BINARY NTP_PORT TIME_PORT
tockd must serve NTP and Time on 127.0.0.1 with --clock-source local. The clock is restored from
CLOCK_MONOTONIC at the end, whatever happens. Prints "N passed, N failed".
"""
import json
import signal
import subprocess
import sys
import time

tock, ntp_port, time_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def query(*args):
    out = subprocess.run([tock, "query", *args, "--json"], capture_output=True, text=True, timeout=10)
    try:
        return json.loads(out.stdout), out.stdout + out.stderr
    except ValueError:
        return None, out.stdout + out.stderr


# SIGTERM and SIGINT end the script through the `finally` below, which puts the clock back.
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda number, frame: sys.exit(128 + number))
real0 = time.clock_gettime(time.CLOCK_REALTIME)
mono0 = time.clock_gettime(time.CLOCK_MONOTONIC)
try:
    for name, rollover in (("NTP era 1 (2036-02-07 06:28:16 UTC)", 2085978496), ("32-bit time_t (2038-01-19 03:14:08 UTC)", 2147483648)):
        time.clock_settime(time.CLOCK_REALTIME, rollover - 1.5)
        worst_ntp = worst_time = 0.0
        ok_ntp = ok_time = True
        seen = []
        deadline = time.clock_gettime(time.CLOCK_MONOTONIC) + 3.5
        while time.clock_gettime(time.CLOCK_MONOTONIC) < deadline:
            d, raw = query(f"127.0.0.1:{ntp_port}")
            if not d or not d.get("synchronized"):
                ok_ntp = False
                print("     " + raw.strip())
            else:
                worst_ntp = max(worst_ntp, abs(d["offset"]))
                seen.append(d["time"][:19])
            t, raw = query(f"127.0.0.1:{time_port}", "--protocol", "time")
            if not t:
                ok_time = False
                print("     " + raw.strip())
            else:
                worst_time = max(worst_time, abs(t["offset"]))
            time.sleep(0.25)
        print(f"     {name}: server times {seen[0] if seen else '-'} … {seen[-1] if seen else '-'}")
        check(f"NTP across {name}: every answer valid, worst |offset| {worst_ntp * 1e6:.0f} µs < 1 ms", ok_ntp and worst_ntp < 1e-3)
        check(f"Time (RFC 868) across {name}: every answer within 1.5 s (worst {worst_time:.2f} s)", ok_time and worst_time < 1.5)
finally:
    elapsed = time.clock_gettime(time.CLOCK_MONOTONIC) - mono0
    time.clock_settime(time.CLOCK_REALTIME, real0 + elapsed)
    print(f"     clock restored (stepped for {elapsed:.1f} s)")
print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
