"""`coordinator serve --upstream URL`: the command-line way to run an in-country replica."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

from test_e2e_helpers import Proc


def test_serve_upstream_flag_makes_a_replica(tmp_path: Path) -> None:
    data = tmp_path / "replica"
    data.mkdir()
    upstream = "http://127.0.0.1:9"      # never answers: the replica must still serve, and refuse registration
    proc = Proc(["-m", "coordinator", "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--upstream", upstream],
                tmp_path / "serve.log", {"TOCSIN_REPLICA__UPSTREAM_TOKEN": "t0ken"})
    try:
        line = [ln for ln in proc.wait_for("listening on http").splitlines() if ln.startswith("listening on")][-1]
        url = line.split()[-1]
        req = urllib.request.Request(f"{url}/api/v1/register", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("a replica accepted a registration")
        except urllib.error.HTTPError as exc:
            assert exc.code == 409
            assert f"replica of {upstream}" in json.loads(exc.read())["error"]
    finally:
        proc.kill(signal.SIGTERM)


def test_serve_upstream_without_token_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "replica"
    data.mkdir()
    proc = Proc(["-m", "coordinator", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
                 "--upstream", "http://127.0.0.1:9"], tmp_path / "serve.log", {})
    try:
        code = proc.p.wait(timeout=30)
    finally:
        proc.kill()
    assert code != 0
    assert "neither upstream_token nor upstream_token_file" in (tmp_path / "serve.log").read_text()
