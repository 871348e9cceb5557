"""``python -m probe measure`` / ``tests`` as scripts use them: real subprocesses, exit codes, JSON."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.probers import names
from probe.record import validate


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "probe", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_measure_json_prints_a_valid_record(listener: int) -> None:
    done = probe("measure", "tcp", f"127.0.0.1:{listener}", "--allow-private", "--json")
    assert done.returncode == 0, done.stderr
    record = validate(json.loads(done.stdout))
    assert record["success"] is True and record["test_keys"]["port"] == listener


def test_network_failure_still_exits_zero() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    done = probe("measure", "tcp", f"127.0.0.1:{port}", "--allow-private", "--param", "connect_timeout_s=2")
    assert done.returncode == 0
    assert f"tcp 127.0.0.1:{port}: FAILED connection_refused" in done.stdout


def test_guard_refusal_exits_3(listener: int) -> None:
    done = probe("measure", "tcp", f"2130706433:{listener}", "--json")
    assert done.returncode == 3 and done.stdout == ""
    assert "loopback 127.0.0.1" in done.stderr and "--allow-private" in done.stderr


def test_config_allow_ranges(listener: int, tmp_path: Path) -> None:
    config = tmp_path / "probe.toml"
    config.write_text('allow_ranges = ["127.0.0.0/8"]\n')
    done = probe("measure", "tcp", f"127.0.0.1:{listener}", "--config", str(config))
    assert done.returncode == 0 and ": ok (" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["measure", "tcp", "192.0.2.1:80", "--param", "connect_timeout_s=zero"], "must be number"),
    (["measure", "tcp", "192.0.2.1:80", "--param", "nope=1"], "unknown parameter nope"),
    (["measure", "tcp", "192.0.2.1"], "must be host:port"),
    (["measure", "smtp", "192.0.2.1"], "invalid choice: 'smtp'"),
    (["measure", "tcp", "192.0.2.1:80", "--config", "/nonexistent/probe.toml"], "cannot read"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = probe(*args)
    assert done.returncode == 2 and message in done.stderr


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "probe.toml"
    config.write_text("max_pps = -1\n")
    done = probe("measure", "tcp", "192.0.2.1:80", "--config", str(config))
    assert done.returncode == 2 and "max_pps must be between 1 and 100000" in done.stderr


def test_cannot_run_exits_4(tmp_path: Path) -> None:
    config = tmp_path / "probe.toml"
    config.write_text("max_throughput_bytes_per_hour = 0\n")
    done = probe("measure", "throughput", "http://127.0.0.1:9/", "--allow-private", "--config", str(config))
    assert done.returncode == 4 and "budget" in done.stderr


def test_tests_lists_every_test_and_parameter() -> None:
    done = probe("tests", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [t["name"] for t in listed] == names()
    http = next(t for t in listed if t["name"] == "http")
    assert "max_body_bytes" in [p["name"] for p in http["params"]] and http["version"] == "1.0.0"
    text = probe("tests")
    assert text.returncode == 0 and "  max_body_bytes (integer, default 1048576)" in text.stdout
