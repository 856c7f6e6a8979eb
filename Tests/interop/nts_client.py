#!/usr/bin/env python3
"""An NTS client (RFC 8915) written apart from tock: NTS-KE over TLS 1.3 with pyOpenSSL, keys
from OpenSSL's own TLS exporter, NTS-protected NTP with the `cryptography` package's AES-SIV.
It checks tockd with code that shares nothing with tockd's, and builds the hostile datagrams
the tests send.

Library use: `ke(host, port, ca)` -> Session; `Session.request(placeholders)` -> (bytes, uid,
transmit); `Session.check(reply, uid, transmit)` -> the new cookies (or raises).
Command line (the allocation count and the benchmark use it):
  nts_client.py HOST KE_PORT NTP_PORT CA [--requests N]
sends N authenticated requests (default 1) and prints "answered A of N, authenticated V".
"""
import os
import socket
import struct
import sys

from OpenSSL import SSL
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

NTPV4 = 0
AEAD_SIV_256 = 15
LABEL = b"EXPORTER-network-time-security"
UID, COOKIE, PLACEHOLDER, AUTH = 0x0104, 0x0204, 0x0304, 0x0404


def record(critical, rtype, body=b""):
    return struct.pack(">HH", (0x8000 if critical else 0) | rtype, len(body)) + body


def ke_request(aeads=(AEAD_SIV_256,)):
    return (record(True, 1, struct.pack(">H", NTPV4)) + record(True, 4, b"".join(struct.pack(">H", a) for a in aeads))
            + record(True, 0))


def parse_records(data):
    out, i = [], 0
    while i + 4 <= len(data):
        head, length = struct.unpack(">HH", data[i:i + 4])
        out.append((bool(head & 0x8000), head & 0x7FFF, data[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def tls_connect(host, port, ca=None, alpn=(b"ntske/1",), min_version=SSL.TLS1_3_VERSION, max_version=None, timeout=5):
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(min_version)
    if max_version:
        ctx.set_max_proto_version(max_version)
    if alpn:
        ctx.set_alpn_protos(list(alpn))
    if ca:
        ctx.load_verify_locations(ca)
        ctx.set_verify(SSL.VERIFY_PEER, lambda *a: a[-1])
    sock = socket.create_connection((host, port), timeout=timeout)
    # pyOpenSSL needs a blocking socket; the kernel's timeouts bound each read and write.
    sock.settimeout(None)
    limit = struct.pack("ll", int(timeout), int(timeout % 1 * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(host.encode())
    conn.set_connect_state()
    conn.do_handshake()
    return conn


def read_all(conn):
    data = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (SSL.ZeroReturnError, SSL.SysCallError):
            break
        if not chunk:
            break
        data += chunk
    return data


class Session:
    """Keys and cookies from one NTS-KE exchange."""

    def __init__(self, c2s, s2c, cookies, ntp_host, ntp_port):
        self.c2s, self.s2c, self.cookies = c2s, s2c, list(cookies)
        self.ntp_host, self.ntp_port = ntp_host, ntp_port

    def request(self, placeholders=0, cookie=None, uid=None):
        """An authenticated request with the next cookie and `placeholders` placeholders."""
        cookie = cookie if cookie is not None else self.cookies.pop(0)
        uid = uid or os.urandom(32)
        transmit = os.urandom(8)
        header = bytes([0x23]) + bytes(39) + transmit
        fields = ef(UID, uid) + ef(COOKIE, cookie) + b"".join(ef(PLACEHOLDER, bytes(len(cookie))) for _ in range(placeholders))
        packet = header + fields
        return seal(self.c2s, packet), uid, transmit

    def check(self, reply, uid, transmit):
        """Verifies a reply; returns its new cookies. Raises ValueError on anything wrong."""
        if len(reply) < 48 or reply[24:32] != transmit:
            raise ValueError("origin not echoed")
        if reply[1] == 0:
            refid = reply[12:16]
            fields = list(extension_fields(reply))
            if refid == b"NTSN" and fields and fields[0][0] == UID and fields[0][2] == uid:
                raise NAK("NTS NAK")
            raise ValueError(f"kiss {refid!r}")
        fields = list(extension_fields(reply))
        if not fields or fields[0][0] != UID or fields[0][2] != uid:
            raise ValueError("unique identifier not echoed")
        if fields[-1][0] != AUTH:
            raise ValueError("no authenticator at the end")
        start, body = fields[-1][1], fields[-1][2]
        nonce_length, ciphertext_length = struct.unpack(">HH", body[:4])
        nonce = body[4:4 + nonce_length]
        ciphertext = body[4 + ((nonce_length + 3) & ~3):][:ciphertext_length]
        # RFC 5297 lays out the SIV (tag) first, as both nettle and `cryptography` do.
        plain = AESSIV(self.s2c).decrypt(ciphertext, [reply[:start], nonce])
        cookies = [b for t, _, b in extension_fields(bytes(48) + plain) if t == COOKIE]
        self.cookies += cookies
        return cookies


class NAK(ValueError):
    pass


def ef(ftype, body):
    padded = body + bytes(-len(body) % 4)
    return struct.pack(">HH", ftype, 4 + len(padded)) + padded


def extension_fields(packet):
    i = 48
    while i + 4 <= len(packet):
        ftype, length = struct.unpack(">HH", packet[i:i + 4])
        if length < 4 or i + length > len(packet):
            return
        yield ftype, i, packet[i + 4:i + length]
        i += length


def seal(c2s, packet, nonce=None, plaintext=b""):
    """Appends an Authenticator: AES-SIV under C2S over `packet` with a 16-byte nonce."""
    nonce = nonce or os.urandom(16)
    ciphertext = AESSIV(c2s).encrypt(plaintext, [packet, nonce])  # SIV (tag) ‖ data
    body = struct.pack(">HH", len(nonce), len(ciphertext)) + nonce + ciphertext
    return packet + ef(AUTH, body)


def ke(host, port, ca=None, aeads=(AEAD_SIV_256,)):
    conn = tls_connect(host, port, ca)
    if conn.get_alpn_proto_negotiated() != b"ntske/1":
        raise ValueError("no ntske/1")
    conn.sendall(ke_request(aeads))
    records = parse_records(read_all(conn))
    aead = next(struct.unpack(">H", b)[0] for c, t, b in records if t == 4)
    key_length = 32 if aead == AEAD_SIV_256 else 64
    c2s = conn.export_keying_material(LABEL, key_length, struct.pack(">HHB", NTPV4, aead, 0))
    s2c = conn.export_keying_material(LABEL, key_length, struct.pack(">HHB", NTPV4, aead, 1))
    cookies = [b for c, t, b in records if t == 5]
    server = next((b.decode() for c, t, b in records if t == 6), host)
    port = next((struct.unpack(">H", b)[0] for c, t, b in records if t == 7), 123)
    return Session(c2s, s2c, cookies, server, port)


def exchange(session, ntp_port=None, placeholders=0, timeout=1.0):
    packet, uid, transmit = session.request(placeholders)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(packet, (session.ntp_host, ntp_port or session.ntp_port))
        reply = s.recv(4096)
    finally:
        s.close()
    return session.check(reply, uid, transmit), len(packet), len(reply)


def main():
    host, ke_port, ntp_port, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    count = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 1
    session = ke(host, ke_port, ca)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    sock.connect((host, ntp_port))
    answered = authenticated = 0
    for _ in range(count):
        if not session.cookies:
            session = ke(host, ke_port, ca)
        packet, uid, transmit = session.request()
        sock.send(packet)
        try:
            reply = sock.recv(4096)
        except socket.timeout:
            continue
        answered += 1
        try:
            session.check(reply, uid, transmit)
            authenticated += 1
        except ValueError:
            pass
    print(f"answered {answered} of {count}, authenticated {authenticated}")
    return 0 if authenticated == count else 1


if __name__ == "__main__":
    sys.exit(main())
