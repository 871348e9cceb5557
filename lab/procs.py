"""Processes the lab starts inside namespaces, recorded in the state file so a crash leaves none.

Each process runs as ``ip netns exec NS python -m ...`` (``ip netns exec`` replaces itself, so the
pid is the Python process), in its own session, with output in ``WORKDIR/logs/NAME.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import netns

TEARDOWN_GRACE_S = 1.0     # after SIGTERM at teardown, then SIGKILL


@dataclass
class Proc:
    name: str
    ns: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    start: str | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Procs:
    """The processes of one lab run, by name."""

    def __init__(self, prefix: str, workdir: Path) -> None:
        self.prefix = prefix
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.by_name: dict[str, Proc] = {}

    def start(self, name: str, ns: str, module_args: list[str]) -> Proc:
        if name in self.by_name and self.by_name[name].alive():
            raise netns.LabError(f"process {name} is already running (pid {self.by_name[name].pid})")
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", *module_args]
        env = {**os.environ, "PYTHONPATH": str(netns.REPO), "PYTHONUNBUFFERED": "1"}
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(netns.REPO), env=env, start_new_session=True)
        finally:
            log.close()
        proc = Proc(name, ns, argv, popen, netns.proc_start_time(popen.pid))
        self.by_name[name] = proc
        self._record()
        return proc

    def _record(self) -> None:
        state = netns.load_state(self.prefix)
        state["processes"] = [{"name": p.name, "pid": p.pid, "start": p.start, "ns": p.ns}
                              for p in self.by_name.values() if p.alive()]
        netns.save_state(self.prefix, state)

    def signal(self, name: str, sig: int) -> bool:
        proc = self.by_name.get(name)
        if proc is None or not proc.alive():
            return False
        return netns.kill_pid(proc.pid, proc.start, sig)

    def stop(self, name: str, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; waits for the exit."""
        proc = self.by_name.get(name)
        if proc is None:
            return
        if proc.alive():
            netns.kill_pid(proc.pid, proc.start, signal.SIGTERM)
            try:
                proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                netns.kill_pid(proc.pid, proc.start, signal.SIGKILL)
                proc.popen.wait(5)
        self._record()

    def kill(self, name: str) -> None:
        """SIGKILL (a dead Raspberry Pi: no goodbye, no flush)."""
        proc = self.by_name.get(name)
        if proc is not None and proc.alive():
            netns.kill_pid(proc.pid, proc.start, signal.SIGKILL)
            proc.popen.wait(5)
        self._record()

    def stop_all(self, grace_s: float = TEARDOWN_GRACE_S) -> None:
        """SIGTERM to every live process at once, SIGKILL whatever is left after ``grace_s``.

        This is the teardown, after the run's results were read: nothing is waited for beyond a
        short grace (the coordinator's own graceful stop waits up to 5 s for open requests)."""
        live = [p for p in self.by_name.values() if p.alive()]
        for p in live:
            netns.kill_pid(p.pid, p.start, signal.SIGTERM)
        for pid in netns.wait_gone([p.pid for p in live], grace_s):
            netns.kill_pid(pid, None, signal.SIGKILL)
        for p in live:
            try:
                p.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._record()

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
