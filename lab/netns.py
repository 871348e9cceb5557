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


def run_many(commands: list[tuple[list[str], str | None]], *, check: bool = True,
             timeout: float = 30) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands (argv, stdin text) at the same time; wait for all of them.
    With ``check``, a :class:`LabError` names every command that failed (after all have ended)."""
    procs = [(argv, text, subprocess.Popen(argv, stdin=subprocess.PIPE if text is not None else subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for argv, text in commands]
    deadline = time.monotonic() + timeout
    done: list[subprocess.CompletedProcess[str]] = []
    for argv, text, popen in procs:
        try:
            out, err = popen.communicate(text, timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            out, err = popen.communicate()
            err = f"timed out after {timeout} s; {err}"
            popen.returncode = popen.returncode or -9
        done.append(subprocess.CompletedProcess(argv, popen.returncode, out, err))
    failed = [c for c in done if c.returncode != 0]
    if check and failed:
        raise LabError("; ".join(f"{' '.join(c.args)}: exit {c.returncode}: {(c.stderr or c.stdout).strip()[-400:]}"
                                 for c in failed))
    return done


def route_get_argv(ns: str) -> list[str]:
    return ["ip", "-o", "-n", ns, "-force", "-batch", "-"]


def route_get_input(addresses: list[str]) -> str:
    return "".join(f"route get {a}\n" for a in addresses)


def route_outputs(proc: subprocess.CompletedProcess[str], n: int) -> list[str]:
    # -force goes on after a failed line and reports it as "Command failed -:LINE" on stderr;
    # -o prints each route on one line, so the successful lines' outputs come in order
    failed = {int(m) for m in re.findall(r"Command failed -:(\d+)", proc.stderr)}
    lines = iter(proc.stdout.splitlines())
    outputs = ["" if i in failed else next(lines, "") for i in range(1, n + 1)]
    if next(lines, None) is not None:
        raise LabError(f"{' '.join(proc.args)}: more output lines than commands: {proc.stdout[-400:]}")
    return outputs


def set_sysctls(ns: str, values: dict[str, str]) -> None:
    """Write net.* sysctls of namespace ``ns`` from a thread that entered it (no subprocess):
    /proc/sys/net belongs to the network namespace of the thread that opens it."""
    from lab.check import in_ns

    def write() -> None:
        for key, value in values.items():
            if not key.startswith("net."):
                raise LabError(f"sysctl {key}: only net.* keys belong to a network namespace")
            Path("/proc/sys", *key.split(".")).write_text(value + "\n")
    in_ns(ns, write)


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


def pids_in_namespaces(namespaces: list[str]) -> list[int]:
    """Processes whose network namespace is one of ``namespaces`` (what ``ip netns pids`` does,
    for all of them in one pass over /proc)."""
    wanted = set()
    for ns in namespaces:
        try:
            st = os.stat(f"/run/netns/{ns}")
            wanted.add((st.st_dev, st.st_ino))
        except OSError:
            continue
    found: list[int] = []
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                st = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in wanted:
                found.append(int(entry.name))
    return found


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
    # anything still running inside our namespaces was started by the lab
    pids += [pid for pid in pids_in_namespaces(namespaces) if pid not in pids and kill_pid(pid, None)]
    for pid in wait_gone(pids, 5.0):
        kill_pid(pid, None, signal.SIGKILL)
    wait_gone(pids, 2.0)
    counts["processes"] = len(set(pids))
    # one `ip -batch` for all the deletions; -force goes on past one that fails
    links = list_host_links(prefix)
    lines = [f"netns del {ns}" for ns in namespaces] + [f"link del {dev}" for dev in links]
    if lines:
        run("ip", "-force", "-batch", "-", input_text="\n".join(lines) + "\n", check=False)
    left = set(list_namespaces(prefix)) if namespaces else set()
    counts["namespaces"] = len([ns for ns in namespaces if ns not in left])
    counts["links"] = len(links)
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.iterdir():
            if d.name.startswith(prefix + "-"):
                shutil.rmtree(d, ignore_errors=True)
    try:
        state_path(prefix).unlink()
    except FileNotFoundError:
        pass
    return counts
