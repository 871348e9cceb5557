"""Faults the lab can inject, each with an undo.  One class per kind, one line in :data:`ACTIONS`.

Network faults are nftables tables (one table per action instance, named ``<prefix>_<id>``, so
undo = delete that table) or ``tc`` qdiscs (tbf for all traffic, htb + u32 for chosen targets:
this kernel has no netem, fw or matchall).  Cuts drop packets silently in both directions and keep
the routes, as the Kazakhstan 2022 shutdown did (BGP routes stayed announced).

Kinds and their parameters (docs/lab.md has the same table, tested):
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lab import netns
from lab.build import Lab


@dataclass
class Context:
    """What actions act on.  The process hooks are set by the runner (absent in bare-topology tests)."""

    lab: Lab
    tamper_path: Path
    kill_process: Callable[[str], None] = lambda name: None
    start_process: Callable[[str], None] = lambda name: None
    stop_process: Callable[[str], None] = lambda name: None


class ActionError(ValueError):
    """An action's parameters are invalid; the message names the action and the key."""


@dataclass
class Action:
    id: str
    params: dict[str, Any]
    KIND: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[str, ...]] = ()
    DOC: ClassVar[str] = ""
    applied: list[tuple[str, str]] = field(default_factory=list)  # (namespace, device or table)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.params) - set(self.PARAMS))
        if unknown:
            raise ActionError(f"{self.KIND}: unknown parameter(s) {', '.join(unknown)}; known: "
                              f"{', '.join(self.PARAMS) or 'none'}")

    def table(self, ctx: Context) -> str:
        return f"{ctx.lab.prefix}_{self.id}"

    def validate(self, lab: Lab) -> None:
        """Raise ActionError if the parameters do not fit the topology (names, values)."""

    def apply(self, ctx: Context) -> None:
        raise NotImplementedError

    def undo(self, ctx: Context) -> None:
        for ns, table in self.applied:
            netns.nsexec(ns, "nft", "delete", "table", "inet", table, check=False)
        self.applied.clear()

    def describe(self) -> str:
        return f"{self.KIND} {json.dumps(self.params, sort_keys=True)}" if self.params else self.KIND

    # helpers
    def _nft(self, ctx: Context, node: str, chains: dict[str, list[str]], prio: int = -5) -> None:
        ns, table = ctx.lab.ns(node), self.table(ctx)
        hooks = {"in": "input", "out": "output", "fwd": "forward"}
        body = "".join(
            f"  chain c_{name} {{ type filter hook {hooks[name]} priority {prio}; policy accept;\n"
            + "".join(f"    {rule}\n" for rule in rules) + "  }\n"
            for name, rules in chains.items() if rules)
        netns.nsexec(ns, "nft", "-f", "-", input_text=f"table inet {table} {{\n{body}}}\n")
        self.applied.append((ns, table))

    def _strings(self, key: str, default: list[str] | None = None) -> list[str]:
        value = self.params.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ActionError(f"{self.KIND}: {key} must be a list of names")
        return list(value)


class Cut(Action):
    KIND = "cut"
    PARAMS: ClassVar[tuple[str, ...]] = ("links", "nodes")
    DOC = "drop everything on the given links ([[a, b], ...]) and/or through the given nodes, both ways"

    def _links(self, lab: Lab) -> list[tuple[str, str]]:
        links = self.params.get("links", [])
        if not isinstance(links, list) or not all(isinstance(x, list) and len(x) == 2 for x in links):
            raise ActionError("cut: links must be a list of [node, node] pairs")
        return [(str(a), str(b)) for a, b in links]

    def validate(self, lab: Lab) -> None:
        try:
            for a, b in self._links(lab):
                lab.topo.link_index(a, b)
            for n in self._strings("nodes", []):
                lab.topo.node(n)
        except KeyError as exc:
            raise ActionError(f"{self.KIND}: {exc.args[0]}") from None
        if not self._links(lab) and not self._strings("nodes", []):
            raise ActionError(f"{self.KIND}: give links or nodes")

    def apply(self, ctx: Context) -> None:
        for a, b in self._links(ctx.lab):
            i = ctx.lab.topo.link_index(a, b)
            for node in (a, b):
                dev = ctx.lab.dev(i, node)
                self._nft(ctx, node, {"in": [f'iifname "{dev}" drop'], "out": [f'oifname "{dev}" drop'],
                                      "fwd": [f'iifname "{dev}" drop', f'oifname "{dev}" drop']})
        for node in self._strings("nodes", []):
            self._nft(ctx, node, {"in": ['iifname != "lo" drop'], "out": ['oifname != "lo" drop'],
                                  "fwd": ["drop"]})


class CutBorder(Cut):
    KIND = "cut_border"
    PARAMS: ClassVar[tuple[str, ...]] = ()
    DOC = "cut the border gateway's international link: domestic targets stay reachable (national intranet)"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.params = {}

    def _links(self, lab: Lab) -> list[tuple[str, str]]:
        return [("border", n) for n in lab.topo.neighbours("border") if lab.topo.node(n).side != "domestic"]


class CutAccess(Cut):
    KIND = "cut_access"
    PARAMS: ClassVar[tuple[str, ...]] = ("access",)
    DOC = "cut the uplinks of every node of one access type (fixed, mobile, datacenter)"

    def _links(self, lab: Lab) -> list[tuple[str, str]]:
        access = self.params.get("access")
        nodes = lab.topo.access_nodes(str(access))
        if not nodes:
            raise ActionError(f"cut_access: no node has access {access!r}")
        return [(n.name, peer) for n in nodes for peer in lab.topo.neighbours(n.name)]

    def validate(self, lab: Lab) -> None:
        self._links(lab)


class AllowList(Action):
    KIND = "allow_list"
    PARAMS: ClassVar[tuple[str, ...]] = ("allow", "at")
    DOC = "at the national core, traffic of access networks passes only to/from the allowed targets"

    def validate(self, lab: Lab) -> None:
        try:
            [lab.topo.target(t) for t in self._strings("allow")]
            lab.topo.node(str(self.params.get("at", "core")))
        except KeyError as exc:
            raise ActionError(f"allow_list: {exc.args[0]}") from None

    def apply(self, ctx: Context) -> None:
        topo = ctx.lab.topo
        allowed = ", ".join(topo.target(t).address for t in self._strings("allow"))
        access = ", ".join(n.prefix for n in topo.nodes.values() if n.role == "access")
        self._nft(ctx, str(self.params.get("at", "core")), {"fwd": [
            f"ip saddr {{ {access} }} ip daddr != {{ {allowed} }} drop",
            f"ip daddr {{ {access} }} ip saddr != {{ {allowed} }} drop"]})


class HttpBlock(Action):
    KIND = "http_block"
    PARAMS: ClassVar[tuple[str, ...]] = ("targets", "how", "ports", "at")
    DOC = "at the national core, TCP to the targets' web ports gets a reset (how=reset) or is dropped (how=drop)"

    def validate(self, lab: Lab) -> None:
        if self.params.get("how", "reset") not in ("reset", "drop"):
            raise ActionError("http_block: how must be reset or drop")
        try:
            [lab.topo.target(t) for t in self._strings("targets")]
        except KeyError as exc:
            raise ActionError(f"http_block: {exc.args[0]}") from None

    def apply(self, ctx: Context) -> None:
        addrs = ", ".join(ctx.lab.topo.target(t).address for t in self._strings("targets"))
        ports = ", ".join(str(int(p)) for p in self.params.get("ports", [80, 443]))
        verdict = "reject with tcp reset" if self.params.get("how", "reset") == "reset" else "drop"
        # the handshake passes; the request segment (PSH) is reset or dropped, as a middlebox
        # reading the Host header or SNI would do
        self._nft(ctx, str(self.params.get("at", "core")),
                  {"fwd": [f"ip daddr {{ {addrs} }} tcp dport {{ {ports} }} tcp flags & psh == psh {verdict}"]})


class DnsTamper(Action):
    KIND = "dns_tamper"
    PARAMS: ClassVar[tuple[str, ...]] = ("names", "mode")
    DOC = "the in-country resolver answers NXDOMAIN, a bogus address or a bogon (10.10.34.34) for the names"

    def validate(self, lab: Lab) -> None:
        from lab.servers import TAMPER_MODES

        if self.params.get("mode", "nxdomain") not in TAMPER_MODES:
            raise ActionError(f"dns_tamper: mode must be one of {', '.join(TAMPER_MODES)}")
        self._strings("names")

    def _write(self, ctx: Context, update: Callable[[dict[str, str]], None]) -> None:
        try:
            doc = json.loads(ctx.tamper_path.read_text())
        except (OSError, ValueError):
            doc = {"names": {}}
        update(doc["names"])
        tmp = ctx.tamper_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(ctx.tamper_path)

    def apply(self, ctx: Context) -> None:
        mode = str(self.params.get("mode", "nxdomain"))
        self._write(ctx, lambda names: names.update({n: mode for n in self._strings("names")}))

    def undo(self, ctx: Context) -> None:
        def drop(names: dict[str, str]) -> None:
            for n in self._strings("names"):
                names.pop(n, None)
        self._write(ctx, drop)


class KillProbe(Action):
    KIND = "kill_probe"
    PARAMS: ClassVar[tuple[str, ...]] = ("probe",)
    DOC = "SIGKILL one probe's process (a dead Raspberry Pi); undo starts it again with its state"

    def validate(self, lab: Lab) -> None:
        if self.params.get("probe") not in {p.name for p in lab.topo.probes}:
            raise ActionError(f"kill_probe: probe must be one of {', '.join(p.name for p in lab.topo.probes)}")

    def apply(self, ctx: Context) -> None:
        ctx.kill_process("probe-" + str(self.params["probe"]))

    def undo(self, ctx: Context) -> None:
        ctx.start_process("probe-" + str(self.params["probe"]))


class StopCoordinator(Action):
    KIND = "stop_coordinator"
    PARAMS = ()
    DOC = "stop the coordinator (SIGTERM); undo starts it again on the same data directory"

    def apply(self, ctx: Context) -> None:
        ctx.stop_process("coordinator")

    def undo(self, ctx: Context) -> None:
        ctx.start_process("coordinator")


from lab.throttle import Throttle  # noqa: E402 - the registry lists it with the others

ACTIONS: dict[str, type[Action]] = {cls.KIND: cls for cls in (
    Cut, CutBorder, CutAccess, AllowList, Throttle, DnsTamper, HttpBlock, KillProbe, StopCoordinator)}


def make_action(action_id: str, kind: str, params: dict[str, Any], lab: Lab | None = None) -> Action:
    try:
        cls = ACTIONS[kind]
    except KeyError:
        raise ActionError(f"unknown action {kind!r}; known: {', '.join(ACTIONS)}") from None
    action = cls(action_id, dict(params))
    if lab is not None:
        action.validate(lab)
    return action
