"""`tockd --hw-timestamping`: on interfaces whose driver has no PTP hardware clock (loopback
here, and this host's virtual NIC) tockd says why in its log, in `tock status` and in its
metrics, and serves with software timestamps; a name that cannot be an interface is refused
before anything starts; a configuration file takes the same list."""
import re

from conftest import expect_exit, expect_ok, run, tock, tockd_run

EXITS_WITHIN = 30


def test_tockd_rejects_a_name_that_cannot_be_an_interface():
    r = tockd_run("--hw-timestamping", "eth0/1", timeout=EXITS_WITHIN)
    expect_exit(r, 64)
    assert "--hw-timestamping" in r.stdout and "not an interface name" in r.stdout, r.stdout
    r = tockd_run("--hw-timestamping", "a-name-too-long-for-linux", timeout=EXITS_WITHIN)
    expect_exit(r, 64)
    assert "longer than 15 bytes" in r.stdout, r.stdout


def test_loopback_keeps_software_timestamps_and_says_why(procs):
    server = procs.tockd("hw", "--ntp", "127.0.0.1:0", "--clock-source", "local", "--metrics", "127.0.0.1:0",
                         "--hw-timestamping", "lo", "--hw-timestamping", "nosuch0")
    metrics = server.wait_metrics()
    log = server.log.text()
    assert "hardware timestamping unavailable: lo keeps software timestamps: the driver reports no PTP hardware clock (PHC)" in log, log
    assert "hardware timestamping unavailable: nosuch0 keeps software timestamps: no such interface" in log, log
    expect_ok(tock("query", server.addr("ntp"), "-n", "1"))
    status = expect_ok(tock("status", metrics)).stdout
    assert "hardware timestamping lo: software timestamps (the driver reports no PTP hardware clock (PHC))" in status, status
    assert "hardware timestamping nosuch0: software timestamps (no such interface)" in status, status
    body = run(["python3", "-c", f"import urllib.request; print(urllib.request.urlopen('http://{metrics}/metrics').read().decode())"]).stdout
    assert re.search(r'^tockd_ntp_hardware_timestamping\{interface="lo"\} 0(\.0)?$', body, re.M), body


def test_every_interface_that_can_none_here(procs, tmp_path):
    config = tmp_path / "hw.toml"
    config.write_text('[ntp]\nlisten = ["127.0.0.1:0"]\nhw_timestamping = ["*"]\n\n[clock]\nsource = "local"\n')
    server = procs.tockd("hw-all", "--config", config)
    expect_ok(tock("query", server.addr("ntp"), "-n", "1"))
    assert "hardware timestamping unavailable: no interface can (*); every packet keeps software timestamps" in server.log.text(), server.log.text()
