"""Errors a user can make, and the exit status each gives (tock query: 2 timeout, 6 resolution,
7 network, 64 usage; tockd: 1 cannot serve, 64 usage)."""
import socket

import pytest

from conftest import expect_exit, expect_ok, tock, tockd_run

# tockd invocations that must end by themselves; one that serves instead is killed past this.
EXITS_WITHIN = 30


def test_tockd_rejects_a_bad_prefix():
    expect_exit(tockd_run("--deny", "10.0.0.0/40", timeout=EXITS_WITHIN), 64)


def test_tockd_rejects_an_unknown_service_in_an_access_list():
    expect_exit(tockd_run("--allow", "smtp=10.0.0.0/8", timeout=EXITS_WITHIN), 64)


def test_tockd_rejects_an_out_of_range_rate_limit():
    expect_exit(tockd_run("--rate-limit", "--rate-limit-leak", "9", timeout=EXITS_WITHIN), 64)


def test_tock_query_times_out_on_a_silent_server():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        expect_exit(tock("query", f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.3"), 2)


def test_tock_query_reports_a_refused_port(closed_ports):
    expect_exit(tock("query", f"127.0.0.1:{closed_ports.udp}", "--timeout", "0.3"), 7)


def test_tock_query_reports_resolution_failure():
    expect_exit(tock("query", "host.invalid"), 6)


def test_tock_query_rejects_n_0():
    expect_exit(tock("query", "127.0.0.1", "-n", "0"), 64)


KEY = "SSM38R/rN62smY3UMfdhvcgYTrjVARi3JMfSwZwkTVc="


@pytest.mark.parametrize("args, says", [
    (["--protocol", "roughtime", "--public-key", KEY, "--roughtime-version", "0x8000000d"], "--roughtime-version must be"),
    (["--roughtime-version", "1"], "--roughtime-version applies to --protocol roughtime"),
])
def test_tock_query_rejects_a_roughtime_version_it_cannot_check(args, says):
    r = expect_exit(tock("query", "127.0.0.1", *args), 64)
    assert says in r.stdout, r


@pytest.fixture(scope="module")
def bind_failure(sync_server):
    """tockd asked for NTP on a free port and Daytime on the synchronised server's port."""
    port = sync_server.port("daytime")
    return port, tockd_run("--ntp", "127.0.0.1:0", "--daytime", f"127.0.0.1:{port}", timeout=EXITS_WITHIN)


def test_tockd_names_the_address_on_a_bind_failure(bind_failure):
    expect_exit(bind_failure[1], 1)


def test_bind_failure_message_names_address_reason_and_fix(bind_failure):
    port, r = bind_failure
    assert f"cannot bind UDP 127.0.0.1:{port}: address already in use; another server" in r.stdout, r.stdout


def test_tockd_rejects_stratum_16():
    expect_exit(tockd_run("--stratum", "16", timeout=EXITS_WITHIN), 64)


# The synchronised server serves NTP: a second tockd must not join it through SO_REUSEPORT.

@pytest.fixture(scope="module")
def second_tockd(sync_server):
    port = sync_server.port("ntp")
    return port, tockd_run("--ntp", f"127.0.0.1:{port}", "--clock-source", "local", timeout=EXITS_WITHIN)


def test_a_second_tockd_on_a_taken_ntp_port_exits_1(second_tockd):
    expect_exit(second_tockd[1], 1)


def test_second_tockd_bind_message_names_the_address(second_tockd):
    port, r = second_tockd
    assert f"cannot bind UDP 127.0.0.1:{port}: address already in use" in r.stdout, r.stdout


def test_and_the_first_tockd_still_answers(sync_server, second_tockd):
    expect_ok(tock("query", sync_server.addr("ntp"), "-n", "1"))


@pytest.mark.parametrize("args", [
    ("--interleaved",),  # closed loop with 4 in flight per client: each would ask about a superseded reply
    ("--tx-timestamps", "--protocol", "time"),  # kernel T1 is for NTP
    ("--interleaved", "--nts"),
])
def test_tock_bench_rejects_client_timestamp_modes_that_cannot_measure(args):
    expect_exit(tock("bench", "127.0.0.1:9", *args), 64)

