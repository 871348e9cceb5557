"""Store-and-forward with real processes on loopback: cut-offs and SIGKILLs lose and duplicate nothing."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from test_e2e_helpers import Proc, register_probe, run, sql, start_coordinator, wait_until

from probe.agent.outbox import Outbox
from probe.record import make_record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(state: Path) -> dict[str, object]:
    out = run(["-m", "probe", "status", "--state", str(state), "--json"])
    return dict(json.loads(out))


def test_cut_off_probe_keeps_measuring_and_delivers_everything_once(tmp_path: Path, web_target: str) -> None:
    data, state, port = tmp_path / "coord", tmp_path / "probe", free_port()
    coord, url = start_coordinator(data, port)
    agent = None
    try:
        probe_id = register_probe(data, url, state)
        camp = tmp_path / "lab.toml"
        targets = "".join(f'[[target]]\nname = "web{i}"\nurl = "{web_target}/{i}"\ncategory = "domestic"\ntests = ["http"]\n'
                          for i in range(5))
        camp.write_text(f'name = "lab"\ncountry = "KZ"\ntests = ["http"]\ninterval_s = 2\n{targets}')
        run(["-m", "coordinator", "campaign", "add", "--data", str(data), str(camp)])
        agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "1", "-v"], tmp_path / "agent.log")
        wait_until(lambda: sql(data, "SELECT count(*) FROM measurements")[0][0] >= 5, 30, "first uploads")
        coord.kill(signal.SIGTERM)                       # the line goes down
        cut_start = time.time()
        wait_until(lambda: (status(state).get("buffered") or 0) >= 20, 60, "results buffered while cut off")
        cut_end = time.time()
        s = status(state)
        assert str(s["last_poll_outcome"]).startswith("unreachable")
        heartbeats_before = sql(data, "SELECT count(*) FROM probe_heartbeats")[0][0]
        coord, _ = start_coordinator(data, port)         # the line comes back
        wait_until(lambda: status(state).get("buffered") == 0 and status(state).get("last_upload_outcome") == "ok",
                   60, "outbox drained after reconnection")
        # the schedule poll (the heartbeat) resumes on its own backoff, independently of the upload
        wait_until(lambda: sql(data, "SELECT count(*) FROM probe_heartbeats")[0][0] > heartbeats_before,
                   60, "heartbeat after reconnection")
        agent.kill(signal.SIGTERM)
        agent = None
        final = status(state)
        rows = sql(data, "SELECT measurement_id, start_ts, annotations FROM measurements WHERE probe_id = ?", probe_id)
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids))
        assert len(ids) + int(final["buffered"]) == final["tests_run"]      # counted on both sides
        assert final["rejected"] == 0
        measured_in_cut = [r for r in rows if cut_start <= r[1] <= cut_end]
        assert len(measured_in_cut) >= 10                                  # it kept measuring while cut off
        assert json.loads(rows[0][2])["target_category"] == "domestic"
        assert sql(data, "SELECT count(*) FROM chain_gaps")[0][0] == 0
    finally:
        if agent:
            agent.kill()
        coord.kill()


def prefill(state: Path, n: int) -> set[str]:
    ident = json.loads((state / "identity.json").read_text())
    p = ident["probe"]
    box = Outbox(state / "outbox.db")
    ids = set()
    now = time.time()
    batch = []
    for i in range(n):
        r = make_record(test_name="tcp", test_version="1.0.0", target=f"192.0.2.{i % 250}:443",
                        start_time=datetime.fromtimestamp(now - n + i, UTC), runtime_s=0.01, success=i % 7 != 0,
                        failure=None if i % 7 else "timeout", test_keys={"connect_ms": i / 10}, probe_id=p["probe_id"],
                        probe_cc=p["cc"], probe_asn=p["asn"], probe_access=p["access"],
                        annotations={"target_category": "domestic", "target_cc": "KZ", "target_group": "x", "vantage": "inside"})
        batch.append(r)
        ids.add(r["measurement_id"])
    box.append_many(batch)
    assert box.verify() == n
    box.close()
    return ids


def outbox_ids(state: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0] for r in conn.execute("SELECT item_id FROM items WHERE kind = 'record'")}
    finally:
        conn.close()


def test_coordinator_sigkilled_mid_upload_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data, state, port = tmp_path / "coord", tmp_path / "probe", free_port()
    coord, url = start_coordinator(data, port)
    agent = None
    try:
        register_probe(data, url, state)
        coord.kill()
        all_ids = prefill(state, 12_000)
        for _round in range(2):                           # two SIGKILLs in the middle of uploads
            coord, _ = start_coordinator(data, port)
            if agent is None:
                agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "1",
                              "--batch-items", "300"], tmp_path / "agent.log")
            base = sql(data, "SELECT count(*) FROM measurements")[0][0]
            wait_until(lambda b=base: sql(data, "SELECT count(*) FROM measurements")[0][0] > b + 600, 60, "uploads under way")
            coord.kill(signal.SIGKILL)
            acknowledged = all_ids - outbox_ids(state)    # what the probe was told is safe
            stored = {r[0] for r in sql(data, "SELECT measurement_id FROM measurements")}
            assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged results are missing"
            assert len(stored) < len(all_ids)
        coord, _ = start_coordinator(data, port)
        wait_until(lambda: not outbox_ids(state), 120, "outbox drained")
        rows = sql(data, "SELECT measurement_id FROM measurements")
        assert len(rows) == len(all_ids) and {r[0] for r in rows} == all_ids
    finally:
        if agent:
            agent.kill(signal.SIGTERM)
        coord.kill()


def test_agent_sigkilled_while_writing_reopens_intact_and_delivers(tmp_path: Path, web_target: str) -> None:
    data, state, port = tmp_path / "coord", tmp_path / "probe", free_port()
    coord, url = start_coordinator(data, port)
    agent = None
    try:
        register_probe(data, url, state)
        camp = tmp_path / "lab.toml"
        targets = "".join(f'[[target]]\nname = "w{i}"\nurl = "{web_target}/{i}"\ncategory = "domestic"\ntests = ["http"]\n'
                          for i in range(20))
        camp.write_text(f'name = "lab"\ncountry = "KZ"\ntests = ["http"]\ninterval_s = 1\n{targets}')
        run(["-m", "coordinator", "campaign", "add", "--data", str(data), str(camp)])
        agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "1"], tmp_path / "agent.log")
        wait_until(lambda: (state / "schedule.json").exists(), 30, "first schedule")
        coord.kill(signal.SIGKILL)
        wait_until(lambda: (status(state).get("buffered") or 0) >= 30, 60, "outbox filling")
        agent.kill(signal.SIGKILL)                       # in the middle of 20 tests a second
        box = Outbox(state / "outbox.db")
        held = box.verify()
        assert held == box.count() and held >= 30
        box.close()
        coord, _ = start_coordinator(data, port)
        agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "1"], tmp_path / "agent2.log")
        wait_until(lambda: sql(data, "SELECT count(*) FROM measurements")[0][0] >= held, 60, "delivery after restart")
        ids = [r[0] for r in sql(data, "SELECT measurement_id FROM measurements")]
        assert len(ids) == len(set(ids)) and sql(data, "SELECT count(*) FROM chain_gaps")[0][0] == 0
    finally:
        if agent:
            agent.kill(signal.SIGTERM)
        coord.kill()
