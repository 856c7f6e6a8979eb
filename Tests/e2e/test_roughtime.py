"""Roughtime (RFC 10049) from tockd over UDP and TCP, checked by a client written here from the
RFC (Ed25519 from `cryptography`, SHA-512 from hashlib), by the independent client in
Tests/interop/roughtime_client.py, and by tock query --protocol roughtime."""
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conftest import INTEROP, expect_exit, expect_ok, interop, tock

sys.path.insert(0, str(INTEROP))
import roughtime_client  # noqa: E402

MAGIC = b"ROUGHTIM"
VERSION_1 = 1
VERSION_DRAFT = 0x8000000C


def tag(name):
    return struct.unpack("<I", name.encode().ljust(4, b"\0"))[0]


def message(fields):
    """Encodes {tag name: bytes} as a Roughtime message (§4.2): tags ascending by uint32."""
    items = sorted(fields.items(), key=lambda kv: tag(kv[0]))
    n = len(items)
    offsets, values, at = [], b"", 0
    for i, (_, value) in enumerate(items):
        if i > 0:
            offsets.append(at)
        values += value
        at += len(value)
    header = struct.pack("<I", n) + b"".join(struct.pack("<I", o) for o in offsets) + b"".join(struct.pack("<I", tag(k)) for k, _ in items)
    return header + values


def packet(body):
    return MAGIC + struct.pack("<I", len(body)) + body


def parse(body):
    """A message's {tag name: bytes}, checking the framing strictly."""
    n = struct.unpack_from("<I", body, 0)[0]
    assert n >= 1
    offsets = [0] + list(struct.unpack_from(f"<{n - 1}I", body, 4))
    tags = struct.unpack_from(f"<{n}I", body, 4 + 4 * (n - 1))
    assert list(tags) == sorted(tags) and len(set(tags)) == n
    start = 4 + 8 * n - 4
    values = body[start:]
    ends = offsets[1:] + [len(values)]
    out = {}
    for t, a, b in zip(tags, offsets, ends):
        out[struct.pack("<I", t).rstrip(b"\0").decode()] = values[a:b]
    return out


def h(data):
    return hashlib_sha512(data)[:32]


def hashlib_sha512(data):
    import hashlib
    return hashlib.sha512(data).digest()


def request(versions=(VERSION_1, VERSION_DRAFT), nonce=None, length=1024, extra=None, drop=()):
    nonce = nonce if nonce is not None else os.urandom(32)
    fields = {"VER": b"".join(struct.pack("<I", v) for v in sorted(versions)), "NONC": nonce, "TYPE": struct.pack("<I", 0)}
    fields.update(extra or {})
    for name in drop:
        fields.pop(name)
    fields["ZZZZ"] = b""
    unpadded = 12 + len(message(fields))
    fields["ZZZZ"] = bytes(length - unpadded)
    return packet(message(fields)), nonce


def verify(req, reply, nonce, public_key, offered):
    """RFC 10049 §5.4, independently: returns (midpoint, radius, version)."""
    assert len(reply) <= len(req), "reply longer than request"
    assert reply[:8] == MAGIC and struct.unpack_from("<I", reply, 8)[0] == len(reply) - 12
    top = parse(reply[12:])
    assert struct.unpack("<I", top["TYPE"])[0] == 1
    assert top["NONC"] == nonce, "nonce not echoed"
    srep, cert = parse(top["SREP"]), parse(top["CERT"])
    dele = parse(cert["DELE"])
    version = struct.unpack("<I", srep["VER"])[0]
    assert version in offered
    vers = struct.unpack(f"<{len(srep['VERS']) // 4}I", srep["VERS"])
    assert version in vers and list(vers) == sorted(vers)
    Ed25519PublicKey.from_public_bytes(public_key).verify(cert["SIG"], b"RoughTime v1 delegation signature\0" + cert["DELE"])
    Ed25519PublicKey.from_public_bytes(dele["PUBK"]).verify(top["SIG"], b"RoughTime v1 response signature\0" + top["SREP"])
    midpoint = struct.unpack("<Q", srep["MIDP"])[0]
    radius = struct.unpack("<I", srep["RADI"])[0]
    assert struct.unpack("<Q", dele["MINT"])[0] <= midpoint <= struct.unpack("<Q", dele["MAXT"])[0]
    # Merkle proof (§5.3.1): leaf H(0x00 ‖ request), INDX bits choose the side at each level.
    node = h(b"\x00" + req)
    index = struct.unpack("<I", top["INDX"])[0]
    path = top["PATH"]
    assert len(path) % 32 == 0 and len(path) // 32 <= 32
    for i in range(len(path) // 32):
        sibling = path[32 * i:32 * (i + 1)]
        node = h(b"\x01" + sibling + node) if index & 1 else h(b"\x01" + node + sibling)
        index >>= 1
    assert index == 0
    assert node == srep["ROOT"], "Merkle proof fails"
    return midpoint, radius, version, len(path) // 32


@pytest.fixture(scope="module")
def roughtime_key(tmp_path_factory):
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    path = tmp_path_factory.mktemp("roughtime") / "seed"
    path.write_text(seed.hex() + "\n")
    os.chmod(path, 0o600)
    return path, key.public_key().public_bytes_raw()


@pytest.fixture(scope="module")
def server(module_procs, roughtime_key):
    path, _ = roughtime_key
    proc = module_procs.tockd("roughtime", "--ntp", "127.0.0.1:0", "--roughtime", "127.0.0.1:0", "--roughtime-key", str(path),
                              "--clock-source", "local", "--metrics", "127.0.0.1:0")
    proc.metrics = proc.wait_metrics()
    return proc


def exchange(address, datagram, timeout=1.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(datagram, address)
        try:
            return s.recvfrom(4096)[0]
        except socket.timeout:
            return None


def drops(server):
    with urllib.request.urlopen(f"http://{server.metrics}/status", timeout=2) as r:
        status = json.loads(r.read())
    return next(s for s in status["services"] if s["name"] == "roughtime")["drops"]


@pytest.mark.parametrize("versions,expected", [((VERSION_1,), VERSION_1), ((VERSION_DRAFT,), VERSION_DRAFT), ((VERSION_1, VERSION_DRAFT), VERSION_1)])
def test_independent_client_verifies_a_reply(server, roughtime_key, versions, expected):
    address = ("127.0.0.1", server.port("roughtime"))
    req, nonce = request(versions)
    reply = exchange(address, req)
    assert reply is not None
    midpoint, radius, version, _ = verify(req, reply, nonce, roughtime_key[1], versions)
    assert version == expected
    assert radius >= 3
    assert abs(midpoint - time.time()) < 3


def test_requests_sent_together_share_a_signed_tree(server, roughtime_key):
    address = ("127.0.0.1", server.port("roughtime"))
    socks, sent = [], []
    for _ in range(32):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        req, nonce = request()
        socks.append(s)
        sent.append((req, nonce))
    for s, (req, _) in zip(socks, sent):
        s.sendto(req, address)
    depths = []
    for s, (req, nonce) in zip(socks, sent):
        reply = s.recvfrom(4096)[0]
        s.close()
        depths.append(verify(req, reply, nonce, roughtime_key[1], (VERSION_1, VERSION_DRAFT))[3])
    assert max(depths) >= 1, depths


def hostile():
    good, _ = request()
    bad_magic = b"XOUGHTIM" + good[8:]
    bad_length = good[:8] + struct.pack("<I", len(good) - 8) + good[12:]
    zero_tags = packet(struct.pack("<I", 0) + bytes(1008))
    # Tags out of order: swap VER and NONC in the header of a well-formed request.
    body = bytearray(good[12:])
    n = struct.unpack_from("<I", body, 0)[0]
    tags_at = 4 + 4 * (n - 1)
    t0, t1 = body[tags_at:tags_at + 4], body[tags_at + 4:tags_at + 8]
    body[tags_at:tags_at + 4], body[tags_at + 4:tags_at + 8] = t1, t0
    unsorted = packet(bytes(body))
    return [
        ("short", good[:512], "too_short"),
        ("bad magic", bad_magic, "bad_framing"),
        ("bad length", bad_length, "bad_framing"),
        ("N=0", zero_tags, "bad_framing"),
        ("unsorted tags", unsorted, "bad_framing"),
        ("missing NONC", request(drop=("NONC",))[0], "bad_nonce"),
        ("NONC of 16 bytes", request(nonce=os.urandom(16))[0], "bad_nonce"),
        ("unknown SRV", request(extra={"SRV": os.urandom(32)})[0], "unknown_srv"),
        ("no common version", request(versions=(2, 0x80000001))[0], "no_common_version"),
        ("TYPE 1", request(extra={"TYPE": struct.pack("<I", 1)})[0], "bad_type"),
    ]


def test_hostile_requests_get_no_reply_and_are_counted(server, roughtime_key):
    address = ("127.0.0.1", server.port("roughtime"))
    before = drops(server)
    cases = hostile()
    for name, datagram, _ in cases:
        assert exchange(address, datagram, timeout=0.3) is None, f"{name} was answered"
    expected = {}
    for _, _, reason in cases:
        expected[reason] = expected.get(reason, 0) + 1
    deadline = time.time() + 3
    while True:
        after = drops(server)
        grown = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in expected}
        if grown == expected or time.time() > deadline:
            break
        time.sleep(0.05)
    assert grown == expected, (grown, after)
    # Still answering.
    req, nonce = request()
    verify(req, exchange(address, req), nonce, roughtime_key[1], (VERSION_1, VERSION_DRAFT))


def test_tock_query_roughtime(server, roughtime_key):
    key = base64.b64encode(roughtime_key[1]).decode()
    r = expect_ok(tock("query", "--protocol", "roughtime", server.addr("roughtime"), "--public-key", key))
    assert "radius" in r.stdout and "version       1" in r.stdout, r.stdout
    j = json.loads(expect_ok(tock("query", "--protocol", "roughtime", server.addr("roughtime"), "--public-key", roughtime_key[1].hex(), "--json")).stdout)
    assert j["verified"] is True and j["radius_s"] >= 3 and j["version"] == "1", j
    wrong = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    expect_exit(tock("query", "--protocol", "roughtime", server.addr("roughtime"), "--public-key", wrong), 10)


def tcp_status(server):
    """The status of Roughtime over TCP: requests (connections), replies and drops by reason."""
    with urllib.request.urlopen(f"http://{server.metrics}/status", timeout=2) as r:
        status = json.loads(r.read())
    return next(s for s in status["services"] if s["name"] == "roughtime" and s["transport"] == "tcp")


def test_roughtime_listens_on_udp_and_tcp_at_one_port(server):
    assert server.listener("roughtime").transport == "udp+tcp"


def test_independent_client_verifies_tcp_replies(server, roughtime_key):
    port = server.port("roughtime")
    key = base64.b64encode(roughtime_key[1]).decode()
    r = expect_ok(interop("roughtime_client.py", "127.0.0.1", str(port), key, "--tcp", "--requests", "3", "--timeout", "10"))
    assert "answered 3 of 3, verified 3 of 3" in r.stdout, r.stdout
    # A batch of one: PATH empty, INDX 0; no longer than the request.
    for versions in ((VERSION_1,), (VERSION_DRAFT,)):
        req, nonce = request(versions)
        reply = roughtime_client.exchange_tcp("127.0.0.1", port, req, timeout=10)
        assert reply is not None
        midpoint, radius, version, depth = verify(req, reply, nonce, roughtime_key[1], versions)
        assert (version, depth) == (versions[0], 0)
        assert radius >= 3 and abs(midpoint - time.time()) < 3


def test_tock_query_roughtime_over_tcp(server, roughtime_key):
    key = base64.b64encode(roughtime_key[1]).decode()
    r = expect_ok(tock("query", "--protocol", "roughtime", "--tcp", server.addr("roughtime"), "--public-key", key))
    assert "Roughtime over TCP" in r.stdout and "version       1" in r.stdout, r.stdout
    j = json.loads(expect_ok(tock("query", "--protocol", "roughtime", "--tcp", server.addr("roughtime"), "--public-key", key, "--json")).stdout)
    assert j["transport"] == "tcp" and j["verified"] is True, j
    wrong = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    expect_exit(tock("query", "--protocol", "roughtime", "--tcp", server.addr("roughtime"), "--public-key", wrong), 10)


def test_hostile_tcp_requests_get_no_reply_and_are_counted(server, roughtime_key):
    port = server.port("roughtime")
    good, _ = request()
    short = good[:8] + struct.pack("<I", 500) + good[12:512]
    cases = [
        ("bad magic", b"XOUGHTIM" + good[8:], "bad_framing"),
        ("a length of 2 GiB", good[:8] + struct.pack("<I", 0x7FFFFFFF) + good[12:], "oversized"),
        ("a frame announcing 500 bytes", short, "too_short"),
        ("unknown SRV", request(extra={"SRV": os.urandom(32)})[0], "unknown_srv"),
    ]
    before = tcp_status(server)
    for name, data, _ in cases:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                s.sendall(data)
                assert s.recv(4096) == b"", f"{name} was answered"
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed with the rest of the request unread
    expected = {}
    for _, _, reason in cases:
        expected[reason] = expected.get(reason, 0) + 1
    deadline = time.time() + 5
    while True:
        after = tcp_status(server)
        grown = {reason: after["drops"].get(reason, 0) - before["drops"].get(reason, 0) for reason in expected}
        if grown == expected or time.time() > deadline:
            break
        time.sleep(0.05)
    assert grown == expected, (grown, after)
    assert after["requests"] - before["requests"] == len(cases) and after["replies"] == before["replies"], after
    # Still answering over TCP.
    req, nonce = request()
    verify(req, roughtime_client.exchange_tcp("127.0.0.1", port, req, timeout=10), nonce, roughtime_key[1], (VERSION_1, VERSION_DRAFT))


def test_tockd_refuses_roughtime_without_a_key(procs):
    from conftest import tockd_run
    r = tockd_run("--roughtime", "127.0.0.1:0")
    assert r.returncode == 1, r
    assert "Roughtime needs a long-term key" in r.stdout, r.stdout


@pytest.mark.parametrize("fault, status, says", [("expired", 11, "MINT"), ("bad-proof", 12, "Merkle")])
def test_tock_query_roughtime_exit_status_names_the_failed_check(procs, fault, status, says):
    """Replies whose signatures verify but that fail one other check (Tests/interop/
    roughtime_liar.py --fault): a midpoint outside the delegation (exit 11), a Merkle proof that
    does not lead to the signed root (exit 12)."""
    import sys
    from conftest import INTEROP
    liar = procs.spawn(f"liar-{fault}", [sys.executable, INTEROP / "roughtime_liar.py", "--offset", "0", "--fault", fault])
    m = liar.log.wait_for(r"^port (\d+) public-key (\S+)$", proc=liar)
    r = expect_exit(tock("query", "--protocol", "roughtime", f"127.0.0.1:{m[1]}", "--public-key", m[2]), status)
    assert says in r.stdout, r
    # Against a correct server with the same key handling the query passes: the fault is the cause.
    honest = procs.spawn(f"honest-{fault}", [sys.executable, INTEROP / "roughtime_liar.py", "--offset", "0"])
    m = honest.log.wait_for(r"^port (\d+) public-key (\S+)$", proc=honest)
    expect_ok(tock("query", "--protocol", "roughtime", f"127.0.0.1:{m[1]}", "--public-key", m[2]))
