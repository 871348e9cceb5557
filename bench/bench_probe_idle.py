"""Idle probe memory: RSS of a process with the runner and every prober loaded (scapy not imported).

Target (issue 2): <= 40 MB.  Peers measured in the same run: a bare ``python -c`` process and an
idle asyncio + aiohttp + icmplib process (what any asyncio probe pays before its own code).
Medians of 5 runs of each.  Run: ``python bench/bench_probe_idle.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 40.0
RUNS = 5

PROBE = """
import asyncio, json, sys
import probe.runner
from probe import probers
from probe.guard import Guard
loaded, missing = [], []
for name in probers.names():
    try:
        probers.load(name)
        probe.runner.validate_params(name, {})
        loaded.append(name)
    except ImportError as exc:
        missing.append(f"{name}: {exc}")
guard = Guard()
print(json.dumps({"loaded": loaded, "missing": missing, "scapy": "scapy" in sys.modules}), flush=True)

async def idle():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)   # idle until the parent closes stdin
asyncio.run(idle())
"""

BARE = "import sys; print('{}', flush=True); sys.stdin.read()"
ASYNCIO_PEER = ("import asyncio, sys, aiohttp, icmplib; print('{}', flush=True)\n"
                "async def idle():\n    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)\n"
                "asyncio.run(idle())")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure(code: str) -> tuple[float, dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        info = json.loads(proc.stdout.readline() or "{}")
        time.sleep(0.5)                      # let it settle into idling
        rss = rss_mb(proc.pid)
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return rss, info


def main() -> int:
    rows = []
    info: dict[str, object] = {}
    for label, code in (("tocsin idle probe (runner + all probers)", PROBE), ("bare python -c", BARE),
                        ("asyncio + aiohttp + icmplib idle", ASYNCIO_PEER)):
        values = []
        for _ in range(RUNS):
            rss, got = measure(code)
            values.append(rss)
            info = got if code is PROBE else info
        rows.append((label, statistics.median(values), min(values), max(values)))
    ours = rows[0][1]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}   "
          f"python {sys.version.split()[0]}   runs: {RUNS} (median)")
    print(f"probers loaded: {', '.join(info.get('loaded', []))}")  # type: ignore[arg-type]
    if info.get("missing"):
        print(f"probers NOT loaded: {info['missing']}")
    print(f"scapy imported: {info.get('scapy')}")
    print(f"{'process':45} {'RSS MB':>8} {'min':>7} {'max':>7} {'ours/this':>10}")
    for label, median, low, high in rows:
        print(f"{label:45} {median:8.1f} {low:7.1f} {high:7.1f} {ours / median:10.2f}")
    verdict = "meets" if ours <= TARGET_MB else "MISSES"
    print(f"target <= {TARGET_MB:.0f} MB: {verdict} ({ours:.1f} MB)")
    return 1 if info.get("scapy") else 0


if __name__ == "__main__":
    sys.exit(main())
