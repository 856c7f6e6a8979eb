#!/usr/bin/env python3
"""An NTP client in the interleaved client/server mode (RFC 9769), as chronyd's `xleave` runs it:
every request carries the previous reply's receive timestamp as its origin and the client's
receive time of that reply as its receive field, asking for the previous reply's transmit time.

  interleaved_client.py HOST PORT [--requests N]

Sends N requests (default 100), one at a time, and checks every reply: a basic reply echoes the
request's transmit timestamp, an interleaved one its receive field. Prints how many were
interleaved; exits 1 if a reply was wrong, missing, or fewer than 90 % of the replies from the
third on were interleaved.
"""
import argparse
import os
import socket
import struct
import sys
import time

NTP_EPOCH = 2208988800


def ntp_now():
    t = time.time_ns()
    seconds, nanos = divmod(t, 1_000_000_000)
    return ((seconds + NTP_EPOCH) << 32) | ((nanos << 32) // 1_000_000_000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.connect((args.host, args.port))
    previous_receive, previous_t4 = 0, 0
    interleaved = basic = 0
    for i in range(args.requests):
        transmit = int.from_bytes(os.urandom(8), "big") | 1
        request = bytes([0x23]) + bytes(23) + struct.pack("!QQQ", previous_receive, previous_t4, transmit)
        sock.send(request)
        try:
            reply = sock.recv(2048)
        except socket.timeout:
            print(f"request {i}: no reply", file=sys.stderr)
            return 1
        t4 = ntp_now()
        origin, receive, reply_transmit = struct.unpack("!QQQ", reply[24:48])
        if len(reply) != 48 or reply[0] & 7 != 4:
            print(f"request {i}: not a server reply", file=sys.stderr)
            return 1
        if previous_receive and origin == previous_t4 and origin != transmit:
            interleaved += 1
        elif origin == transmit:
            if i >= 2:
                basic += 1
        else:
            print(f"request {i}: origin {origin:#x} is neither our transmit nor our receive field", file=sys.stderr)
            return 1
        previous_receive, previous_t4 = receive, t4
    print(f"interleaved={interleaved} basic={basic} requests={args.requests}")
    return 0 if interleaved >= 0.9 * max(0, args.requests - 2) else 1


if __name__ == "__main__":
    sys.exit(main())
