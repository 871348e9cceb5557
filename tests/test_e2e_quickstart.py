"""The main job: `python -m coordinator quickstart` works offline, stops on Ctrl-C, reruns cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from test_e2e_helpers import ENV, ROOT, sql


def test_quickstart_runs_records_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "qs.log"
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "coordinator", "quickstart", "--data", str(data),
                              "--listen", "127.0.0.1:0"], cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while "Press Ctrl-C" not in log.read_text() and time.time() < deadline:
                assert p.poll() is None, log.read_text()
                time.sleep(0.2)
            time.sleep(25)
            p.send_signal(signal.SIGINT)
            assert p.wait(timeout=30) == 0, log.read_text()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = log.read_text()
    for needle in ("/api/v1/measurements?format=jsonl", "/api/v1/probes", "python -m probe status --state",
                   str(data / "tocsin.db"), "stopped:"):
        assert needle in text, needle
    assert sql(data, "SELECT count(*) FROM probes")[0][0] == 1
    assert sql(data, "SELECT name FROM campaigns") == [("quickstart",)]
    assert sql(data, "SELECT count(*) FROM probe_heartbeats")[0][0] >= 1
    n = sql(data, "SELECT count(*) FROM measurements")[0][0]
    assert n >= 1, text   # offline, the failures are the data
    # a second run reuses the probe and the campaign
    out2 = subprocess.run([sys.executable, "-m", "coordinator", "quickstart", "--data", str(data), "--listen",
                           "127.0.0.1:0", "--duration", "5"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=90)
    assert out2.returncode == 0, out2.stderr
    assert sql(data, "SELECT count(*) FROM probes")[0][0] == 1 and sql(data, "SELECT count(*) FROM campaigns")[0][0] == 1
