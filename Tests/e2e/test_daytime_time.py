"""Daytime (RFC 867) and Time (RFC 868) from a synchronised and an unsynchronised tockd, seen by
the seed's own client, rdate and tock query."""
import re
import sys

from conftest import HMS_LINE, SEED, expect_exit, expect_ok, run, tock


def test_seed_client_prints_the_time(sync_server):
    assert SEED.is_file(), f"the seed client is missing at {SEED}"
    r = expect_ok(run([sys.executable, SEED, "127.0.0.1", sync_server.port("daytime")]))
    assert re.search(r"^Time from Server:  [0-9]{2}:[0-9]{2}:[0-9]{2}$", r.stdout, re.M), r.stdout


def test_rdate_rfc868_over_tcp(sync_server):
    expect_ok(run(["rdate", "-p", "-o", sync_server.port("time"), "127.0.0.1"]))


def test_rdate_rfc868_over_udp(sync_server):
    expect_ok(run(["rdate", "-p", "-u", "-o", sync_server.port("time"), "127.0.0.1"]))


def test_tock_query_daytime_over_udp_and_tcp(sync_server):
    udp = expect_ok(tock("query", sync_server.addr("daytime"), "--protocol", "daytime"))
    assert HMS_LINE.search(udp.stdout), udp.stdout
    tcp = expect_ok(tock("query", sync_server.addr("daytime"), "--protocol", "daytime", "--tcp"))
    assert HMS_LINE.search(tcp.stdout), tcp.stdout


def test_tock_query_time_over_udp_and_tcp(sync_server):
    expect_ok(tock("query", sync_server.addr("time"), "--protocol", "time"))
    expect_ok(tock("query", sync_server.addr("time"), "--protocol", "time", "--tcp"))


# An unsynchronised server (unsync_server): Daytime and Time stay silent.

def test_unsynchronised_time_over_udp_stays_silent(unsync_server):
    expect_exit(tock("query", unsync_server.addr("time"), "--protocol", "time", "--timeout", "0.3"), 2)


def test_unsynchronised_daytime_over_tcp_closes_without_data(unsync_server):
    expect_exit(tock("query", unsync_server.addr("daytime"), "--protocol", "daytime", "--tcp", "--timeout", "0.5"), 2)


def test_rdate_refuses_a_silent_time_server(unsync_server):
    expect_exit(run(["rdate", "-p", "-o", unsync_server.port("time"), "127.0.0.1"]), 1)
