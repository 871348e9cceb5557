"""Low-level helpers: run ``ip``/``nft``/``tc`` commands, a state file, and cleanup by name prefix.

Every object the lab creates is named with its prefix (``tl`` by default): namespaces
``tl-<node>``, veths ``tlv<n>a``/``tlv<n>b`` (made directly inside namespaces, so deleting the
namespace deletes them), ``/etc/netns/tl-<node>/`` (the per-namespace ``resolv.conf`` that
``ip netns exec`` mounts).  The state file ``/run/tocsin-lab/<prefix>.json`` lists them and the
processes started, so :func:`cleanup` can undo a run that crashed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path("/run/tocsin-lab")
NETNS_ETC = Path("/etc/netns")
_PREFIX_RE = re.compile(r"^[a-z]{2,4}$")


class LabError(RuntimeError):
    """A lab command failed; the message names the command and its error output."""


def check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise LabError(f"prefix {prefix!r}: 2-4 lower-case letters (interface names are limited to 15 bytes)")
    return prefix


def run(*args: str, input_text: str | None = None, check: bool = True, timeout: float = 30) -> str:
    """Run a command; return stdout.  Raises :class:`LabError` with stderr when it fails."""
    try:
        proc = subprocess.run(list(args), input=input_text, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(args)}: timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def nsexec(ns: str, *args: str, input_text: str | None = None, check: bool = True, timeout: float = 30) -> str:
    return run("ip", "netns", "exec", ns, *args, input_text=input_text, check=check, timeout=timeout)


def host_guard() -> None:
    """Blackhole 198.18.0.0/15 in the host namespace (lab/host-guard.sh, idempotent)."""
    run("bash", str(REPO / "lab" / "host-guard.sh"))


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, nftables)")


# --- state file ---------------------------------------------------------------------------

def state_path(prefix: str) -> Path:
    return STATE_DIR / f"{prefix}.json"


def load_state(prefix: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_path(prefix).read_text())
        return data
    except (OSError, ValueError):
        return {"prefix": prefix, "namespaces": [], "processes": [], "workdir": None}


def save_state(prefix: str, state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = state_path(prefix).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(state_path(prefix))


def proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in ticks): tells a reused pid from ours."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


# --- listing and cleaning -----------------------------------------------------------------

def list_namespaces(prefix: str) -> list[str]:
    out = run("ip", "netns", "list", check=False)
    names = [line.split()[0] for line in out.splitlines() if line.split()]
    return [n for n in names if n.startswith(prefix + "-")]


def list_host_links(prefix: str) -> list[str]:
    """Veths of this prefix stranded in the host namespace (only possible after a crash)."""
    out = run("ip", "-o", "link", "show", check=False)
    pattern = re.compile(rf"^{prefix}v\d+[ab]$")
    found = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            dev = parts[1].strip().split("@")[0]
            if pattern.match(dev):
                found.append(dev)
    return found


def kill_pid(pid: int, start: str | None, sig: int = signal.SIGTERM) -> bool:
    """Signal ``pid`` if it is still the process we started (same start time)."""
    if start is not None and proc_start_time(pid) != start:
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def cleanup(prefix: str) -> dict[str, int]:
    """Remove everything of ``prefix``: recorded processes, processes inside its namespaces,
    namespaces, stranded veths, /etc/netns dirs and the state file.  Safe to run twice."""
    check_prefix(prefix)
    state = load_state(prefix)
    counts = {"processes": 0, "namespaces": 0, "links": 0}
    pids: list[int] = []
    for entry in state.get("processes", []):
        if kill_pid(int(entry["pid"]), entry.get("start")):
            pids.append(int(entry["pid"]))
    namespaces = list_namespaces(prefix)
    for ns in namespaces:  # anything still running inside our namespaces was started by the lab
        for line in run("ip", "netns", "pids", ns, check=False).split():
            if line.isdigit() and kill_pid(int(line), None):
                pids.append(int(line))
    for pid in wait_gone(pids, 5.0):
        kill_pid(pid, None, signal.SIGKILL)
    wait_gone(pids, 2.0)
    counts["processes"] = len(set(pids))
    for ns in namespaces:
        run("ip", "netns", "del", ns, check=False)
        counts["namespaces"] += 1
    for dev in list_host_links(prefix):
        run("ip", "link", "del", dev, check=False)
        counts["links"] += 1
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.iterdir():
            if d.name.startswith(prefix + "-"):
                shutil.rmtree(d, ignore_errors=True)
    try:
        state_path(prefix).unlink()
    except FileNotFoundError:
        pass
    return counts
