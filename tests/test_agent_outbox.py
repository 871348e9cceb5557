"""The outbox: hash chain, prefix acknowledgement, quota eviction with an exact drop report, SIGKILL."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_e2e_helpers import ENV, ROOT

from probe.agent.outbox import Outbox, OutboxError
from probe.record import make_record


def rec(i: int) -> dict[str, Any]:
    return make_record(test_name="tcp", test_version="1.0.0", target=f"192.0.2.{i % 250}:443",
                       start_time=datetime.fromtimestamp(1.7e9 + i, UTC), runtime_s=0.01, success=True,
                       failure=None, test_keys={"connect_ms": float(i), "pad": "x" * 100}, probe_id="p-1")


def test_chain_verifies_and_acknowledged_prefix_leaves(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    records = [rec(i) for i in range(10)]
    for r in records:
        assert box.append(r) == []
    assert box.verify() == 10
    batch = box.peek(4, 10**6)
    assert [i.item_id for i in batch] == [r["measurement_id"] for r in records[:4]]
    assert batch[1].prev == batch[0].hash
    box.acknowledge(batch, {records[2]["measurement_id"]: "conflict: ..."})
    assert box.verify() == 6 and box.stats()["rejected"] == 1
    with pytest.raises(OutboxError, match="not the outbox's oldest"):
        box.acknowledge(box.peek(5, 10**6)[2:], {})
    box.close()
    reopened = Outbox(tmp_path / "o.db")
    assert reopened.verify() == 6 and reopened.peek(1, 10**6)[0].prev == batch[-1].hash


def test_edit_inside_the_outbox_is_detected(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(5):
        box.append(rec(i))
    box.close()
    conn = sqlite3.connect(tmp_path / "o.db")
    payload = json.loads(conn.execute("SELECT payload FROM items WHERE seq = 3").fetchone()[0])
    payload["success"] = False
    conn.execute("UPDATE items SET payload = ? WHERE seq = 3", (json.dumps(payload),))
    conn.commit()
    conn.execute("DELETE FROM items WHERE seq = 4")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="seq 3"):
        Outbox(tmp_path / "o.db").verify()


def test_quota_evicts_oldest_and_reports_exactly_what(tmp_path: Path) -> None:
    size = len(json.dumps(rec(0)))
    box = Outbox(tmp_path / "o.db", quota_bytes=size * 20)
    evicted: list[str] = []
    ids = []
    for i in range(60):
        r = rec(i)
        ids.append(r["measurement_id"])
        evicted += box.append(r)
    assert evicted and evicted == ids[:len(evicted)]           # oldest first, in order
    assert box.verify() == box.count()
    items = box.peek(10_000, 10**9)
    drops = [i.payload for i in items if i.kind == "drop"]
    kept = [i.item_id for i in items if i.kind == "record"]
    reported = [m for d in drops for m in d["measurement_ids"]]
    assert sorted(reported) == sorted(evicted)                  # every evicted id reported, none twice
    assert sorted(kept + evicted) == sorted(ids)                # nothing lost silently
    assert sum(d["dropped_count"] for d in drops) == len(evicted)
    assert box.stats()["buffered_bytes"] <= size * 20


WRITER = """
import sys
from datetime import UTC, datetime
from probe.agent.outbox import Outbox
from probe.record import make_record
box = Outbox(sys.argv[1], quota_bytes=int(sys.argv[2]))
i = 0
while True:
    box.append(make_record(test_name="tcp", test_version="1.0.0", target="192.0.2.1:443",
               start_time=datetime.now(UTC), runtime_s=0.01, success=True, failure=None,
               test_keys={"i": i, "pad": "y" * 300}, probe_id="p-1"))
    i += 1
    if i == 50:
        print("writing", flush=True)
"""


@pytest.mark.parametrize("quota", [10**9, 40_000])   # plain appends, and appends that evict
def test_sigkill_while_writing_leaves_an_intact_outbox(tmp_path: Path, quota: int) -> None:
    path = tmp_path / "o.db"
    for _round in range(3):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(quota)], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "writing"
        time.sleep(0.3)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        p.stdout.close()
        box = Outbox(path, quota_bytes=quota)
        n = box.verify()
        assert n == box.count() and n > 0
        box.close()
