"""NTS (RFC 8915) end to end: an independent client (pyOpenSSL, OpenSSL's TLS exporter and the
`cryptography` package's AES-SIV, in Tests/interop/nts_client.py), chronyd 4.3 as an NTS client,
and hostile input to both halves — NTS-KE over TLS and NTS-protected NTP — each refused,
counted by reason in /status, and never answered with more bytes than were sent.
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.request

import pytest
from OpenSSL import SSL

from conftest import INTEROP, REPO, run, tock, wait_until

sys.path.insert(0, str(INTEROP))
import nts_client as nts  # noqa: E402


def make_certificate(directory):
    subprocess.run([str(REPO / "scripts" / "throwaway-certificate"), str(directory)], check=True, capture_output=True)
    return directory / "cert.pem", directory / "key.pem"


@pytest.fixture(scope="module")
def server(module_procs, tmp_path_factory):
    directory = tmp_path_factory.mktemp("nts")
    cert, key = make_certificate(directory)
    master = directory / "cookie.key"
    master.write_bytes(os.urandom(32))
    master.chmod(0o600)
    d = module_procs.tockd("nts", "--ntp", "127.0.0.1:0", "--nts-ke", "127.0.0.1:0", "--nts-certificate", cert,
                           "--nts-private-key", key, "--nts-key-file", master, "--clock-source", "local",
                           "--metrics", "127.0.0.1:0")
    d.cert, d.key, d.master, d.dir = cert, key, master, directory
    d.metrics = d.wait_metrics()
    d.ke = d.port("nts-ke")
    d.ntp = d.port("ntp")
    return d


def status(d):
    with urllib.request.urlopen(f"http://{d.metrics}/status", timeout=2) as response:
        document = json.load(response)
    return {(s["name"], s["transport"]): s for s in document["services"]}


def drops(d, service, transport, reason):
    return status(d)[(service, transport)]["drops"].get(reason, 0)


def eventually(condition, what):
    wait_until(condition, 10, what)


def send(d, packet, timeout=0.5):
    """One datagram to the NTP port; the reply or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(packet, ("127.0.0.1", d.ntp))
        return s.recv(4096)
    except socket.timeout:
        return None
    finally:
        s.close()


# --- the independent client ---------------------------------------------------------------

def test_independent_client_authenticates_every_reply(server):
    session = nts.ke("127.0.0.1", server.ke, str(server.cert))
    assert len(session.cookies) == 8 and session.ntp_port == server.ntp  # the port is announced: not 123
    before = status(server)[("ntp", "udp")]["authenticated"]
    for placeholders in (0, 1, 3, 7):
        cookies, sent, received = nts.exchange(session, server.ntp, placeholders)
        assert len(cookies) == 1 + placeholders
        assert received == sent, "a reply as long as its request, never longer"
    eventually(lambda: status(server)[("ntp", "udp")]["authenticated"] >= before + 4, "authenticated replies counted")


def test_many_placeholders_get_eight_cookies_and_sixty_four_are_too_long(server):
    session = nts.ke("127.0.0.1", server.ke, str(server.cert))
    # 16 placeholders: eight cookies back, in a reply shorter than the request.
    packet, uid, transmit = session.request(placeholders=16)
    reply = send(server, packet)
    assert reply is not None and len(reply) < len(packet)
    assert len(session.check(reply, uid, transmit)) == 8
    # 64 placeholders make a 6.8 kB datagram, past the 2048 bytes tockd reads: dropped unread.
    before = drops(server, "ntp", "udp", "oversized")
    packet, _, _ = session.request(placeholders=64)
    assert len(packet) > 2048 and send(server, packet) is None
    eventually(lambda: drops(server, "ntp", "udp", "oversized") > before, "oversized counted")


def test_replayed_request_is_answered_and_the_client_rejects_the_second_reply(server):
    # RFC 8915 leaves replay protection to the client's Unique Identifier: the server answers.
    session = nts.ke("127.0.0.1", server.ke, str(server.cert))
    packet, uid, transmit = session.request()
    first, second = send(server, packet), send(server, packet)
    assert first and second
    session.check(first, uid, transmit)
    with pytest.raises(ValueError):
        session.check(second[:48] + bytes(len(second) - 48), uid, transmit)


# --- chronyd as an NTS client -----------------------------------------------------------------

def chronyd_offset(server, ntsport, dumpdir=None, timeout=25):
    directives = [f"server 127.0.0.1 port {server.ntp} nts ntsport {ntsport} iburst maxsamples 4",
                  f"ntstrustedcerts {server.cert}", "nosystemcert"]
    if dumpdir:
        directives.append(f"ntsdumpdir {dumpdir}")
    out = run(["timeout", str(timeout), "chronyd", "-Q", "-u", "root", "-f", "/dev/null", "-t", str(timeout - 5), *directives],
              timeout=timeout + 10).stdout
    for line in out.splitlines():
        if "System clock wrong by" in line:
            return float(line.split("wrong by")[1].split()[0])
    return None


def test_chronyd_synchronises_over_nts(server):
    before = status(server)[("ntp", "udp")]["authenticated"]
    offset = chronyd_offset(server, server.ke)
    assert offset is not None and abs(offset) < 1e-3, f"chronyd offset {offset}"
    assert status(server)[("ntp", "udp")]["authenticated"] >= before + 1


def test_chronyd_with_tampered_cookies_and_no_key_establishment_never_synchronises(server, tmp_path):
    # chronyd keeps its cookies in ntsdumpdir on exit and uses them at the next start.
    assert chronyd_offset(server, server.ke, dumpdir=tmp_path) is not None
    dump = tmp_path / "127.0.0.1.nts"
    assert dump.exists(), "chronyd saved its cookies"
    # chronyd 4.3's dump: a version line, the KE host, a time, the NTP address and port, the
    # keys, then one cookie per line in hex. One bit of each cookie is flipped.
    lines = dump.read_text().splitlines()
    tampered = lines[:5]
    for line in lines[5:]:
        assert len(line) > 64 and all(c in "0123456789ABCDEF" for c in line.upper()), line
        position = 60  # inside the encrypted keys, past the key id and nonce
        tampered.append(line[:position] + format(int(line[position], 16) ^ 1, "X") + line[position + 1:])
    assert len(tampered) > 5, "chronyd saved cookies"
    dump.write_text("\n".join(tampered) + "\n")
    refused = naks(server)
    # NTS-KE pointed at a closed port: chronyd has only the tampered cookies.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    assert chronyd_offset(server, closed_port, dumpdir=tmp_path, timeout=15) is None, "chronyd took time from a tampered cookie"
    assert naks(server) > refused, "the tampered cookies were NAKed"


def test_chronyd_recovers_after_the_cookie_key_is_rotated_out(module_procs, server, tmp_path):
    # Cookies from a server whose master has since changed: NAK, then a new NTS-KE.
    assert chronyd_offset(server, server.ke, dumpdir=tmp_path) is not None
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    # A second server with another master on ports of its own: chronyd's saved cookies are for
    # the first server's keys, so the second NAKs them and chronyd runs NTS-KE with it.
    second = module_procs.tockd("nts-second", "--ntp", "127.0.0.1:0", "--nts-ke", "127.0.0.1:0", "--nts-certificate", server.cert,
                                "--nts-private-key", server.key, "--nts-key-file", other, "--clock-source", "local",
                                "--metrics", "127.0.0.1:0")
    second.metrics = second.wait_metrics()
    second.cert = server.cert
    dump = tmp_path / "127.0.0.1.nts"
    assert dump.exists()
    # chronyd keys its dump by address; point the saved cookies at the second server's NTP port.
    text = dump.read_text().replace(f" {server.ntp}\n", f" {second.port('ntp')}\n")
    dump.write_text(text)
    second.ntp = second.port("ntp")
    offset = chronyd_offset(second, second.port("nts-ke"), dumpdir=tmp_path)
    assert offset is not None and abs(offset) < 1e-3, "chronyd recovered with a new NTS-KE"
    assert naks(second) >= 1, "the first server's cookies were refused by the second"
    assert status(second)[("nts-ke", "tcp")]["replies"] >= 1, "and chronyd ran NTS-KE again"


# --- hostile NTS-KE -------------------------------------------------------------------------

def ke_drops(server, reason):
    return drops(server, "nts-ke", "tcp", reason)


def test_garbage_instead_of_tls_is_counted_as_a_failed_handshake(server):
    before = ke_drops(server, "tls_handshake")
    with socket.create_connection(("127.0.0.1", server.ke), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(200))
        s.settimeout(3)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    eventually(lambda: ke_drops(server, "tls_handshake") > before, "garbage counted")


def test_tls_1_2_is_refused(server):
    before = ke_drops(server, "tls_handshake")
    with pytest.raises(SSL.Error):
        nts.tls_connect("127.0.0.1", server.ke, str(server.cert), min_version=SSL.TLS1_2_VERSION, max_version=SSL.TLS1_2_VERSION)
    eventually(lambda: ke_drops(server, "tls_handshake") > before, "TLS 1.2 counted")


def test_tls_without_alpn_is_closed_without_a_response(server):
    before = ke_drops(server, "no_alpn")
    conn = nts.tls_connect("127.0.0.1", server.ke, str(server.cert), alpn=None)
    try:
        conn.sendall(nts.ke_request())
    except SSL.Error:
        pass
    assert nts.read_all(conn) == b""
    eventually(lambda: ke_drops(server, "no_alpn") > before, "no ALPN counted")


def ke_exchange(server, request):
    conn = nts.tls_connect("127.0.0.1", server.ke, str(server.cert))
    conn.sendall(request)
    return nts.parse_records(nts.read_all(conn))


def test_unknown_critical_record_gets_error_zero(server):
    before = ke_drops(server, "bad_request")
    records = ke_exchange(server, nts.record(True, 1, struct.pack(">H", 0)) + nts.record(True, 0x1234, b"xy") + nts.record(True, 0))
    assert (True, 2, struct.pack(">H", 0)) in records and records[-1][1] == 0
    assert not any(t == 5 for _, t, _ in records), "no cookies"
    eventually(lambda: ke_drops(server, "bad_request") > before, "counted")


def test_missing_next_protocol_and_records_after_the_end_get_error_one(server):
    for request in (nts.record(True, 4, struct.pack(">H", 15)) + nts.record(True, 0),
                    nts.ke_request() + nts.record(True, 1, b"\x00\x00")):
        records = ke_exchange(server, request)
        assert (True, 2, struct.pack(">H", 1)) in records, records


def test_huge_and_truncated_records(server):
    before = ke_drops(server, "bad_request")
    # A record that claims 60000 bytes: past the 4096-byte limit, refused before it all arrives.
    records = ke_exchange(server, struct.pack(">HH", 0x8001, 60000) + bytes(5000))
    assert (True, 2, struct.pack(">H", 1)) in records
    # Half a request, then the client closes: counted, nothing to answer.
    conn = nts.tls_connect("127.0.0.1", server.ke, str(server.cert))
    conn.sendall(nts.ke_request()[:5])
    conn.shutdown()
    conn.sock_shutdown(socket.SHUT_RDWR)
    conn.close()
    eventually(lambda: ke_drops(server, "bad_request") >= before + 2, "both counted")


def test_a_request_dribbled_byte_by_byte_is_cut_off(server):
    # One byte every 0.5 s never trips the 5 s idle timeout, but the exchange has 10 s in all,
    # and this request (an AEAD record offering 40 algorithms) takes 30 s to send.
    before = ke_drops(server, "timeout")
    conn = nts.tls_connect("127.0.0.1", server.ke, str(server.cert))
    start = time.monotonic()
    request = nts.record(True, 1, b"\x00\x00") + nts.record(True, 4, bytes(80)) + nts.record(True, 0)
    closed = False
    for i in range(len(request)):
        try:
            conn.sendall(request[i:i + 1])
        except SSL.Error:
            closed = True
            break
        time.sleep(0.5)
        if time.monotonic() - start > 14:
            break
    if not closed:
        closed = nts.read_all(conn) == b""
    assert closed and time.monotonic() - start < 15
    eventually(lambda: ke_drops(server, "timeout") > before, "timeout counted")


def test_the_time_service_answers_during_a_connection_flood(server):
    socks = [socket.create_connection(("127.0.0.1", server.ke), timeout=3) for _ in range(50)]
    try:
        assert tock("query", "--nts", f"127.0.0.1:{server.ke}", "--ca", server.cert).returncode == 0
    finally:
        for s in socks:
            s.close()


# --- hostile NTS-protected NTP ----------------------------------------------------------------

@pytest.fixture(scope="module")
def session(server):
    return nts.ke("127.0.0.1", server.ke, str(server.cert))


def header():
    return bytes([0x23]) + bytes(39) + os.urandom(8)


def check_dropped(server, packet, reason):
    before = drops(server, "ntp", "udp", reason)
    reply = send(server, packet)
    if reply is not None:
        assert len(reply) <= len(packet)
    eventually(lambda: drops(server, "ntp", "udp", reason) > before, f"{reason} counted")
    return reply


def naks(server):
    return (status(server)[("ntp", "udp")].get("kisses") or {}).get("nts_bad_cookie", 0)


def test_forged_cookie_gets_a_nak_echoing_the_unique_identifier(server, session):
    before = naks(server)
    packet, uid, transmit = session.request(cookie=os.urandom(100))
    reply = send(server, packet)
    assert reply is not None and len(reply) <= len(packet)
    with pytest.raises(nts.NAK):
        session.check(reply, uid, transmit)
    eventually(lambda: naks(server) > before, "the NAK counted by reason")


def test_wrong_tag_gets_nothing(server, session):
    packet, _, _ = session.request()
    tampered = packet[:-1] + bytes([packet[-1] ^ 1])
    assert check_dropped(server, tampered, "nts_bad_authenticator") is None


def test_malformed_nts_fields_get_nothing(server, session):
    cookie = session.cookies[0]
    uid = os.urandom(32)
    cases = {
        "no unique identifier": header() + nts.ef(nts.COOKIE, cookie),
        "short unique identifier": header() + nts.ef(nts.UID, bytes(16)) + nts.ef(nts.COOKIE, cookie),
        "two cookies": header() + nts.ef(nts.UID, uid) + nts.ef(nts.COOKIE, cookie) + nts.ef(nts.COOKIE, cookie),
        "placeholder of another length": header() + nts.ef(nts.UID, uid) + nts.ef(nts.COOKIE, cookie) + nts.ef(nts.PLACEHOLDER, bytes(len(cookie) + 4)),
        "no authenticator": header() + nts.ef(nts.UID, uid) + nts.ef(nts.COOKIE, cookie),
    }
    for name, packet in cases.items():
        packet = nts.seal(session.c2s, packet) if name != "no authenticator" else packet
        assert check_dropped(server, packet, "nts_malformed") is None, name
    # The authenticator not last: a field after it.
    sealed = nts.seal(session.c2s, header() + nts.ef(nts.UID, uid) + nts.ef(nts.COOKIE, cookie)) + nts.ef(0x0F00, bytes(28))
    assert check_dropped(server, sealed, "nts_malformed") is None
    # An authenticator whose nonce and ciphertext run past its end.
    bad = header() + nts.ef(nts.UID, uid) + nts.ef(nts.COOKIE, cookie) + nts.ef(nts.AUTH, struct.pack(">HH", 16, 400) + bytes(32))
    assert check_dropped(server, bad, "nts_malformed") is None


def test_extension_field_running_past_the_datagram_is_malformed_ntp(server, session):
    packet, _, _ = session.request()
    truncated = packet[:48] + struct.pack(">HH", nts.UID, 4000) + packet[52:100]
    before = drops(server, "ntp", "udp", "malformed")
    assert send(server, truncated) is None
    eventually(lambda: drops(server, "ntp", "udp", "malformed") > before, "malformed counted")


# --- certificates and keys --------------------------------------------------------------------

def peer_fingerprint(port, ca):
    conn = nts.tls_connect("127.0.0.1", port, str(ca))
    fingerprint = conn.get_peer_certificate().digest("sha256")
    conn.close()
    return fingerprint


def test_sighup_installs_a_renewed_certificate_without_closing_the_listener(procs, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, key = make_certificate(first)
    new_cert, new_key = make_certificate(second)
    live_cert, live_key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    live_key.chmod(0o600)
    config = tmp_path / "t.toml"
    config.write_text(f'[ntp]\nlisten = ["127.0.0.1:0"]\n[clock]\nsource = "local"\n[nts]\nlisten = ["127.0.0.1:0"]\n'
                      f'certificate = "{live_cert}"\nprivate_key = "{live_key}"\n')
    d = procs.tockd("nts-renew", "--config", config)
    port = d.port("nts-ke")
    before = peer_fingerprint(port, cert)
    # The ACME client renews: new files in place, then `systemctl reload`.
    live_cert.write_bytes(new_cert.read_bytes())
    live_key.write_bytes(new_key.read_bytes())
    d.reload()
    after = peer_fingerprint(port, new_cert)
    assert before != after and d.port("nts-ke") == port
    # A broken pair is refused and the renewed one stays.
    live_key.write_text("not a key\n")
    d.reload(expect="reload failed; keeping the running configuration")
    assert peer_fingerprint(port, new_cert) == after


def test_keys_others_can_read_are_refused_at_start(tmp_path):
    cert, key = make_certificate(tmp_path)
    key.chmod(0o644)
    result = run([str(__import__("conftest").TOCKD), "--ntp", "127.0.0.1:0", "--nts-ke", "127.0.0.1:0",
                  "--nts-certificate", cert, "--nts-private-key", key, "--clock-source", "local"])
    assert result.returncode == 1 and "can be read by others" in result.stdout and "chmod 600" in result.stdout, result.stdout
    key.chmod(0o600)
    master = tmp_path / "cookie.key"
    master.write_bytes(os.urandom(32))
    master.chmod(0o640)
    result = run([str(__import__("conftest").TOCKD), "--ntp", "127.0.0.1:0", "--nts-key-file", master, "--clock-source", "local"])
    assert result.returncode == 1 and "can be read by others" in result.stdout, result.stdout
    master.write_bytes(os.urandom(16))
    master.chmod(0o600)
    result = run([str(__import__("conftest").TOCKD), "--ntp", "127.0.0.1:0", "--nts-key-file", master, "--clock-source", "local"])
    assert result.returncode == 1 and "at least 32" in result.stdout, result.stdout
