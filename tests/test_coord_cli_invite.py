"""`python -m coordinator invite`: one token per line, `--count` for a batch of volunteers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


def invite(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator", "invite", "--data", str(data), *extra],
                          capture_output=True, text=True, timeout=60)


def test_count_makes_that_many_distinct_one_use_invites(tmp_path: Path) -> None:
    out = invite(tmp_path, "--count", "3", "--note", "lab")
    assert out.returncode == 0, out.stderr
    tokens = out.stdout.split()
    assert len(tokens) == len(set(tokens)) == 3 and all(t.startswith("inv-") for t in tokens)
    with sqlite3.connect(tmp_path / "tocsin.db") as c:
        rows = c.execute("SELECT note FROM invites").fetchall()
    assert rows == [("lab",)] * 3
    assert not any(t in (tmp_path / "tocsin.db").read_bytes().decode("latin-1") for t in tokens)   # only hashes kept


def test_bad_count_is_refused_with_a_reason(tmp_path: Path) -> None:
    out = invite(tmp_path, "--count", "0")
    assert out.returncode != 0 and "--count must be between 1 and 10000" in out.stderr
