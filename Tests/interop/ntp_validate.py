#!/usr/bin/env python3
"""An independent NTP load generator and validator (standard library only).

Sends bounded bursts of NTPv4/v3 client requests from several sockets, checks every reply as
RFC 5905 requires (mode 4, origin == our transmit, version echoed, T3 >= T2, T2/T3 within 1 s of
the local clock, reply no longer than the request), then sends malformed and non-client
packets and checks that none of them is answered.

Usage: ntp_validate.py HOST PORT [--requests N] [--unsynchronized]
Exit status 0 when every check passed.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time

NTP_DELTA = 2208988800


def ntp_to_unix(raw):
    seconds = raw >> 32
    fraction = raw & 0xFFFFFFFF
    now = time.time() + NTP_DELTA
    # Era: the value nearest now.
    era_base = int(now) - (int(now) % (1 << 32))
    candidates = [era_base - (1 << 32) + seconds, era_base + seconds, era_base + (1 << 32) + seconds]
    s = min(candidates, key=lambda c: abs(c - now))
    return s - NTP_DELTA + fraction / 2**32


def request(version=4, mode=3, transmit=None):
    first = (0 << 6) | (version << 3) | mode
    body = struct.pack("!B B b b I I I Q Q Q", first, 0, 6, -20, 0, 0, 0, 0, 0, 0)
    t = transmit if transmit is not None else struct.unpack("!Q", os.urandom(8))[0] | 1
    return body + struct.pack("!Q", t), t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--unsynchronized", action="store_true", help="expect leap 3 / stratum 0")
    args = ap.parse_args()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    passed = failed = 0
    problems = {}

    def fail(what):
        nonlocal failed
        failed += 1
        problems[what] = problems.get(what, 0) + 1

    # 1. Valid requests, 8 sockets, windows of 32 outstanding requests each, bounded in time.
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(8)]
    for s in socks:
        s.connect((args.host, args.port))
        s.setblocking(False)
    outstanding = {}
    sent = 0
    answered = 0
    deadline = time.time() + 30
    while (sent < args.requests or outstanding) and time.time() < deadline:
        for s in socks:
            while sent < args.requests and sum(1 for k in outstanding if k[0] == s.fileno()) < 32:
                version = 4 if sent % 4 else 3
                pkt, t = request(version=version)
                s.send(pkt)
                outstanding[(s.fileno(), t)] = (version, len(pkt))
                sent += 1
        ready, _, _ = select.select(socks, [], [], 1.0)
        if not ready:
            break
        for s in ready:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                now = time.time()
                if len(data) < 48:
                    fail("short reply")
                    continue
                first, stratum = data[0], data[1]
                origin, recv, xmit = struct.unpack("!QQQ", data[24:48])
                key = (s.fileno(), origin)
                if key not in outstanding:
                    fail("origin does not match any request (bogus)")
                    continue
                version, req_len = outstanding.pop(key)
                answered += 1
                ok = True
                if len(data) > req_len:
                    fail("reply longer than request"); ok = False
                if first & 7 != 4:
                    fail("mode is not 4"); ok = False
                if (first >> 3) & 7 != version:
                    fail("version not echoed"); ok = False
                leap = first >> 6
                if args.unsynchronized:
                    if leap != 3 or stratum != 0:
                        fail("unsynchronised server did not send leap 3 / stratum 0"); ok = False
                else:
                    if leap == 3 or not 1 <= stratum <= 15:
                        fail("synchronised server sent leap 3 or bad stratum"); ok = False
                if recv == 0 or xmit == 0:
                    fail("zero timestamp"); ok = False
                elif xmit < recv:
                    fail("T3 < T2"); ok = False
                else:
                    for ts in (recv, xmit):
                        if abs(ntp_to_unix(ts) - now) > 1.0:
                            fail("timestamp more than 1 s from local clock"); ok = False
                            break
                if ok:
                    passed += 1
    lost = len(outstanding)
    if lost > args.requests // 100:
        fail(f"more than 1% of requests unanswered ({lost})")
    for s in socks:
        s.close()

    # 2. Packets that must not be answered.
    probe = socket.socket(family, socket.SOCK_DGRAM)
    probe.connect((args.host, args.port))
    good, _ = request()
    bad = {
        "empty": b"",
        "1 byte": b"\x23",
        "47 bytes": good[:47],
        "49 bytes": good + b"\x00",
        "51 bytes": good + b"\x00" * 3,
        "version 0": bytes([0x03]) + good[1:],
        "version 5": bytes([0x2B]) + good[1:],
        "version 7": bytes([0x3B]) + good[1:],
        "mode 1": bytes([0x21]) + good[1:],
        "mode 2": bytes([0x22]) + good[1:],
        "mode 4": bytes([0x24]) + good[1:],
        "mode 5": bytes([0x25]) + good[1:],
        "mode 6 control": bytes([0x16, 0x02, 0x00, 0x01]) + b"\x00" * 8,
        "mode 7 monlist": bytes([0x17, 0x00, 0x03, 0x2A]) + b"\x00" * 44,
        "ext field length 0": good + struct.pack("!HH", 0x0104, 0) + b"\x00" * 12,
        "ext field length 18": good + struct.pack("!HH", 0x0104, 18) + b"\x00" * 14,
        "ext field past end": good + struct.pack("!HH", 0x0104, 64) + b"\x00" * 28,
        "ext field 0xffff": good + struct.pack("!HH", 0x0104, 0xFFFF) + b"\x00" * 28,
    }
    for name, pkt in bad.items():
        probe.send(pkt)
        r, _, _ = select.select([probe], [], [], 0.15)
        if r:
            probe.recv(2048)
            fail(f"answered malformed/non-client packet: {name}")
        else:
            passed += 1
    probe.send(good)
    r, _, _ = select.select([probe], [], [], 1.0)
    if r and len(probe.recv(2048)) == 48:
        passed += 1
    else:
        fail("no answer to a good request after the bad ones")
    probe.close()

    print(f"ntp_validate: {sent} requests, {answered} answered, {lost} unanswered")
    for what, n in sorted(problems.items()):
        print(f"  FAIL {what}: {n}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
