#!/usr/bin/env python3
"""A Roughtime server (RFC 10049, version 1) that lies: its MIDP is an hour ahead of the real
time. Built from the RFC with `cryptography`'s Ed25519 and hashlib, sharing nothing with tockd;
every reply is correctly signed, so only a cross-check against other servers (§8.2) can catch it.

Each request is a batch of one: PATH is empty, INDX 0 and ROOT the request's leaf,
H(0x00 ‖ request) (§5.3). Requests not offering version 1, shorter than 1024 bytes or without
a 32-byte NONC get no reply.

  roughtime_liar.py [--port P] [--offset SECONDS] [--fault expired|bad-proof]
binds 127.0.0.1:P (0: any free port) and prints "port P public-key BASE64" when ready.
--fault makes every reply fail one client check while its signatures still verify: `expired`
delegates to the online key for a window that ends a day before MIDP (§5.4: MIDP within
MINT..MAXT), `bad-proof` signs a ROOT that is not the request's leaf (§5.3).
"""
import argparse
import base64
import socket
import struct
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roughtime_client import (DELEGATION_CONTEXT, MAGIC, RESPONSE_CONTEXT, VERSION_1, Bad, h,  # noqa: E402
                              message, packet, parse)


def reply(req, long_term, online, certificate, offset, fault=None):
    """The signed reply to `req`, or None."""
    if len(req) < 1024 or req[:8] != MAGIC:
        return None
    try:
        fields = parse(req[12:])
    except (Bad, struct.error):
        return None
    versions = fields.get("VER", b"")
    if len(fields.get("NONC", b"")) != 32 or len(versions) % 4 or VERSION_1 not in struct.unpack(f"<{len(versions) // 4}I", versions):
        return None
    srep = message({"VER": struct.pack("<I", VERSION_1), "RADI": struct.pack("<I", 1),
                    "MIDP": struct.pack("<Q", int(time.time()) + offset), "VERS": struct.pack("<I", VERSION_1),
                    "ROOT": h(b"\x01" + req) if fault == "bad-proof" else h(b"\x00" + req)})
    return packet(message({"SIG": online.sign(RESPONSE_CONTEXT + srep), "NONC": fields["NONC"], "TYPE": struct.pack("<I", 1),
                           "PATH": b"", "SREP": srep, "CERT": certificate, "INDX": struct.pack("<I", 0)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--offset", type=int, default=3600, help="seconds added to the real time")
    parser.add_argument("--fault", choices=["expired", "bad-proof"], help="break one check in every reply")
    args = parser.parse_args()
    long_term, online = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = int(time.time()) + args.offset
    start, end = (now - 3 * 86400, now - 86400) if args.fault == "expired" else (now - 86400, now + 86400)
    dele = message({"PUBK": online.public_key().public_bytes_raw(), "MINT": struct.pack("<Q", start),
                    "MAXT": struct.pack("<Q", end)})
    certificate = message({"SIG": long_term.sign(DELEGATION_CONTEXT + dele), "DELE": dele})
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", args.port))
        public = base64.b64encode(long_term.public_key().public_bytes_raw()).decode()
        print(f"port {s.getsockname()[1]} public-key {public}", flush=True)
        while True:
            req, peer = s.recvfrom(65536)
            out = reply(req, long_term, online, certificate, args.offset, args.fault)
            if out is not None:
                s.sendto(out, peer)


if __name__ == "__main__":
    main()
