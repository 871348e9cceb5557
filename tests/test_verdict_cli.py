"""``python -m coordinator import | detect | events`` as a researcher runs them (subprocesses)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from coordinator.verdict.synthetic import Campaign, Fault, inside

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_import_detect_events_round_trip(tmp_path: Path) -> None:
    c = Campaign(t0=T0, duration_s=110, faults=[Fault(30, 75, "fail", inside)])
    records = c.records()
    plain = tmp_path / "records.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in records[:3000]))
    packed = tmp_path / "records.jsonl.gz"
    with gzip.open(packed, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records[2000:])   # overlaps: 1000 duplicates
    data = tmp_path / "data"

    first = cli("import", "--data", str(data), str(plain))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"inserted": 3000, "duplicate": 0, "rejected": 0, "reasons": []}
    second = cli("import", "--data", str(data), str(packed))
    assert json.loads(second.stdout)["inserted"] == len(records) - 3000
    assert json.loads(second.stdout)["duplicate"] == 1000

    bad = tmp_path / "bad.jsonl"
    changed = dict(records[0], runtime_s=99.0)                          # same id, other content
    bad.write_text(json.dumps(records[1]) + "\n{not json\n" + json.dumps({"measurement_id": "x"}) + "\n"
                   + json.dumps(changed) + "\n")
    out = cli("import", "--data", str(data), str(bad))
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert (doc["inserted"], doc["duplicate"], doc["rejected"]) == (0, 1, 3)
    assert any("line 2: invalid JSON" in r for r in doc["reasons"])
    assert any("line 3:" in r and "missing required key" in r for r in doc["reasons"])
    assert any("conflict" in r for r in doc["reasons"])

    # no heartbeats in an archive: detection from the measurements alone
    since, until = "2023-11-14T22:13:20Z", str(T0 + 110)
    run1 = cli("detect", "--data", str(data), "--since", since, "--until", until, "--json")
    assert run1.returncode == 0, run1.stderr
    s1 = json.loads(run1.stdout)
    assert s1["created"] >= 1 and s1["by_kind"] == {"blackout": 1} and s1["transitions"] == 3
    run2 = json.loads(cli("detect", "--data", str(data), "--since", since, "--until", until, "--json").stdout)
    assert run2["created"] == 0 and run2["transitions"] == 0 and run2["updated"] == s1["created"]

    listed = cli("events", "--data", str(data), "--json", "--country", "KZ", "--kind", "blackout")
    (event,) = json.loads(listed.stdout)["events"]
    assert event["scope"] == "KZ" and event["state"] == "resolved" and event["signals"] == ["inside"]
    text = cli("events", "--data", str(data))
    assert event["event_id"] in text.stdout and "1 event(s)" in text.stdout
    none = cli("events", "--data", str(data), "--state", "suspected", "--json")
    assert json.loads(none.stdout)["count"] == 0


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    out = cli("events", "--data", str(tmp_path), "--kind", "meltdown")
    assert out.returncode == 2 and "kind must be one of" in out.stderr
    out = cli("detect", "--data", str(tmp_path), "--since", "noon", "--until", "1")
    assert out.returncode == 2 and "ISO 8601" in out.stderr
    out = cli("detect", "--data", str(tmp_path), "--since", "100", "--until", "50")
    assert out.returncode == 2 and "after --since" in out.stderr
    out = cli("import", "--data", str(tmp_path), str(tmp_path / "missing.jsonl"))
    assert out.returncode == 2 and "no such file" in out.stderr
    out = cli("events", "--data", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no database" in out.stderr
