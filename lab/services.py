"""Start the lab's target services (web/throughput and DNS) in their namespaces."""

from __future__ import annotations

import json
import time
from pathlib import Path

from lab import check
from lab.build import Lab
from lab.procs import Procs

WEB_PORTS = (80, 443)


def zone(lab: Lab) -> dict[str, str]:
    """Every name the lab's resolvers answer: targets, and ``<node>.<zone>`` for each node."""
    names = {t.name: t.address for t in lab.topo.targets}
    names.update({f"{n.name}.{lab.topo.zone}": n.address for n in lab.topo.nodes.values()})
    return names


def tamper_path(lab: Lab) -> Path:
    return lab.workdir / "dns-tamper.json"


def start_services(lab: Lab, procs: Procs, timeout_s: float = 15.0) -> None:
    """Web servers on nodes with web/speed targets, one DNS answerer per resolver target; waits
    until each answers from inside its own namespace."""
    launch_services(lab, procs)
    wait_services(lab, procs, timeout_s)


def launch_services(lab: Lab, procs: Procs) -> None:
    """Start the services without waiting for them (:func:`wait_services` waits), so that other
    processes can start meanwhile."""
    zone_file = lab.workdir / "zone.json"
    zone_file.write_text(json.dumps(zone(lab), indent=1))
    tamper = tamper_path(lab)
    tamper.write_text(json.dumps({"names": {}}))
    web_nodes = sorted({t.node for t in lab.topo.targets if t.kind in ("web", "speed")})
    for node in web_nodes:
        ports = [a for p in WEB_PORTS for a in ("--port", str(p))]
        procs.start(f"web-{node}", lab.ns(node), ["lab.servers", "web", *ports])
    for t in lab.topo.targets:
        if t.kind == "dns":
            args = ["lab.servers", "dns", "--host", t.address, "--zone", str(zone_file)]
            if lab.topo.node(t.node).side == "domestic":
                args += ["--tamper", str(tamper)]
            procs.start(f"dns-{t.group}", lab.ns(t.node), args)


def wait_services(lab: Lab, procs: Procs, timeout_s: float = 15.0) -> None:
    """Wait (checking every 50 ms, at most ``timeout_s``) until every target answers from inside
    its own namespace: TCP port 80 of web and throughput targets, a DNS answer from resolvers."""
    deadline = time.monotonic() + timeout_s
    pending = [(lab.ns(t.node), t) for t in lab.topo.targets if t.kind != "dns"]
    pending_dns = [(lab.ns(t.node), t) for t in lab.topo.targets if t.kind == "dns"]
    while time.monotonic() < deadline and (pending or pending_dns):
        pending = [(ns, t) for ns, t in pending if check.tcp(ns, t.address, 80, 0.5) != "ok"]
        pending_dns = [(ns, t) for ns, t in pending_dns
                       if check.dns(ns, t.address, lab.topo.targets[0].name, 0.5) in ("timeout", "unreachable")]
        if pending or pending_dns:
            time.sleep(0.05)
    if pending or pending_dns:
        names = [t.name for _, t in pending + pending_dns]
        logs = "\n".join(procs.log_tail(n) for n in procs.by_name)
        raise RuntimeError(f"lab services did not come up: {', '.join(names)}\n{logs}")
