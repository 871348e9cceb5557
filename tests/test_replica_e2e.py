"""An in-country replica with real processes on loopback: it syncs the registry, campaigns and
measurements; a probe whose primary is down uploads to it; everything reaches the upstream exactly
once afterwards, heartbeats included, and the probe goes back to its primary."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from test_e2e_helpers import Proc, run, sql, start_coordinator, wait_until

TOKEN = "replica-e2e-token"


def count(data: Path, query: str, *args: object) -> int:
    return int(sql(data, query, *args)[0][0])


def test_replica_syncs_takes_over_and_forwards_everything_exactly_once(tmp_path: Path, web_target: str) -> None:
    up_data, rep_data, state = tmp_path / "upstream", tmp_path / "replica", tmp_path / "probe"
    upstream, url = start_coordinator(up_data, env={"TOCSIN_REPLICA__TOKEN": TOKEN})
    port = int(url.rsplit(":", 1)[1])
    replica, rep_url = start_coordinator(rep_data, env={
        "TOCSIN_REPLICA__UPSTREAM": url, "TOCSIN_REPLICA__UPSTREAM_TOKEN": TOKEN, "TOCSIN_REPLICA__SYNC_S": "0.3",
        "TOCSIN_REPLICA__REGISTRY_S": "0.5", "TOCSIN_REPLICA__TIMEOUT_S": "2"})
    agent = None
    try:
        invite = run(["-m", "coordinator", "invite", "--data", str(up_data)]).strip()
        probe_id = json.loads(run(["-m", "probe", "register", "--coordinator", url, "--coordinator", rep_url,
                                   "--invite", invite, "--state", str(state), "--cc", "KZ", "--asn", "9198"]))["probe_id"]
        (state / "probe.toml").write_text('allow_ranges = ["127.0.0.0/8"]\n')
        assert json.loads((state / "identity.json").read_text())["endpoints"] == [url, rep_url]
        targets = "".join(f'[[target]]\nname = "web{i}"\nurl = "{web_target}/{i}"\ncategory = "domestic"\ntests = ["http"]\n'
                          for i in range(4))
        camp = tmp_path / "c.toml"
        camp.write_text(f'name = "lab"\ncountry = "KZ"\ntests = ["http"]\ninterval_s = 1\n{targets}')
        campaign_id = run(["-m", "coordinator", "campaign", "add", "--data", str(up_data), str(camp)]).strip()
        # the registry and the campaign reach the replica (public key, network; never an address)
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM probes WHERE probe_id = ?", probe_id) == 1
                   and count(rep_data, "SELECT count(*) FROM campaigns WHERE campaign_id = ?", campaign_id) == 1,
                   20, "registry and campaign synced")
        assert sql(rep_data, "SELECT public_key, declared_asn FROM probes")[0] == \
            sql(up_data, "SELECT public_key, declared_asn FROM probes")[0]
        assert count(rep_data, "SELECT count(*) FROM probe_networks WHERE probe_id = ?", probe_id) >= 1

        agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "0.5"], tmp_path / "agent.log")
        wait_until(lambda: count(up_data, "SELECT count(*) FROM measurements") >= 8, 40, "uploads to the primary")
        # ... and the replica pulls them (its verdict engine's baseline), heartbeats too
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM measurements") >= 8, 20, "measurements pulled")
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM probe_heartbeats") >= 3, 20, "heartbeats pulled")
        assert count(rep_data, "SELECT count(*) FROM replica_outbox") == 0    # nothing uploaded to it yet

        upstream.kill(signal.SIGTERM)                       # the primary is out of reach
        cut = time.time()
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM upload_chain") >= 8, 40, "uploads to the replica")
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM probe_heartbeats WHERE ts > ?", cut + 1) >= 3, 20,
                   "polls answered by the replica")
        upstream, _ = start_coordinator(up_data, port, env={"TOCSIN_REPLICA__TOKEN": TOKEN})
        back = time.time()
        # the probe returns to its primary within its recheck time (3 s at this poll interval)
        wait_until(lambda: count(up_data, "SELECT count(*) FROM probe_heartbeats WHERE ts > ?", back) >= 2
                   and count(up_data, "SELECT count(*) FROM upload_chain WHERE received_ts > ?", back) >= 1,
                   30, "probe back on the primary")
        run(["-m", "coordinator", "campaign", "stop", "--data", str(up_data), campaign_id])
        wait_until(lambda: json.loads(run(["-m", "probe", "status", "--state", str(state), "--json"]))
                   .get("buffered") == 0, 30, "probe outbox empty once the campaign stopped")
        agent.kill(signal.SIGTERM)
        agent = None
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM replica_outbox") == 0, 30, "replica outbox drained")

        # every measurement the probe handed to the replica is at the upstream, exactly once
        at_replica = {r[0] for r in sql(rep_data, "SELECT measurement_id FROM upload_chain WHERE measurement_id IS NOT NULL")}
        up_ids = [r[0] for r in sql(up_data, "SELECT measurement_id FROM measurements")]
        assert at_replica and at_replica <= set(up_ids) and len(up_ids) == len(set(up_ids))
        # ... with its upload-chain links, as if the probe had uploaded it there itself
        up_links = {r[0] for r in sql(up_data, "SELECT measurement_id FROM upload_chain WHERE measurement_id IS NOT NULL")}
        assert at_replica <= up_links
        # the probe's heartbeats during the cut reached the upstream, each once
        beats = sql(up_data, "SELECT ts FROM probe_heartbeats WHERE probe_id = ? AND ts > ? AND ts < ?", probe_id, cut + 1, back)
        assert len(beats) >= 3 and len(beats) == len({b[0] for b in beats})
        rep_beats = {r[0] for r in sql(rep_data, "SELECT ts FROM probe_heartbeats WHERE probe_id = ? AND ts > ? AND ts < ?",
                                        probe_id, cut + 1, back)}
        assert {b[0] for b in beats} == rep_beats
        last_seen = sql(up_data, "SELECT last_seen_ts FROM probes WHERE probe_id = ?", probe_id)[0][0]
        assert last_seen >= max(rep_beats)
        # and the replica has everything the upstream has (pulled back, idempotently: no copies)
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM measurements") == len(up_ids), 20, "replica caught up")
        rep_ids = [r[0] for r in sql(rep_data, "SELECT measurement_id FROM measurements")]
        assert sorted(rep_ids) == sorted(up_ids)
    finally:
        if agent is not None:
            agent.kill(signal.SIGTERM)
        replica.kill(signal.SIGTERM)
        upstream.kill(signal.SIGTERM)


def test_a_probe_the_replica_does_not_know_yet_makes_it_pull_the_registry(tmp_path: Path, web_target: str) -> None:
    up_data, rep_data, state = tmp_path / "upstream", tmp_path / "replica", tmp_path / "probe"
    upstream, url = start_coordinator(up_data, env={"TOCSIN_REPLICA__TOKEN": TOKEN})
    replica, rep_url = start_coordinator(rep_data, env={
        "TOCSIN_REPLICA__UPSTREAM": url, "TOCSIN_REPLICA__UPSTREAM_TOKEN": TOKEN, "TOCSIN_REPLICA__SYNC_S": "0.3",
        "TOCSIN_REPLICA__REGISTRY_S": "600"})
    agent = None
    try:
        wait_until(lambda: rep_data.joinpath("tocsin.db").exists()
                   and count(rep_data, "SELECT count(*) FROM replica_state") >= 1, 20, "first sync round")
        # a batch the upstream refuses for good (unknown probe) is set aside, not resent, and blocks nothing
        db = sqlite3.connect(rep_data / "tocsin.db", timeout=30)
        with db:
            db.execute("INSERT INTO replica_outbox (kind, probe_id, body, queued_ts) VALUES ('batch', 'p-gone', ?, ?)",
                       (b'{"items": []}', time.time()))
        db.close()
        invite = run(["-m", "coordinator", "invite", "--data", str(up_data)]).strip()
        probe_id = json.loads(run(["-m", "probe", "register", "--coordinator", url, "--coordinator", rep_url,
                                   "--invite", invite, "--state", str(state), "--cc", "KZ", "--asn", "9198"]))["probe_id"]
        (state / "probe.toml").write_text('allow_ranges = ["127.0.0.0/8"]\n')
        identity = json.loads((state / "identity.json").read_text())
        identity["endpoints"] = ["http://127.0.0.1:9", rep_url]        # its primary unreachable from the start
        (state / "identity.json").write_text(json.dumps(identity))
        assert count(rep_data, "SELECT count(*) FROM probes WHERE probe_id = ?", probe_id) == 0
        agent = Proc(["-m", "probe", "run", "--state", str(state), "--poll-interval", "0.5"], tmp_path / "agent.log")
        # its first poll is refused (401 unknown probe), which makes the replica pull the registry early
        wait_until(lambda: count(rep_data, "SELECT count(*) FROM probe_heartbeats WHERE probe_id = ?", probe_id) >= 2,
                   20, "polls answered by the replica")
        wait_until(lambda: count(up_data, "SELECT count(*) FROM probe_heartbeats WHERE probe_id = ?", probe_id) >= 2,
                   20, "heartbeats forwarded upstream")
        status = json.loads(run(["-m", "probe", "status", "--state", str(state), "--json"]))
        assert status["endpoint"] == rep_url
        assert sql(rep_data, "SELECT kind, probe_id FROM replica_outbox WHERE kind LIKE 'refused:%'") == \
            [("refused:batch", "p-gone")]
    finally:
        if agent is not None:
            agent.kill(signal.SIGTERM)
        replica.kill(signal.SIGTERM)
        upstream.kill(signal.SIGTERM)
