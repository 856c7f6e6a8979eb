"""Roughtime delegations signed offline (RFC 10049 §5.2.6): `tock roughtime delegate` signs one
with a long-term seed, tockd serves it with --roughtime-delegation without ever seeing that
seed, and the replies are checked by the client in Tests/interop/roughtime_client.py, which
shares no code with tock."""
import base64
import json
import os
import re
import sys
import time
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import INTEROP, expect_exit, expect_ok, tock, tockd_run

sys.path.insert(0, str(INTEROP))
import roughtime_client  # noqa: E402


def delegate(seed, out, *args):
    """Runs tock roughtime delegate; returns (long-term public key, online public key, MINT, MAXT)."""
    out_text = expect_ok(tock("roughtime", "delegate", "--key", seed, "--out", out, *args)).stdout
    long_term = base64.b64decode(re.search(r"long-term public key \(base64\) +(\S+)", out_text)[1])
    online = base64.b64decode(re.search(r"online public key \(base64\) +(\S+)", out_text)[1])
    window = re.search(r"\(MINT (\d+)\) to \S+ \(MAXT (\d+)\)", out_text)
    assert '"publicKey": "%s"' % base64.b64encode(long_term).decode() in out_text, out_text
    return long_term, online, int(window[1]), int(window[2])


def ask(port, public_key, timeout=2.0):
    """One request; returns (verified time, the reply's online key), or None for no reply."""
    import socket
    req = roughtime_client.request(os.urandom(32))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(req, ("127.0.0.1", port))
        try:
            reply = s.recvfrom(4096)[0]
        except socket.timeout:
            return None
    verified = roughtime_client.verify(req, reply, public_key)
    dele = roughtime_client.parse(roughtime_client.parse(roughtime_client.parse(reply[12:])["CERT"])["DELE"])
    return verified, dele["PUBK"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """A long-term seed (in a directory tockd is never told about) and a delegation from it."""
    secrets = tmp_path_factory.mktemp("offline")
    seed = secrets / "long-term.key"
    expect_ok(tock("roughtime", "keygen", seed))
    served = tmp_path_factory.mktemp("server")
    path = served / "delegation"
    long_term, online, mint, maxt = delegate(seed, path, "--valid", "2d")
    return {"seed": seed, "path": path, "long_term": long_term, "online": online, "mint": mint, "maxt": maxt}


@pytest.fixture(scope="module")
def server(module_procs, keys):
    proc = module_procs.tockd("delegated", "--ntp", "127.0.0.1:0", "--roughtime", "127.0.0.1:0",
                              "--roughtime-delegation", keys["path"], "--clock-source", "local", "--metrics", "127.0.0.1:0")
    proc.metrics = proc.wait_metrics()
    return proc


def test_delegate_writes_an_owner_only_file(keys):
    assert os.stat(keys["path"]).st_mode & 0o777 == 0o600
    text = keys["path"].read_text()
    assert "online-private-key:" in text and "certificate:" in text
    assert keys["maxt"] - keys["mint"] == 2 * 86400
    assert abs(keys["mint"] - time.time()) < 60
    # The seed itself is in no line of the file.
    seed_hex = keys["seed"].read_text().strip()
    assert seed_hex not in text and base64.b64encode(bytes.fromhex(seed_hex)).decode() not in text


def test_delegate_never_overwrites_without_force(keys, tmp_path):
    path = tmp_path / "delegation"
    first = delegate(keys["seed"], path)
    again = expect_exit(tock("roughtime", "delegate", "--key", keys["seed"], "--out", path), 1)
    assert "it exists; --force replaces it" in again.stdout, again.stdout
    second = delegate(keys["seed"], path, "--force", "--not-before", "2030-01-01", "--valid", "12h")
    assert second[1] != first[1] and second[2:] == (1893456000, 1893456000 + 12 * 3600)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "delegation"], "a temporary file was left behind"
    expect_exit(tock("roughtime", "delegate", "--key", keys["seed"], "--out", tmp_path / "x", "--valid", "soon"), 64)
    os.chmod(keys["seed"], 0o644)
    try:
        refused = expect_exit(tock("roughtime", "delegate", "--key", keys["seed"], "--out", tmp_path / "y"), 1)
        assert "can be read by others" in refused.stdout and "chmod 600" in refused.stdout, refused.stdout
    finally:
        os.chmod(keys["seed"], 0o600)


def test_reply_verifies_under_the_long_term_key(server, keys):
    answer = ask(server.port("roughtime"), keys["long_term"])
    assert answer is not None, server.log.text()
    verified, online = answer
    assert online == keys["online"]
    assert keys["mint"] <= verified.midpoint <= keys["maxt"]
    assert abs(verified.midpoint - time.time()) < 3 and verified.radius >= 3
    # Another long-term key does not verify it.
    with pytest.raises(roughtime_client.Bad):
        ask(server.port("roughtime"), Ed25519PrivateKey.generate().public_key().public_bytes_raw())


def test_expiry_in_logs_metrics_and_status(server, keys):
    # Under 3 days left: the log warns once the server runs.
    server.log.wait_for(r"warning .*the Roughtime delegation expires in (1 d 23|2 d 0) h", proc=server)
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert f'tockd_roughtime_delegation_expiry_timestamp_seconds{{source="file"}} {keys["maxt"]}.0' in metrics, metrics
    remaining = float(re.search(r'tockd_roughtime_delegation_remaining_seconds\{source="file"\} (\S+)', metrics)[1])
    assert abs(remaining - (keys["maxt"] - time.time())) < 60
    with urllib.request.urlopen(f"http://{server.metrics}/status", timeout=5) as r:
        status = json.loads(r.read())["roughtime"]
    assert status["delegation_source"] == "file" and status["delegation_file"] == str(keys["path"])
    assert status["delegation_expiry"] == keys["maxt"] and status["delegation_start"] == keys["mint"]
    assert status["long_term_public_key"] == base64.b64encode(keys["long_term"]).decode()
    out = expect_ok(tock("status", server.metrics)).stdout
    assert "roughtime: delegation signed offline" in out and "left: sign the next delegation" in out, out


def test_sighup_reads_a_new_delegation_and_keeps_it_over_a_bad_one(server, keys):
    port = server.port("roughtime")
    _, online, _, maxt = delegate(keys["seed"], keys["path"], "--force", "--valid", "10d")
    server.reload(expect="Roughtime delegation reloaded")
    assert ask(port, keys["long_term"])[1] == online
    # A tampered file (MAXT edited) is refused and the new delegation keeps serving.
    text = keys["path"].read_text()
    keys["path"].write_text(re.sub(r"^maxt: \d+$", f"maxt: {maxt + 86400}", text, flags=re.M))
    server.reload(expect="Roughtime delegation reload failed")
    assert "not the certificate's MINT and MAXT" in server.log.text()
    assert ask(port, keys["long_term"])[1] == online
    keys["path"].write_text(text)
    os.chmod(keys["path"], 0o600)


def test_tockd_refuses_bad_delegations(keys, tmp_path):
    base = ["--ntp", "127.0.0.1:0", "--roughtime", "127.0.0.1:0", "--clock-source", "local"]

    expired = tmp_path / "expired"
    delegate(keys["seed"], expired, "--not-before", "2020-01-01", "--valid", "1d")
    r = tockd_run(*base, "--roughtime-delegation", expired)
    assert r.returncode == 1 and "expired at 2020-01-02T00:00:00Z" in r.stdout, r.stdout

    readable = tmp_path / "readable"
    delegate(keys["seed"], readable)
    os.chmod(readable, 0o644)
    r = tockd_run(*base, "--roughtime-delegation", readable)
    assert r.returncode == 1 and "can be read by others" in r.stdout and "chmod 600" in r.stdout, r.stdout

    tampered = tmp_path / "tampered"
    delegate(keys["seed"], tampered)
    other = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    tampered.write_text(re.sub(r"^long-term-public-key: .*$", f"long-term-public-key: {other}", tampered.read_text(), flags=re.M))
    os.chmod(tampered, 0o600)
    r = tockd_run(*base, "--roughtime-delegation", tampered)
    assert r.returncode == 1 and "signature does not verify" in r.stdout, r.stdout

    r = tockd_run(*base, "--roughtime-delegation", keys["path"], "--roughtime-key", keys["seed"])
    assert r.returncode == 1 and "not both" in r.stdout, r.stdout

    r = tockd_run(*base, "--roughtime-delegation", keys["path"], "--check-config")
    # --check-config aligns the values in a column: any run of spaces before the "=".
    assert r.returncode == 0 and re.search(r'^roughtime\.delegation_file +' + re.escape(f'= "{keys["path"]}"') + '$', r.stdout, re.M), r.stdout
