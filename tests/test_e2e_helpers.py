"""Helpers for tests with real processes (no tests here): coordinator and probe subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TOCSIN_ADMIN_TOKEN": "e2e-admin"}


class Proc:
    """A child process whose output goes to a log file; stopped by its own pid only."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None):
        self.log_path = log
        self.log: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in kill()
        self.p = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**ENV, **(env or {})},
                                  stdout=self.log, stderr=subprocess.STDOUT)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            content = self.log_path.read_text(errors="replace")
            if text in content:
                return content
            if self.p.poll() is not None:
                raise RuntimeError(f"process exited ({self.p.returncode}):\n{content[-3000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not seen in {self.log_path}:\n{self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
        self.log.close()


def start_coordinator(data: Path, port: int = 0, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    """Start `python -m coordinator serve`; returns the process and its base URL."""
    data.mkdir(parents=True, exist_ok=True)
    proc = Proc(["-m", "coordinator", "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
                data / f"serve-{len(list(data.glob('serve-*.log')))}.log", env)
    content = proc.wait_for("listening on http")
    lines = [ln for ln in content.splitlines() if ln.startswith("listening on http")]
    return proc, lines[-1].split()[-1]


def run(args: list[str], timeout: float = 60) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def register_probe(data: Path, url: str, state: Path, cc: str = "KZ", asn: int = 9198) -> str:
    import json

    invite = run(["-m", "coordinator", "invite", "--data", str(data)]).strip()
    doc = json.loads(run(["-m", "probe", "register", "--coordinator", url, "--invite", invite, "--state", str(state),
                          "--cc", cc, "--asn", str(asn)]))
    (state / "probe.toml").write_text('allow_ranges = ["127.0.0.0/8"]\n')
    return str(doc["probe_id"])


def sql(data: Path, query: str, *args: Any) -> list[Any]:
    import sqlite3

    conn = sqlite3.connect(f"file:{data / 'tocsin.db'}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def wait_until(cond: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``cond`` every 0.2 s until it is true; TimeoutError(what) after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise TimeoutError(what)
