"""Shared by the benchmarks: start a real coordinator process on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_coordinator(data: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m coordinator serve`` on 127.0.0.1 (any port); returns the process and its URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    log = open(data / "serve.log", "wb")  # noqa: SIM115 - lives as long as the process
    p = subprocess.Popen([sys.executable, "-m", "coordinator", "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(400):   # at most 20 s
        m = re.search(r"listening on (http://\S+)", (data / "serve.log").read_text())
        if m:
            return p, m.group(1)
        time.sleep(0.05)
    p.kill()
    raise RuntimeError((data / "serve.log").read_text())
