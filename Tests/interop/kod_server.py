#!/usr/bin/env python3
"""A minimal NTP responder that answers every client request with a kiss-o'-death.

Usage: kod_server.py HOST PORT CODE [SECONDS]   e.g. kod_server.py 127.0.0.1 12999 RATE
The reply follows RFC 5905 §7.4: leap 3, the request's version, mode 4, stratum 0, the kiss
code in the reference ID and the request's transmit timestamp as origin. It exits after
SECONDS (default 60), so it never outlives a test run.
"""
import socket
import struct
import sys
import time

host, port, code = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
lifetime = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((host, port))
deadline = time.time() + lifetime
while time.time() < deadline:
    s.settimeout(max(0.01, deadline - time.time()))
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        break
    if len(data) < 48 or data[0] & 7 != 3:
        continue
    version = (data[0] >> 3) & 7
    reply = struct.pack("!BBbb", 3 << 6 | version << 3 | 4, 0, data[2], -20)
    reply += struct.pack("!II", 0, 0) + code[:4].ljust(4, b"\0")
    reply += b"\0" * 8 + data[40:48] + b"\0" * 16
    s.sendto(reply, peer)
