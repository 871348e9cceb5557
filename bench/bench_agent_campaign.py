"""The probe agent running a 50-target campaign: RSS and CPU per hour of operation.

Our figure: the agent process (`python -m probe run`) running a campaign of 50 http targets every
60 s on loopback, with its coordinator.  Peer: a bare asyncio+aiohttp loop fetching the same 50
URLs every 60 s (no outbox, no signing, no uploads) - the floor for the same work - measured over
the same windows.  CPU is measured over WINDOW_S-second windows and extrapolated to an hour
(stated in the output); RSS is the resident size at the end of each window.  Medians of 3 windows.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchlib import start_coordinator  # noqa: E402

from probe.agent.cli import do_register  # noqa: E402

TARGETS, INTERVAL_S, WARMUP_S, WINDOW_S, WINDOWS = 50, 60, 30, 120, 3
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TOCSIN_ADMIN_TOKEN": "bench"}

PEER = """
import asyncio, sys, aiohttp
urls = sys.argv[2:]
async def main():
    async with aiohttp.ClientSession() as s:
        while True:
            for u in urls:
                try:
                    async with s.get(u) as r:
                        await r.read()
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(float(sys.argv[1]) / len(urls))
asyncio.run(main())
"""


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>" + b"x" * 2000 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def start(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_coordinator(data, ENV)


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/t{i}" for i in range(TARGETS)]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tc-camp-") as tmp:
        data, state = Path(tmp) / "coord", Path(tmp) / "probe"
        data.mkdir()
        coord, url = start(data)
        procs.append(coord)
        try:
            invite = subprocess.run([sys.executable, "-m", "coordinator", "invite", "--data", str(data)], cwd=ROOT,
                                    env=ENV, capture_output=True, text=True, check=True).stdout.strip()
            asyncio.run(do_register([url], invite, state, {"cc": "KZ", "asn": 9198}))
            (state / "probe.toml").write_text('allow_ranges = ["127.0.0.0/8"]\nmax_concurrent_tests = 8\n')
            camp = Path(tmp) / "camp.toml"
            camp.write_text(f'name = "bench50"\ncountry = "KZ"\ntests = ["http"]\ninterval_s = {INTERVAL_S}\n' + "".join(
                f'[[target]]\nname = "t{i}"\nurl = "{u}"\ncategory = "domestic"\ntests = ["http"]\n' for i, u in enumerate(urls)))
            subprocess.run([sys.executable, "-m", "coordinator", "campaign", "add", "--data", str(data), str(camp)],
                           cwd=ROOT, env=ENV, check=True, capture_output=True)
            agent = subprocess.Popen([sys.executable, "-m", "probe", "run", "--state", str(state), "--poll-interval", "60"],
                                     cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peer = subprocess.Popen([sys.executable, "-c", PEER, str(INTERVAL_S), *urls], cwd=ROOT, env=ENV)
            procs += [agent, peer]
            pa, pp = psutil.Process(agent.pid), psutil.Process(peer.pid)
            time.sleep(WARMUP_S)
            rows = []
            for _ in range(WINDOWS):
                ca, cp, t0 = cpu(pa), cpu(pp), time.time()
                time.sleep(WINDOW_S)
                el = time.time() - t0
                rows.append(((cpu(pa) - ca) * 3600 / el, pa.memory_info().rss / 2**20,
                             (cpu(pp) - cp) * 3600 / el, pp.memory_info().rss / 2**20))
            status = subprocess.run([sys.executable, "-m", "probe", "status", "--state", str(state)], cwd=ROOT, env=ENV,
                                    capture_output=True, text=True).stdout
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(timeout=30)
            server.shutdown()
    med = [statistics.median(r[i] for r in rows) for i in range(4)]
    load = os.getloadavg()
    print(f"agent, {TARGETS}-target http campaign every {INTERVAL_S} s on loopback; CPU measured over {WINDOWS} windows "
          f"of {WINDOW_S} s and extrapolated to one hour; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'process':<50}{'CPU s/hour':>12}{'RSS MB':>10}")
    print(f"{'tocsin probe agent (schedule, outbox, uploads)':<50}{med[0]:>12.1f}{med[1]:>10.1f}")
    print(f"{'bare aiohttp loop, same 50 fetches (peer floor)':<50}{med[2]:>12.1f}{med[3]:>10.1f}")
    print(f"{'ratio agent / peer':<50}{med[0] / med[2]:>12.2f}{med[1] / med[3]:>10.2f}")
    print("windows (agent cpu/rss, peer cpu/rss):", "; ".join(f"{a:.1f}/{b:.1f}, {c:.1f}/{d:.1f}" for a, b, c, d in rows))
    print(status)


if __name__ == "__main__":
    main()
