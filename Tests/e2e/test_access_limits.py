"""Abuse resistance: rate limits with kisses, access lists, reflection-prone source ports."""
import os
import socket

import pytest

from conftest import expect_exit, expect_ok, tock


def ntp_request(transmit):
    """An NTPv4 client request (mode 3) with the given transmit timestamp."""
    return bytes([0x23]) + bytes(39) + transmit


def exchange(source, port, payload, timeout):
    """Sends `payload` from `source` (an address on loopback, any port) to 127.0.0.1:`port`;
    returns the reply, or None if none came within `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", port))
        try:
            return s.recv(100)
        except socket.timeout:
            return None


@pytest.fixture(scope="module")
def limited_server(module_procs):
    """Rate limited: a burst of 2, no leak, a RATE kiss once a bucket is empty. Each test uses a
    source address (and service) of its own, so their buckets are independent."""
    return module_procs.tockd("limited", "--ntp", "127.0.0.1:0", "--daytime", "127.0.0.1:0", "--time", "127.0.0.1:0",
                              "--clock-source", "local", "--rate-limit", "--rate-limit-interval", "4",
                              "--rate-limit-burst", "2", "--rate-limit-leak", "0", "--rate-limit-kod")


def test_rate_limit_2_answers_then_one_rate_kiss_then_silence(limited_server):
    # tock uses a new source port for every query: rotating source ports do not help.
    codes = [tock("query", limited_server.addr("ntp"), "--timeout", "0.3").returncode for _ in range(5)]
    assert codes == [0, 0, 3, 2, 2], codes


def test_rate_limit_per_address_so_another_source_address_is_still_answered(limited_server):
    port = limited_server.port("ntp")
    # First one address is limited...
    replies = [exchange("127.0.0.56", port, ntp_request(os.urandom(8)), 1) for _ in range(3)]
    assert [r is not None and r[1] != 0 for r in replies] == [True, True, False], replies
    # ...then another is answered all the same.
    r = exchange("127.0.0.55", port, ntp_request(os.urandom(8)), 1)
    assert r is not None, "no reply"
    assert r[1] != 0, "kissed"


def test_rate_limit_applies_to_time_over_udp_and_tcp(limited_server):
    codes = [tock("query", limited_server.addr("time"), "--protocol", "time", "--timeout", "0.3").returncode
             for _ in range(3)]
    assert codes == [0, 0, 2], codes
    tcp = tock("query", limited_server.addr("time"), "--protocol", "time", "--tcp", "--timeout", "0.5")
    assert tcp.returncode != 0, tcp.stdout


def test_daytime_ignores_datagrams_from_reflection_prone_ports(limited_server):
    # memcached 11211, SSDP 1900: the source ports are what this checks, so they are fixed (on an
    # address of their own).
    port = limited_server.port("daytime")
    for source_port in (11211, 1900):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.77", source_port))
            s.settimeout(0.3)
            s.sendto(b"x", ("127.0.0.1", port))
            try:
                reply = s.recv(100)
            except socket.timeout:
                continue
            pytest.fail(f"answered port {source_port}: {reply!r}")


@pytest.fixture(scope="module")
def denied_server(module_procs):
    return module_procs.tockd("denied", "--ntp", "127.0.0.1:0", "--daytime", "127.0.0.1:0", "--time", "127.0.0.1:0",
                              "--clock-source", "local", "--allow", "127.0.0.0/8", "--deny", "127.0.0.2/32",
                              "--deny-kiss", "DENY", "--deny", "time=127.0.0.0/8")


def test_access_list_127_0_0_1_is_allowed(denied_server):
    expect_ok(tock("query", denied_server.addr("ntp")))


def test_access_list_denied_ntp_client_gets_a_deny_kiss(denied_server):
    t = os.urandom(8)
    r = exchange("127.0.0.2", denied_server.port("ntp"), ntp_request(t), 1)
    assert r is not None, "no reply"
    assert r[1] == 0 and r[12:16] == b"DENY" and r[24:32] == t, r


def test_access_list_denied_daytime_client_gets_nothing(denied_server):
    r = exchange("127.0.0.2", denied_server.port("daytime"), b"", 0.3)
    assert r is None, f"answered a denied client: {r!r}"


def test_per_service_access_list_time_denies_127_0_0_0_8_while_ntp_answers(denied_server):
    expect_exit(tock("query", denied_server.addr("time"), "--protocol", "time", "--timeout", "0.3"), 2)
    expect_ok(tock("query", denied_server.addr("ntp")))
