"""Put Tocsin into the lab: the coordinator's config and prefix table, the campaign, the probes.

Only the public commands are used (``python -m coordinator serve|invite|campaign add``, ``python
-m probe register|run``), as an operator and volunteers would.  Files written:

* ``DATA/coordinator.toml`` - listen address, the lab prefix table, a poll interval fitted to the
  scenario's probe interval;
* ``DATA/lab-prefixes.tsv`` - every node's /24 with its ASN and country;
* ``WORKDIR/campaign.toml`` - inline ``[[target]]`` tables for the lab's targets;
* ``WORKDIR/probes/<name>/probe.toml`` - ``allow_ranges = ["198.19.0.0/16"]`` so each probe's
  address guard lets lab targets through;
* with the replica: ``REPLICA/coordinator.toml`` (``[replica] upstream``, its token file
  ``WORKDIR/replica-token``, which the upstream's ``[replica] token`` matches) and the replica's
  URL as every probe's second endpoint.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

from lab import netns
from lab.build import Lab
from lab.scenario import Scenario

LAB_RANGE = "198.19.0.0/16"


def coordinator_url(lab: Lab) -> str:
    return f"http://{lab.topo.node('coord').address}:{lab.topo.coordinator_port}"


def data_dir(lab: Lab) -> Path:
    return lab.workdir / "coordinator"


def replica_data_dir(lab: Lab) -> Path:
    return lab.workdir / "replica"


def replica_node(lab: Lab) -> str:
    assert lab.topo.replica_host is not None
    return lab.topo.target(lab.topo.replica_host).node


def replica_address(lab: Lab) -> str:
    assert lab.topo.replica_host is not None
    return lab.topo.target(lab.topo.replica_host).address


def replica_url(lab: Lab) -> str:
    return f"http://{replica_address(lab)}:{lab.topo.coordinator_port}"


def replica_token(lab: Lab) -> str:
    """The token the upstream accepts from the replica, made once per lab work directory (0600)."""
    path = lab.workdir / "replica-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def write_replica_config(lab: Lab, sc: Scenario) -> Path:
    """The replica's config: a coordinator like the upstream (same prefix table and poll interval),
    in replica mode; it syncs three times per probe interval and pulls the registry every interval."""
    data = replica_data_dir(lab)
    data.mkdir(parents=True, exist_ok=True)
    replica_token(lab)
    doc = {"coordinator": {
        "listen": f"{replica_address(lab)}:{lab.topo.coordinator_port}",
        "prefix_table": str(data_dir(lab) / "lab-prefixes.tsv"),
        "poll_interval_s": max(1.0, sc.interval_s / 2),
        "silent_after_s": 3 * sc.interval_s,
    }, "replica": {
        "upstream": coordinator_url(lab),
        "upstream_token_file": str(lab.workdir / "replica-token"),
        "sync_s": max(0.5, sc.interval_s / 3),
        "registry_s": float(sc.interval_s),
        "timeout_s": float(sc.interval_s),
    }}
    path = data / "coordinator.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def probe_state(lab: Lab, name: str) -> Path:
    return lab.workdir / "probes" / name


def prefix_table(lab: Lab) -> str:
    lines = ["# Tocsin lab prefix table: PREFIX ASN CC NODE (written by python -m lab)"]
    lines += [f"{n.prefix}\t{n.asn}\t{n.cc}\t{n.name}" for n in lab.topo.nodes.values()]
    return "\n".join(lines) + "\n"


def write_coordinator_config(lab: Lab, sc: Scenario, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    data = data_dir(lab)
    data.mkdir(parents=True, exist_ok=True)
    (data / "lab-prefixes.tsv").write_text(prefix_table(lab))
    poll = max(1.0, sc.interval_s / 2)
    doc: dict[str, dict[str, Any]] = {"coordinator": {
        "listen": f"{lab.topo.node('coord').address}:{lab.topo.coordinator_port}",
        "prefix_table": str(data / "lab-prefixes.tsv"),
        "poll_interval_s": poll,
        "silent_after_s": 3 * sc.interval_s,
    }}
    for section, values in (extra or {}).items():
        doc.setdefault(section, {}).update(values)
    path = data / "coordinator.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def available_tests(wanted: list[str]) -> list[str]:
    """The wanted tests whose prober module exists in this tree."""
    from probe.probers import REGISTRY

    return [t for t in wanted if t in REGISTRY and importlib.util.find_spec(REGISTRY[t]) is not None]


SPEED_BYTES = 1_000_000
TEST_PARAMS: dict[str, dict[str, Any]] = {
    "ping": {"count": 3, "interval_s": 0.2, "timeout_s": 1.0},
    # a connection that has not been made in 1.5 s is not coming: the lab's links answer in under a
    # millisecond, 0.43 s at most behind a throttled mobile link's queue, and one lost SYN is resent
    # at 1 s; a cut link's tests towards the world fail here rather than at the 2.7 s task timeout
    "tcp": {"connect_timeout_s": 1.5},
    "http": {"max_body_bytes": 65536},
    "dns": {"query_timeout_s": 1.0},
    # a time-capped download; the control target is its own task, measured in the same rounds.
    # max_seconds covers connect, request and headers too: on a throttled link with a 400 ms queue
    # 0.5 s ended most downloads before the first body byte, so they measured nothing at all
    "throughput": {"max_bytes": SPEED_BYTES, "max_seconds": 1.5},
}


def campaign(lab: Lab, sc: Scenario) -> dict[str, Any]:
    tests = available_tests(sc.tests)
    targets = []
    for t in lab.topo.targets:
        ttests = [x for x in t.tests if x in tests]
        if not ttests:
            continue
        entry: dict[str, Any] = {"name": t.name, "category": t.category, "group": t.group,
                                 "cc": lab.topo.node(t.node).cc, "address": t.address, "port": 80,
                                 "tests": ttests}
        if t.kind in ("web", "speed"):
            entry["url"] = f"http://{t.name}/" if t.kind == "web" else f"http://{t.name}/bytes/{SPEED_BYTES}"
        targets.append(entry)
    return {
        "name": f"lab-{sc.name}", "country": lab.topo.country, "interval_s": sc.interval_s,
        "timeout_s": max(1.0, min(sc.interval_s * 0.9, 5.0)),
        "tests": [{"name": t, "params": TEST_PARAMS.get(t, {})} for t in tests],
        "target": targets,
    }


def _cli(args: list[str], timeout: float = 60) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=str(netns.REPO), env={"PYTHONPATH": str(netns.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"})
    if proc.returncode != 0:
        raise netns.LabError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc.stdout


def add_campaign(lab: Lab, sc: Scenario) -> str:
    path = lab.workdir / "campaign.toml"
    path.write_text(tomli_w.dumps(campaign(lab, sc)))
    return _cli(["-m", "coordinator", "campaign", "add", "--data", str(data_dir(lab)), str(path)]).strip()


def register_probes(lab: Lab, fallbacks: list[str] | None = None) -> dict[str, str]:
    """Invite and register every probe of the topology (in parallel); returns name -> probe id.
    ``fallbacks`` (the replica's URL) become every in-country probe's further endpoints, after the
    coordinator (a probe abroad gains nothing from an in-country replica)."""
    data = data_dir(lab)
    env = {"PYTHONPATH": str(netns.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"}
    inviting = subprocess.run([sys.executable, "-m", "coordinator", "invite", "--data", str(data), "--note", "lab",
                               "--count", str(len(lab.topo.probes))], capture_output=True, text=True,
                              cwd=str(netns.REPO), env=env, timeout=60)
    if inviting.returncode != 0:
        raise netns.LabError(f"coordinator invite: exit {inviting.returncode}: {inviting.stderr.strip()[-500:]}")
    tokens = dict(zip((p.name for p in lab.topo.probes), inviting.stdout.split(), strict=True))
    running = {}
    for p in lab.topo.probes:
        node = lab.topo.node(p.node)
        state = probe_state(lab, p.name)
        state.mkdir(parents=True, exist_ok=True)
        (state / "probe.toml").write_text(tomli_w.dumps({"allow_ranges": [LAB_RANGE], "max_concurrent_tests": 8,
                                                           "max_throughput_bytes_per_hour": 10**12}))
        argv = ["ip", "netns", "exec", lab.ns(p.node), sys.executable, "-m", "probe", "register",
                "--coordinator", coordinator_url(lab),
                *[a for f in (fallbacks or []) if node.side == "domestic" for a in ("--coordinator", f)],
                "--invite", tokens[p.name], "--state", str(state),
                "--cc", node.cc, "--asn", str(node.asn), "--access", node.access or "fixed", "--name", p.name]
        running[p.name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                           cwd=str(netns.REPO), env=env)
    ids = {}
    for name, popen in running.items():
        out, err = popen.communicate(timeout=60)
        if popen.returncode != 0:
            raise netns.LabError(f"probe register {name}: exit {popen.returncode}: {err.strip()[-500:]}")
        ids[name] = json.loads(out)["probe_id"]
    return ids
