#!/usr/bin/env python3
"""The test stand-in for the original exercise's client (the seed document's UDP time client).

It reproduces that client's exchange and output exactly, so the tests can check that tockd
serves the client the exercise was written for without reaching outside this repository: one
UDP datagram holding the 26 bytes "Client Requesting Time....", one datagram back (read up to
1024 bytes), printed as "Time from Server: " and the reply decoded as UTF-8, separated by a
space. For a Daytime listener in the .hms format that is `Time from Server:  HH:MM:SS`.

Usage: seed_client.py [HOST] [PORT]   (defaults 127.0.0.1 8080, IPv4)
Exits 1, saying "no reply from server" on stderr, if no reply arrives within 2 seconds.
"""
import socket
import sys

REQUEST = "Client Requesting Time....".encode()
REPLY_LIMIT = 1024
TIMEOUT_SECONDS = 2.0


def main(argv):
    host = argv[1] if len(argv) > 1 else "127.0.0.1"
    port = int(argv[2]) if len(argv) > 2 else 8080
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT_SECONDS)
        s.sendto(REQUEST, (host, port))
        try:
            reply, _ = s.recvfrom(REPLY_LIMIT)
        except socket.timeout:
            print("no reply from server", file=sys.stderr)
            return 1
    print("Time from Server: ", reply.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
