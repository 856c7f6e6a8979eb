#!/usr/bin/env python3
"""TLS 1.3 exporter vectors from OpenSSL (through pyOpenSSL), to check TockCrypto's TLSExporter.

Runs real TLS 1.3 handshakes, client and server in this one process over a socketpair, with a
self-signed certificate made by `cryptography`: once with TLS_AES_128_GCM_SHA256 (SHA-256) and
once with TLS_AES_256_GCM_SHA384 (SHA-384). The client context's key-log callback captures the
`EXPORTER_SECRET` line (NSS key log format); the client connection's
`export_keying_material` gives the RFC 8446 §7.5 exporter for the NTS keys of RFC 8915 §5.1
(label EXPORTER-network-time-security, context next protocol 0 || AEAD id || 0x00 C2S / 0x01
S2C) for AEAD 15 (32 bytes) and 17 (64 bytes), and for a few other labels and contexts.

Prints one JSON document:
  {"handshakes": [{"cipher": ..., "keylog": "EXPORTER_SECRET <random> <secret>",
                   "exports": [{"label": ..., "context": hex, "length": n, "key": hex}, ...]}]}
Usage: python3 Tests/TockCryptoTests/exporter_vectors.py   (needs `pip install pyopenssl`)
"""
import datetime
import json
import select
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

NTS_LABEL = b"EXPORTER-network-time-security"


def self_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tock.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return crypto.X509.from_cryptography(cert), crypto.PKey.from_cryptography_key(key)


def set_tls13_ciphersuites(ctx, cipher):
    # Recent pyOpenSSL has Context.set_tls13_ciphersuites; older releases (Debian 12's 23.0)
    # do not, and get the OpenSSL call itself through pyOpenSSL's own binding.
    if hasattr(ctx, "set_tls13_ciphersuites"):
        ctx.set_tls13_ciphersuites(cipher.encode())
        return
    from OpenSSL._util import lib

    if lib.SSL_CTX_set_ciphersuites(ctx._context, cipher.encode()) != 1:
        raise SystemExit(f"OpenSSL refused TLS 1.3 cipher suite {cipher}")


def context(cipher, keylog_lines=None):
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    set_tls13_ciphersuites(ctx, cipher)
    if keylog_lines is not None:
        ctx.set_keylog_callback(lambda _conn, line: keylog_lines.append(line.decode()))
    return ctx


def handshake(cipher, cert, key):
    lines = []
    server_ctx = context(cipher)
    server_ctx.use_certificate(cert)
    server_ctx.use_privatekey(key)
    client_ctx = context(cipher, lines)
    client_ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    client = SSL.Connection(client_ctx, a)
    client.set_connect_state()
    server = SSL.Connection(server_ctx, b)
    server.set_accept_state()
    done = {client: False, server: False}
    for _ in range(1000):
        for conn in (client, server):
            if done[conn]:
                continue
            try:
                conn.do_handshake()
                done[conn] = True
            except SSL.WantReadError:
                pass
        if all(done.values()):
            break
        select.select([a, b], [], [], 0.1)
    else:
        raise SystemExit("handshake did not finish")

    negotiated = client.get_cipher_name()
    if negotiated != cipher or client.get_protocol_version_name() != "TLSv1.3":
        raise SystemExit(f"asked for {cipher} over TLS 1.3, got {negotiated} {client.get_protocol_version_name()}")
    exporter_lines = [line for line in lines if line.startswith("EXPORTER_SECRET ")]
    if len(exporter_lines) != 1:
        raise SystemExit(f"expected one EXPORTER_SECRET line, got {lines}")

    exports = []

    def export(label, context, length):
        client_key = client.export_keying_material(label, length, context)
        if server.export_keying_material(label, length, context) != client_key:
            raise SystemExit("client and server exports differ")
        exports.append({"label": label.decode(), "context": context.hex(), "length": length, "key": client_key.hex()})

    for aead, length in ((15, 32), (17, 64)):
        for direction in (0, 1):
            export(NTS_LABEL, bytes([0, 0, aead >> 8, aead & 0xFF, direction]), length)
    export(b"EXPORTER-tock-test", b"", 16)
    export(b"EXPORTER-tock-test", bytes(range(40)), 100)

    client.close()
    server.close()
    a.close()
    b.close()
    return {"cipher": cipher, "keylog": exporter_lines[0], "exports": exports}


def main():
    cert, key = self_signed()
    handshakes = [handshake(c, cert, key) for c in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")]
    print(json.dumps({"handshakes": handshakes}, indent=1))


if __name__ == "__main__":
    main()
