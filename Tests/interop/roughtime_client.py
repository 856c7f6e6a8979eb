#!/usr/bin/env python3
"""A Roughtime client (RFC 10049) written apart from tock: the wire format from the RFC, Ed25519
from the `cryptography` package, SHA-512 from hashlib. It checks tockd with code that shares
nothing with tockd's, and its codec serves the lying server (roughtime_liar.py) and the check of
a malfeasance report.

Library use: `request(nonce)` -> packet; `verify(request, reply, public_key)` -> Verified (or
raises Bad); `message`/`parse` encode and decode a message (§4.2); `h` is H (§5.3);
`exchange_tcp(host, port, request)` -> the reply over TCP, or None;
`check_report(report, keys)` checks a malfeasance report (§8.4).
Command line (the allocation count uses it):
  roughtime_client.py HOST PORT PUBLIC_KEY [--requests N] [--verify-every K] [--tcp]
sends N requests one after the other (with --tcp, each on its own TCP connection), verifies
every K-th reply (default every one) and prints "answered A of N, verified V"; exits 1 unless
every request was answered and every checked reply verified.
"""
import argparse
import base64
import hashlib
import os
import socket
import struct
import sys
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAGIC = b"ROUGHTIM"
VERSION_1 = 1
VERSION_DRAFT = 0x8000000C
DELEGATION_CONTEXT = b"RoughTime v1 delegation signature\0"
RESPONSE_CONTEXT = b"RoughTime v1 response signature\0"


class Bad(Exception):
    """A reply that fails a check of §5.4."""


def tag(name):
    return struct.unpack("<I", name.encode().ljust(4, b"\0"))[0]


def message(fields):
    """Encodes {tag name: bytes} as a Roughtime message (§4.2): tags ascending by uint32."""
    items = sorted(fields.items(), key=lambda kv: tag(kv[0]))
    offsets, values = [], b""
    for i, (_, value) in enumerate(items):
        if i > 0:
            offsets.append(len(values))
        values += value
    return (struct.pack("<I", len(items)) + b"".join(struct.pack("<I", o) for o in offsets)
            + b"".join(struct.pack("<I", tag(k)) for k, _ in items) + values)


def parse(body):
    """A message's {tag name: bytes}, checking the framing (§4.2) strictly."""
    if len(body) < 4:
        raise Bad("message shorter than its tag count")
    n = struct.unpack_from("<I", body, 0)[0]
    if n < 1 or len(body) < 8 * n:
        raise Bad("message header truncated")
    offsets = [0] + list(struct.unpack_from(f"<{n - 1}I", body, 4))
    tags = struct.unpack_from(f"<{n}I", body, 4 + 4 * (n - 1))
    if list(tags) != sorted(tags) or len(set(tags)) != n:
        raise Bad("tags not strictly ascending")
    values = body[8 * n:]
    ends = offsets[1:] + [len(values)]
    out = {}
    for t, a, b in zip(tags, offsets, ends):
        if a % 4 or b < a or b > len(values):
            raise Bad("bad value offsets")
        out[struct.pack("<I", t).rstrip(b"\0").decode("latin-1")] = values[a:b]
    return out


def packet(body):
    return MAGIC + struct.pack("<I", len(body)) + body


def h(data):
    """H: SHA-512 truncated to 32 bytes (§5.3)."""
    return hashlib.sha512(data).digest()[:32]


def request(nonce, versions=(VERSION_1,), length=1024):
    """A request (§5.1) padded with ZZZZ to `length` bytes."""
    fields = {"VER": b"".join(struct.pack("<I", v) for v in sorted(versions)), "NONC": nonce,
              "TYPE": struct.pack("<I", 0), "ZZZZ": b""}
    fields["ZZZZ"] = bytes(length - 12 - len(message(fields)))
    return packet(message(fields))


def request_nonce(req):
    """The NONC of a request packet."""
    return parse(req[12:])["NONC"]


@dataclass
class Verified:
    midpoint: int
    radius: int
    version: int


def verify(req, reply, public_key):
    """Checks a reply as §5.4 asks (framing, nonce, both signatures, MINT ≤ MIDP ≤ MAXT, the
    Merkle proof of the request) and returns what it vouches for; raises Bad."""
    if len(reply) < 12 or reply[:8] != MAGIC or struct.unpack_from("<I", reply, 8)[0] != len(reply) - 12:
        raise Bad("bad packet header")
    if len(reply) > len(req):
        raise Bad("reply longer than request")
    top = parse(reply[12:])
    for name in ("SIG", "NONC", "TYPE", "PATH", "SREP", "CERT", "INDX"):
        if name not in top:
            raise Bad(f"reply lacks {name}")
    if struct.unpack("<I", top["TYPE"])[0] != 1:
        raise Bad("TYPE is not 1")
    if top["NONC"] != request_nonce(req):
        raise Bad("nonce not echoed")
    srep, cert = parse(top["SREP"]), parse(top["CERT"])
    dele = parse(cert["DELE"])
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(cert["SIG"], DELEGATION_CONTEXT + cert["DELE"])
    except InvalidSignature:
        raise Bad("delegation signature does not verify") from None
    try:
        Ed25519PublicKey.from_public_bytes(dele["PUBK"]).verify(top["SIG"], RESPONSE_CONTEXT + top["SREP"])
    except InvalidSignature:
        raise Bad("response signature does not verify") from None
    midpoint = struct.unpack("<Q", srep["MIDP"])[0]
    radius = struct.unpack("<I", srep["RADI"])[0]
    if not struct.unpack("<Q", dele["MINT"])[0] <= midpoint <= struct.unpack("<Q", dele["MAXT"])[0]:
        raise Bad("midpoint outside the delegation")
    node = h(b"\x00" + req)
    index = struct.unpack("<I", top["INDX"])[0]
    path = top["PATH"]
    if len(path) % 32 or len(path) // 32 > 32:
        raise Bad("bad PATH length")
    for i in range(len(path) // 32):
        sibling = path[32 * i:32 * (i + 1)]
        node = h(b"\x01" + sibling + node) if index & 1 else h(b"\x01" + node + sibling)
        index >>= 1
    if index != 0 or node != srep["ROOT"]:
        raise Bad("Merkle proof fails")
    return Verified(midpoint, radius, struct.unpack("<I", srep["VER"])[0])


def read_packet(sock, limit):
    """One packet from a TCP stream (§5): the 12-byte header, then as many bytes as its length
    field gives. A length over `limit` (a reply longer than its request) is refused from the
    header; returns None if the server closes before the first byte; raises Bad if it closes
    mid-packet."""
    data = b""
    need = 12
    while len(data) < need:
        chunk = sock.recv(need - len(data))
        if not chunk:
            if not data:
                return None
            raise Bad(f"connection closed after {len(data)} of {need} bytes")
        data += chunk
        if len(data) == 12:
            if data[:8] != MAGIC:
                raise Bad("bad packet header")
            need = 12 + struct.unpack_from("<I", data, 8)[0]
            if need > limit:
                raise Bad("reply longer than request")
    return data


def exchange_tcp(host, port, req, timeout=2.0):
    """Sends `req` on a new TCP connection and returns the reply packet, or None when the
    server closes without one."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(req)
        return read_packet(s, len(req))


def check_report(report, keys):
    """Checks a malfeasance report (§8.4) independently: every response verifies under the key of
    the server (`keys`: a list, one public key per response, in order) and answers its request,
    each request's nonce after the first is H(previous response ‖ rand), and some pair breaks
    causality (MIDP_i − RADI_i > MIDP_j + RADI_j for i < j). Returns the verified times; raises
    Bad."""
    entries = report["responses"]
    if len(entries) != len(keys):
        raise Bad(f"{len(entries)} responses for {len(keys)} keys")
    times, previous = [], None
    for entry, key in zip(entries, keys):
        req = base64.b64decode(entry["request"])
        resp = base64.b64decode(entry["response"])
        if previous is not None:
            # The first request's nonce is random and has no rand (Appendix B); each later one
            # is H(previous response ‖ rand).
            rand = base64.b64decode(entry["rand"])
            if len(rand) != 32:
                raise Bad("rand is not 32 bytes")
            if request_nonce(req) != hashlib.sha512(previous + rand).digest()[:32]:
                raise Bad("nonce not chained from the previous response")
        times.append(verify(req, resp, key))
        previous = resp
    if not any(times[i].midpoint - times[i].radius > times[j].midpoint + times[j].radius
               for i in range(len(times)) for j in range(i + 1, len(times))):
        raise Bad("the report shows no causality violation")
    return times


def decode_key(text):
    text = text.strip()
    return bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("public_key", help="the long-term key, base64 or hex")
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--verify-every", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--tcp", action="store_true", help="one TCP connection per request")
    args = parser.parse_args()
    key = decode_key(args.public_key)
    answered = verified = 0

    def check(i, req, reply):
        nonlocal answered, verified
        if reply is None:
            return
        answered += 1
        if i % args.verify_every == 0:
            try:
                verify(req, reply, key)
                verified += 1
            except Bad as e:
                print(f"request {i}: {e}", file=sys.stderr)
                verified = -1_000_000_000

    if args.tcp:
        for i in range(args.requests):
            req = request(os.urandom(32))
            try:
                reply = exchange_tcp(args.host, args.port, req, args.timeout)
            except (OSError, Bad) as e:
                print(f"request {i}: {e}", file=sys.stderr)
                reply = None
            check(i, req, reply)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(args.timeout)
            s.connect((args.host, args.port))
            for i in range(args.requests):
                req = request(os.urandom(32))
                s.send(req)
                try:
                    reply = s.recv(2048)
                except socket.timeout:
                    continue
                check(i, req, reply)
    checked = (args.requests + args.verify_every - 1) // args.verify_every
    print(f"answered {answered} of {args.requests}, verified {max(verified, 0)} of {checked}")
    return 0 if answered == args.requests and verified == checked else 1


if __name__ == "__main__":
    sys.exit(main())
