"""NTP from a synchronised, an unsynchronised and a wildcard tockd, seen by ntplib, rdate, the
independent validator (Tests/interop/ntp_validate.py) and tock query / tock bench."""
import json
import socket

import ntplib
import pytest

from conftest import expect_exit, expect_ok, interop, run, tock


def ntplib_request(host, port, **kwargs):
    return ntplib.NTPClient().request(host, port=port, **kwargs)


def ntplib_samples(host, port, version, count=5):
    """`count` ntplib replies, the one with the lowest round-trip delay first. ntplib takes T4 in
    Python after recv() returns, so a client descheduled there (on a busy machine) measures an
    offset off by the time it waited; an offset's error is at most half its sample's delay, and
    NTP clients trust the sample with the lowest delay for that reason."""
    return sorted((ntplib_request(host, port, version=version) for _ in range(count)), key=lambda r: r.delay)


# A synchronised server (sync_server: local clock declared authoritative, stratum 3).

def test_ntplib_v4_stratum_3_leap_0_offset_below_1ms(sync_server):
    samples = ntplib_samples("127.0.0.1", sync_server.port("ntp"), 4)
    assert all(r.stratum == 3 and r.leap == 0 for r in samples), [(r.stratum, r.leap) for r in samples]
    best = samples[0]
    assert abs(best.offset) < 1e-3, [(r.offset, r.delay) for r in samples]


def test_ntplib_v3_over_ipv6(sync_server):
    samples = ntplib_samples("::1", sync_server.port("ntp", "::1"), 3)
    assert all(r.version == 3 and r.stratum == 3 for r in samples), [(r.version, r.stratum) for r in samples]
    best = samples[0]
    assert abs(best.offset) < 1e-3, [(r.offset, r.delay) for r in samples]


def test_rdate_sntp(sync_server):
    expect_ok(run(["rdate", "-p", "-n", "-o", sync_server.port("ntp"), "127.0.0.1"]))


def test_independent_ntp_validator_ipv4(sync_server):
    expect_ok(interop("ntp_validate.py", "127.0.0.1", sync_server.port("ntp"), "--requests", "5000"))


def test_independent_ntp_validator_ipv6(sync_server):
    expect_ok(interop("ntp_validate.py", "::1", sync_server.port("ntp", "::1"), "--requests", "1000"))


def test_tock_query_synchronised_offset_below_1ms(sync_server):
    # tock reports the sample with the lowest delay of -n (see ntplib_samples).
    d = json.loads(expect_ok(tock("query", sync_server.addr("ntp"), "-n", "5", "--interval", "0.01", "--json")).stdout)
    assert d["synchronized"] and d["stratum"] == 3 and abs(d["offset"]) < 1e-3, d


def test_tock_query_n5_over_ipv6(sync_server):
    expect_ok(tock("query", sync_server.addr("ntp", "::1"), "-n", "5"))


def test_tock_bench_closed_loop_every_reply_valid(sync_server):
    r = expect_ok(tock("bench", sync_server.addr("ntp"), "--duration", "1", "--clients", "16", "--json"))
    d = json.loads(r.stdout)
    assert d["answered"] > 1000 and d["invalid"] == 0 and d["kiss_of_death"] == 0 and d["lost"] == 0, d


def test_tock_bench_open_loop_steps_and_time_protocol(sync_server):
    r = expect_ok(tock("bench", sync_server.addr("ntp"), "--duration", "0.5", "--rate", "2000", "--step", "2000",
                       "--steps", "2", "--json"))
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and all(row["invalid"] == 0 and row["answered"] > 500 for row in rows), rows
    r = expect_ok(tock("bench", sync_server.addr("time"), "--protocol", "time", "--duration", "0.5", "--clients", "4",
                       "--window", "1", "--json"))
    d = json.loads(r.stdout)
    assert d["answered"] > 100 and d["invalid"] == 0, d


# A wildcard listener answers from the address each request was sent to (IP_PKTINFO /
# IPV6_PKTINFO): tock's connected socket accepts a reply only from the address it queried.

@pytest.fixture(scope="module")
def wildcard_server(module_procs):
    return module_procs.tockd("wildcard", "--ntp", "0.0.0.0:0", "--ntp", "[::]:0", "--clock-source", "local")


def test_wildcard_ipv4_listener_answers_from_127_0_0_5_and_127_0_0_9(wildcard_server):
    port = wildcard_server.port("ntp", "0.0.0.0")
    expect_ok(tock("query", f"127.0.0.5:{port}"))
    expect_ok(tock("query", f"127.0.0.9:{port}"))


def test_wildcard_ipv6_listener_answers_from_ipv6_loopback(wildcard_server):
    expect_ok(tock("query", f"[::1]:{wildcard_server.port('ntp', '::')}"))


def test_requests_from_2000_sockets_closed_before_the_reply_leave_the_server_answering(wildcard_server):
    # Clients that vanish before their reply (ICMP port unreachable for the server's sends)
    # must not disturb the server.
    port = wildcard_server.port("ntp", "0.0.0.0")
    for _ in range(2000):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(bytes([0x23]) + bytes(47), ("127.0.0.1", port))
        s.close()
    expect_ok(tock("query", f"127.0.0.1:{port}"))


# An unsynchronised server (unsync_server): NTP says leap 3 / stratum 0.

def test_tock_query_refuses_an_unsynchronised_server(unsync_server):
    expect_exit(tock("query", unsync_server.addr("ntp")), 4)


def test_ntplib_sees_leap_3_from_an_unsynchronised_server(unsync_server):
    r = ntplib_request("127.0.0.1", unsync_server.port("ntp"))
    assert r.leap == 3 and r.stratum == 0, (r.leap, r.stratum)


def test_validator_every_reply_unsynchronised(unsync_server):
    expect_ok(interop("ntp_validate.py", "127.0.0.1", unsync_server.port("ntp"), "--requests", "500", "--unsynchronized"))
