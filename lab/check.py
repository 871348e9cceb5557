"""Real traffic from inside a namespace, for tests and for the Atlas reachability view; and
:func:`baseline_missing`, which reads whether the verdict engine has its first baseline yet.

Each check runs in a short-lived thread that first enters the namespace with ``setns(2)`` (the
thread's sockets then live there).  Results are plain strings: ``ok``, ``reset``, ``refused``,
``timeout``, ``unreachable`` or for DNS the answer / ``nxdomain``.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def in_ns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread inside namespace ``ns``; the calling thread is untouched."""

    def body() -> T:
        _setns(f"/run/netns/{ns}")
        return fn()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(body).result()


def _errname(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    return "unreachable"


def tcp(ns: str, address: str, port: int, timeout_s: float = 1.0) -> str:
    def go() -> str:
        try:
            with socket.create_connection((address, port), timeout=timeout_s):
                return "ok"
        except OSError as exc:
            return _errname(exc)
    return in_ns(ns, go)


def http(ns: str, address: str, path: str = "/", port: int = 80, timeout_s: float = 2.0) -> tuple[str, int]:
    """GET over a raw socket: (status, bytes read).  status is ``ok``, ``bad`` or an error name."""
    return in_ns(ns, lambda: http_inner(address, port, path, timeout_s))


def download_bps(ns: str, address: str, n_bytes: int, port: int = 80, timeout_s: float = 15.0) -> float:
    """Goodput in bit/s of fetching /bytes/N (0.0 when it failed)."""

    def go() -> float:
        t0 = time.monotonic()
        status, got = http_inner(address, port, f"/bytes/{n_bytes}", timeout_s)
        dt = time.monotonic() - t0
        return got * 8 / dt if status == "ok" and dt > 0 else 0.0
    return in_ns(ns, go)


def http_inner(address: str, port: int, path: str, timeout_s: float) -> tuple[str, int]:
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            total, head = 0, b""
            while chunk := s.recv(262144):
                if not head:
                    head = chunk[:12]
                total += len(chunk)
        return ("ok" if head.startswith(b"HTTP/1.") and b" 200" in head else "bad", total)
    except OSError as exc:
        return _errname(exc), 0


def dns(ns: str, server: str, name: str, timeout_s: float = 1.0) -> str:
    """The A answer as text, ``nxdomain``, another rcode name, or an error name."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    def go() -> str:
        q = dns.message.make_query(name, "A")
        try:
            r = dns.query.udp(q, server, timeout=timeout_s)
        except dns.exception.Timeout:
            return "timeout"
        except OSError as exc:
            return _errname(exc)
        if r.rcode() != dns.rcode.NOERROR:
            return dns.rcode.to_text(r.rcode()).lower()
        for rrset in r.answer:
            for rd in rrset:
                return str(rd)
        return "no_answer"
    return in_ns(ns, go)


def reachable_many(checks: list[tuple[str, str, int]], timeout_s: float = 1.0) -> list[bool]:
    """TCP reachability of (ns, address, port) in parallel: connected or refused = reachable."""
    with concurrent.futures.ThreadPoolExecutor(max(1, len(checks))) as pool:
        results = list(pool.map(lambda c: tcp(c[0], c[1], c[2], timeout_s), checks))
    return [r in ("ok", "refused") for r in results]


# --- Tocsin's own readiness: has the verdict engine got its first baseline? ----------------------

def baseline_missing(data_dir: Path, probe_ids: list[str], *, rounds: int = 2, polls: int = 4) -> list[str]:
    """What the verdict engine still lacks before a fault can be judged against a baseline, read
    from the coordinator's database (read-only); an empty list means nothing.

    The engine's needs (coordinator/verdict), checked for every probe in ``probe_ids``:

    * ``rounds`` results of each of its tasks (the probe interval is derived from the spacing of one
      probe's results of one target; two rounds of six probes give it plenty of spacings);
    * ``polls`` schedule polls (liveness is judged against the median poll spacing, which needs 3;
      4 give it 3 spacings).  The allowance for a probe whose polls stall under load (1.5 x its
      90th percentile gap, from 6 polls) is not waited for: polls that do not stall keep it below
      the median rule, and two polls into the timeline it is there;
    * per throughput target group, ``min_baseline_samples`` successful downloads (pooled over the
      probes; before that goodput is not judged at all), and per DNS name one successful answer
      (the reference a tampered answer is compared with).
    """
    from coordinator.verdict.settings import Settings

    path = data_dir / "tocsin.db"
    if not path.exists():
        return ["no database yet"]
    want = set(probe_ids)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        beats = dict(conn.execute("SELECT probe_id, COUNT(*) FROM probe_heartbeats GROUP BY probe_id").fetchall())
        tasks = conn.execute("SELECT probe_id, test_name, target, COUNT(*), SUM(success), "
                             "json_extract(annotations, '$.target_group'), "
                             "SUM(success AND json_extract(test_keys, '$.goodput_bps') IS NOT NULL) "
                             "FROM measurements GROUP BY probe_id, test_name, target").fetchall()
    except sqlite3.OperationalError as exc:       # tables not made yet (the coordinator is starting)
        return [f"database not ready: {exc}"]
    finally:
        conn.close()
    missing = [f"{p}: {beats.get(p, 0)}/{polls} polls" for p in sorted(want) if beats.get(p, 0) < polls]
    per_probe: dict[str, dict[tuple[str, str], int]] = {p: {} for p in want}
    goodput: dict[str, int] = {}
    dns_ok: dict[str, int] = {}
    for probe, test, target, n, ok, group, fast in tasks:
        if probe not in want:
            continue
        per_probe[probe][(test, target)] = n
        if test == "throughput":
            goodput[group or target] = goodput.get(group or target, 0) + int(fast or 0)
        elif test == "dns":
            dns_ok[target] = dns_ok.get(target, 0) + int(ok or 0)
    every = {task for seen in per_probe.values() for task in seen}
    for probe, seen in sorted(per_probe.items()):
        short = sorted(f"{t} {x}" for t, x in every if seen.get((t, x), 0) < rounds)
        if short:
            missing.append(f"{probe}: under {rounds} results of {len(short)} of {len(every)} tasks")
    need = Settings().min_baseline_samples
    missing += [f"throughput {g}: {n}/{need} downloads" for g, n in sorted(goodput.items()) if n < need]
    missing += [f"dns {name}: no answer yet" for name, n in sorted(dns_ok.items()) if n == 0]
    return missing
