"""``python -m coordinator.atlas.standin`` as the lab runs it: a process on loopback with a
certificate from files, a probes file the lab rewrites, connection events for every change."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import trustme

from coordinator.atlas import standin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, cafile: str) -> Any:
    with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=cafile), timeout=5) as r:
        return json.loads(r.read())


def test_standin_process_reports_probe_changes(tls_ca: trustme.CA, tls_cafile: str, tmp_path: Path) -> None:
    cert = tls_ca.issue_cert("127.0.0.1")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    probes = tmp_path / "probes.json"
    entries = [{"id": 950000 + i, "asn_v4": 9198, "country_code": "KZ", "address_v4": f"198.18.10.{i + 1}",
                "connected": True} for i in range(3)]
    probes.write_text(json.dumps({"probes": entries}))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "coordinator.atlas.standin", "--listen", f"127.0.0.1:{port}",
                             "--cert", str(cert_pem), "--key", str(key_pem), "--samples",
                             str(standin.default_samples()), "--probes", str(probes), "--poll-s", "0.05",
                             "--result-interval-s", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"https://127.0.0.1:{port}/api/v2"
    try:
        for _ in range(200):
            try:
                listing = get(f"{base}/probes/?country_code=KZ", tls_cafile)
                break
            except OSError:
                time.sleep(0.05)
        assert listing["count"] == 3
        entries[1]["connected"] = False
        tmp = probes.with_suffix(".tmp")
        tmp.write_text(json.dumps({"probes": entries}))
        os.replace(tmp, probes)                       # how the lab should rewrite it: atomically
        for _ in range(200):
            events = get(f"{base}/measurements/7000/results/", tls_cafile)
            if events:
                break
            time.sleep(0.05)
        assert [(e["prb_id"], e["event"], e["type"], e["msm_id"]) for e in events] == [
            (950001, "disconnect", "connection", 7000)]
        status = {p["id"]: p["status"]["name"] for p in get(f"{base}/probes/?country_code=KZ", tls_cafile)["results"]}
        assert status[950001] == "Disconnected" and status[950000] == "Connected"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_standin_refuses_missing_samples(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "coordinator.atlas.standin", "--listen", "127.0.0.1:1", "--cert",
                          "x", "--key", "y", "--samples", str(tmp_path / "none")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "samples directory" in out.stderr
