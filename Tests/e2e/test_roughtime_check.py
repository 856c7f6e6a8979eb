"""`tock roughtime check`: a measurement sequence over three servers (RFC 10049 §8.2), two
honest tockd instances with keys of their own and one lying server (Tests/interop/
roughtime_liar.py, an hour ahead); the malfeasance report (§8.4) is checked here with code that
shares nothing with tock (Tests/interop/roughtime_client.py)."""
import base64
import json
import re
import sys

import pytest

from conftest import INTEROP, expect_exit, expect_ok, tock

sys.path.insert(0, str(INTEROP))
import roughtime_client  # noqa: E402

VIOLATION = 13


def honest(module_procs, tmp_path_factory, name):
    key = tmp_path_factory.mktemp(name) / "seed"
    out = expect_ok(tock("roughtime", "keygen", key)).stdout
    public = re.search(r"public key \(base64\) +(\S+)", out)[1]
    proc = module_procs.tockd(name, "--ntp", "127.0.0.1:0", "--roughtime", "127.0.0.1:0", "--roughtime-key", key,
                              "--clock-source", "local")
    return {"name": name, "version": "IETF-Roughtime", "publicKeyType": "ed25519", "publicKey": public,
            "addresses": [{"protocol": "udp", "address": proc.addr("roughtime")}]}


@pytest.fixture(scope="module")
def servers(module_procs, tmp_path_factory):
    alpha = honest(module_procs, tmp_path_factory, "alpha")
    beta = honest(module_procs, tmp_path_factory, "beta")
    beta["version"] = 1  # lists in the wild write numbers, strings and names
    liar = module_procs.spawn("liar", [sys.executable, INTEROP / "roughtime_liar.py"])
    m = liar.log.wait_for(r"^port (\d+) public-key (\S+)$", proc=liar)
    lying = {"name": "liar", "version": "0x1", "publicKeyType": "ed25519", "publicKey": m[2],
             "addresses": [{"protocol": "udp", "address": f"127.0.0.1:{m[1]}"}]}
    return alpha, beta, lying


def write_list(path, entries):
    path.write_text(json.dumps({"servers": list(entries)}))
    return path


def test_honest_servers_agree(servers, tmp_path):
    report = tmp_path / "report.json"
    out = expect_ok(tock("roughtime", "check", write_list(tmp_path / "servers.json", servers[:2]), "--report", report)).stdout
    assert out.count(" ok") == 4, out
    assert "causally consistent" in out
    assert not report.exists()


def test_liar_is_reported(servers, tmp_path):
    report = tmp_path / "report.json"
    out = expect_exit(tock("roughtime", "check", write_list(tmp_path / "servers.json", servers), "--report", report), VIOLATION).stdout
    # The sequence alpha, beta, liar, alpha, beta, liar: the liar's first reply is an hour
    # after the honest replies that follow it.
    rows = [line for line in out.splitlines() if re.search(r"#\d ", line)]
    assert len(rows) == 6, out
    assert "inconsistent with #4 alpha, #5 beta" in rows[2], out
    assert "malfeasance report" in out
    data = json.loads(report.read_text())
    entries = data["responses"]
    assert len(entries) == 6
    assert "rand" not in entries[0] and all("rand" in e for e in entries[1:])
    keys = [base64.b64decode(s["publicKey"]) for s in servers] * 2
    assert [base64.b64decode(e["publicKey"]) for e in entries] == keys
    # Signatures, Merkle proofs, chained nonces and the violation itself, checked independently.
    times = roughtime_client.check_report(data, keys)
    assert times[2].midpoint - times[3].midpoint >= 3600 - 5


def test_report_check_catches_a_broken_chain(servers, tmp_path):
    report = tmp_path / "report.json"
    expect_exit(tock("roughtime", "check", write_list(tmp_path / "servers.json", servers), "--report", report), VIOLATION)
    data = json.loads(report.read_text())
    data["responses"][2]["rand"] = base64.b64encode(bytes(32)).decode()
    keys = [base64.b64decode(s["publicKey"]) for s in servers] * 2
    with pytest.raises(roughtime_client.Bad, match="chained"):
        roughtime_client.check_report(data, keys)


def test_unreachable_server_and_bad_list(servers, tmp_path):
    silent = dict(servers[0], name="silent", addresses=[{"protocol": "udp", "address": "127.0.0.1:9"}])
    out = expect_exit(tock("roughtime", "check", write_list(tmp_path / "s.json", [servers[0], silent]), "--timeout", "0.3"), 14).stdout
    assert "no verified reply" in out
    wrong_key = dict(servers[1], publicKey=servers[0]["publicKey"])
    out = expect_exit(tock("roughtime", "check", write_list(tmp_path / "k.json", [servers[0], wrong_key])), 14).stdout
    assert "not signed by the public key" in out
    (tmp_path / "bad.json").write_text("{\"servers\": [{\"name\": \"x\"}]}")
    assert "publicKey" in expect_exit(tock("roughtime", "check", tmp_path / "bad.json"), 64).stdout


def test_bench_roughtime_verifies_a_sample(servers):
    alpha = servers[0]
    out = expect_ok(tock("bench", alpha["addresses"][0]["address"], "--protocol", "roughtime", "--public-key", alpha["publicKey"],
                         "--duration", "0.5", "--verify-every", "4", "--json")).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["answered"] > 0 and r["invalid"] == 0, out
    assert r["roughtime_verified"] >= r["answered"] // 4 - 1, out


def test_servers_listed_with_tcp_addresses_only_are_checked_over_tcp(servers, tmp_path):
    tcp_only = [dict(s, addresses=[{"protocol": "tcp", "address": s["addresses"][0]["address"]}]) for s in servers[:2]]
    out = expect_ok(tock("roughtime", "check", write_list(tmp_path / "tcp.json", tcp_only))).stdout
    assert out.count(" ok") == 4, out
    assert "causally consistent" in out


def test_keygen_lists_the_udp_and_the_tcp_address(tmp_path):
    out = expect_ok(tock("roughtime", "keygen", tmp_path / "seed")).stdout
    entry = json.loads(out[out.index("{"):])
    assert [a["protocol"] for a in entry["addresses"]] == ["udp", "tcp"], entry
