"""A run killed with SIGKILL leaves namespaces and processes; ``python -m lab down`` removes them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab import netns
from lab.testing import need_root

pytestmark = pytest.mark.netns
P = "tlc"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_lab_down_cleans_up_after_a_killed_run(tmp_path):
    need_root()
    env = {**os.environ, "PYTHONPATH": str(netns.REPO)}
    run = subprocess.Popen([sys.executable, "-m", "lab", "--prefix", P, "up"], cwd=str(netns.REPO), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        state = netns.load_state(P)
        pids = [int(p["pid"]) for p in state["processes"]]
        assert len(netns.list_namespaces(P)) == 11 and len(pids) >= 4 and all(_alive(p) for p in pids)
        # now a run that dies hard in the middle of bringing the lab up again
        crash = subprocess.Popen([sys.executable, "-m", "lab", "--prefix", P, "run", "ordinary"], cwd=str(netns.REPO),
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not netns.load_state(P)["processes"]:
            time.sleep(0.2)
        os.killpg(crash.pid, signal.SIGKILL)
        crash.wait(10)
        left = [int(p["pid"]) for p in netns.load_state(P)["processes"]]
        assert netns.list_namespaces(P) and left, "the killed run should have left something behind"
        down = subprocess.run([sys.executable, "-m", "lab", "--prefix", P, "down"], cwd=str(netns.REPO), env=env,
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert netns.list_namespaces(P) == [] and netns.list_host_links(P) == []
        assert not any(_alive(p) for p in pids + left)
        assert not netns.state_path(P).exists()
        assert not any(d.name.startswith(P + "-") for d in netns.NETNS_ETC.iterdir()) if netns.NETNS_ETC.is_dir() else True
    finally:
        netns.cleanup(P)
