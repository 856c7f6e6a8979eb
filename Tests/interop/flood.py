#!/usr/bin/env python3
"""Bounded floods against a tockd on loopback, for the rate limiter and its memory bound.

  flood.py spoofed HOST PORT COUNT   sends COUNT NTP requests, each from a different source
                                     address in 127.64.0.0/10 (raw socket, needs root); prints
                                     the time taken.
  flood.py single HOST PORT COUNT    sends COUNT requests from one address (rotating source
                                     ports) as fast as replies allow and prints how many were
                                     answered normally, kissed, and unanswered.
Stops by itself: COUNT is bounded by the caller and every wait has a timeout.
"""
import os
import select
import socket
import struct
import sys
import time


def spoofed(host, port, count):
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    dst = socket.inet_aton(host)
    payload = bytes([0x23]) + bytes(39)
    start = time.time()
    for i in range(count):
        src = struct.pack("!I", (127 << 24) | (64 << 16) + i)  # 127.64.0.0 + i
        udp = struct.pack("!HHHH", 40000 + i % 20000, port, 8 + 48, 0) + payload + struct.pack("!Q", i + 1)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, dst)
        raw.sendto(ip + udp, (host, 0))
    print(f"sent {count} requests from {count} source addresses in {time.time() - start:.1f} s")


def single(host, port, count):
    answered = kissed = 0
    start = time.time()
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a new source port each time
        s.connect((host, port))
        s.send(bytes([0x23]) + bytes(39) + struct.pack("!Q", i + 1))
        r, _, _ = select.select([s], [], [], 0.005)
        if r:
            data = s.recv(100)
            if data[1] == 0 and data[12:16] == b"RATE":
                kissed += 1
            else:
                answered += 1
        s.close()
    print(f"answered {answered} kissed {kissed} unanswered {count - answered - kissed} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    mode, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    {"spoofed": spoofed, "single": single}[mode](host, port, count)
