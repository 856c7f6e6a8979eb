"""The generated configuration reference and the Roughtime worker setting, with the real tockd:
docs/configuration.md and deploy/tockd.toml are what the settings table makes, the shipped file
is the defaults, and --roughtime-workers reaches the resolved configuration apart from
--workers."""
import subprocess

import pytest

from conftest import REPO, TOCKD, clean_env, expect_exit, expect_ok, tockd_run


def reference(fmt):
    result = subprocess.run([TOCKD, "--print-reference", fmt], capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("fmt,path", [("markdown", "docs/configuration.md"), ("toml", "deploy/tockd.toml")])
def test_the_committed_reference_is_what_the_table_generates(fmt, path):
    assert reference(fmt) == (REPO / path).read_text(), f"{path} is stale: run scripts/generate-reference"


def test_an_unknown_reference_format_is_refused():
    result = expect_exit(tockd_run("--print-reference", "html"), 64)
    assert "--print-reference html: not a format; allowed: markdown or toml" in result.stdout, result.stdout


def test_the_shipped_example_resolves_to_the_defaults():
    result = expect_ok(tockd_run("--config", REPO / "deploy" / "tockd.toml", "--check-config"))
    settings = [line for line in result.stdout.splitlines()[1:] if not line.startswith("# ")]
    assert settings and all(line.endswith("# default") for line in settings), result.stdout


def test_roughtime_workers_from_the_flag_and_the_file(tmp_path):
    config = tmp_path / "workers.toml"
    config.write_text("[roughtime]\nworkers = 3\n[ntp]\nworkers = 2\n")
    result = expect_ok(tockd_run("--config", config, "--check-config"))
    assert any(line.startswith("roughtime.workers ") and line.endswith("= 3") for line in result.stdout.splitlines()), result.stdout
    assert any(line.startswith("ntp.workers ") and line.endswith("= 2") for line in result.stdout.splitlines()), result.stdout
    result = expect_ok(tockd_run("--config", config, "--roughtime-workers", "5", "--check-config"))
    assert any(line.startswith("roughtime.workers ") and line.endswith("= 5") for line in result.stdout.splitlines()), result.stdout


def test_roughtime_workers_out_of_range_is_an_error_naming_the_flag():
    result = expect_exit(tockd_run("--roughtime-workers", "0", "--check-config"), 64)
    assert "--roughtime-workers 0: out of range; allowed: 1-1024" in result.stdout, result.stdout


def test_help_shows_roughtime_workers_and_hides_print_reference():
    result = expect_ok(tockd_run("--help"))
    assert "--roughtime-workers" in result.stdout and "roughtime.workers" in result.stdout, result.stdout
    assert "--print-reference" not in result.stdout
