"""The ``throttle`` action: tbf for all traffic of chosen networks, htb + u32 for chosen targets.

Shaping sits on both ends of each chosen access node's uplink: the access side's egress (uploads)
and the core side's egress towards it (downloads).  With ``targets``, an htb with a fast default
class and a slow class 1:20 is installed and u32 filters send packets to or from the targets'
addresses into 1:20 (the kernel here has no fw/matchall classifiers); the slow class queues at
most 400 ms, like a policer (a tbf under it, which also splits GSO packets).
"""

from __future__ import annotations

import re
from typing import ClassVar

from lab import netns
from lab.actions import Action, ActionError, Context
from lab.build import Lab, tbf_burst

_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$")
_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def rate_bps(text: str) -> float:
    m = _RATE_RE.match(text)
    if not m:
        raise ActionError(f"throttle: rate {text!r} must look like 500kbit, 2mbit or 1gbit")
    return float(m.group(1)) * _UNITS[m.group(2)]


class Throttle(Action):
    KIND: ClassVar[str] = "throttle"
    PARAMS: ClassVar[tuple[str, ...]] = ("rate", "access", "nodes", "targets")
    DOC = ("limit traffic of the chosen access networks (access=TYPE or nodes=[...], default all) to rate; "
           "with targets=[...] only traffic to/from those targets")

    def _nodes(self, lab: Lab) -> list[str]:
        if "nodes" in self.params:
            names = self._strings("nodes")
            for n in names:
                lab.topo.node(n)
            return names
        access = self.params.get("access")
        nodes = lab.topo.access_nodes(None if access is None else str(access))
        if not nodes:
            raise ActionError(f"throttle: no node has access {access!r}")
        return [n.name for n in nodes]

    def validate(self, lab: Lab) -> None:
        rate_bps(str(self.params.get("rate", "")))
        try:
            self._nodes(lab)
            [lab.topo.target(t) for t in self._strings("targets", [])]
        except KeyError as exc:
            raise ActionError(f"throttle: {exc.args[0]}") from None

    def _devs(self, lab: Lab) -> list[tuple[str, str]]:
        out = []
        for node in self._nodes(lab):
            for i, ln in lab.topo.links_of(node):
                peer = ln.b if ln.a == node else ln.a
                out.append((lab.ns(node), lab.dev(i, node)))
                out.append((lab.ns(peer), lab.dev(i, peer)))
        return out

    def apply(self, ctx: Context) -> None:
        rate = str(self.params["rate"])
        rate_bps(rate)
        burst = tbf_burst(rate)
        targets = [ctx.lab.topo.target(t).address for t in self._strings("targets", [])]
        base = ctx.lab.capacities()
        for ns, dev in self._devs(ctx.lab):
            if not targets:
                # a fresh qdisc, never ``replace``: changing a tbf in place keeps its queue, and a GSO
                # packet queued under the old, larger bucket can never fit the new one - the head of
                # the queue blocks forever and the "throttled" network goes dark
                netns.run("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
                netns.run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                          "burst", str(burst), "latency", "400ms")
            else:
                batch = [f"qdisc replace dev {dev} root handle 1: htb default 10",
                         f"class add dev {dev} parent 1: classid 1:10 htb rate {base.get((ns, dev), '10gbit')}",
                         f"class add dev {dev} parent 1: classid 1:20 htb rate {rate} ceil {rate} burst {burst}",
                         # the slow class's queue: a tbf bounded at 400 ms, as for a whole network (a
                         # policer's queue is short).  The class's default pfifo holds txqueuelen
                         # (1,000) packets, a minute at 150kbit: the data of downloads already given
                         # up on kept new connections from even opening (half of the lab's throttled
                         # downloads timed out with no byte, so a throttle looked like a block)
                         f"qdisc add dev {dev} parent 1:20 handle 20: tbf rate {rate} burst {burst} latency 400ms"]
                for addr in targets:
                    for way in ("dst", "src"):
                        batch.append(f"filter add dev {dev} parent 1: protocol ip prio 1 u32 "
                                     f"match ip {way} {addr}/32 flowid 1:20")
                netns.run("tc", "-n", ns, "-batch", "-", input_text="\n".join(batch) + "\n")
            self.applied.append((ns, dev))

    def undo(self, ctx: Context) -> None:
        for ns, dev in self.applied:
            ctx.lab.restore_qdisc(ns, dev)     # back to the access capacity (or unshaped)
        self.applied.clear()
