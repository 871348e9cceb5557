"""``python -m lab run SCENARIO``: bring the country up, run Tocsin in it, play the timeline.

Order: topology -> target services -> coordinator (``serve`` in its namespace) -> Atlas stand-in
(when installed) -> in-country replica (``serve`` in replica mode; on unless ``with_replica=False``)
-> campaign -> invites and registrations -> probes (``probe run`` in access namespaces) -> warm-up
(the baseline) -> timeline -> tail (time to resolve) -> results JSON -> teardown.  SIGINT/SIGTERM and errors still tear down; after a crash ``python -m lab down`` does.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import atlas, check, deploy, events, netns, services
from lab.actions import Context
from lab.build import Lab
from lab.procs import Procs
from lab.scenario import Scenario
from lab.topology import Topology, kazakhstan

RESULTS_DIR = Path("/tmp/tocsin-lab-results")


class Interrupted(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


class Run:
    def __init__(self, sc: Scenario, *, prefix: str = "tl", topo: Topology | None = None,
                 workdir: Path | None = None, live: bool = False, keep: bool = False,
                 results_dir: Path = RESULTS_DIR, say: Callable[[str], None] = print,
                 with_atlas: bool = True, with_replica: bool = True) -> None:
        self.sc = sc
        self.with_atlas = with_atlas
        self.lab = Lab(topo or kazakhstan(), prefix, workdir)
        self.with_replica = with_replica and self.lab.topo.replica_host is not None
        self.live, self.keep, self.say = live, keep, say
        self.results_dir = results_dir
        self.procs: Procs | None = None
        self.commands: dict[str, tuple[str, list[str]]] = {}
        self.t0 = 0.0
        self.errors: list[str] = []
        self.steps_log: list[dict[str, Any]] = []
        self.atlas_state: dict[int, bool] = {}
        self._seq: dict[str, int] = {}
        self.probe_ids: list[str] = []
        self.warmup_s = 0.0

    # --- processes --------------------------------------------------------------------------
    def start(self, name: str) -> None:
        assert self.procs is not None
        ns, args = self.commands[name]
        self.procs.start(name, ns, args)

    def _ctx(self) -> Context:
        assert self.procs is not None
        procs = self.procs
        return Context(self.lab, services.tamper_path(self.lab), kill_process=procs.kill,
                       start_process=self.start, stop_process=procs.stop)

    def _wait_coordinator(self, name: str = "coordinator", timeout_s: float = 30) -> None:
        lab = self.lab
        ns, address = ((lab.ns("out"), lab.topo.node("coord").address) if name == "coordinator"
                       else (lab.ns(deploy.replica_node(lab)), deploy.replica_address(lab)))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check.tcp(ns, address, lab.topo.coordinator_port, 0.5) == "ok":
                return
            time.sleep(0.05)
        assert self.procs is not None
        raise netns.LabError(f"{name} did not come up:\n" + self.procs.log_tail(name))

    def data_dirs(self) -> dict[str, Path]:
        """Where verdicts are written: the coordinator, and the replica when it runs."""
        dirs = {"coordinator": deploy.data_dir(self.lab)}
        if self.with_replica:
            dirs["replica"] = deploy.replica_data_dir(self.lab)
        return dirs

    # --- Atlas view -------------------------------------------------------------------------
    def atlas_path(self) -> Path:
        return self.lab.workdir / "atlas-probes.json"

    def update_atlas(self) -> None:
        """Rewrite the stand-in's probe file from real reachability of the Atlas controller."""
        topo = self.lab.topo
        atlas = topo.node("atlas")
        checks = [(self.lab.ns(p.node), atlas.address, topo.atlas_port) for p in topo.atlas_probes]
        state = dict(zip((p.id for p in topo.atlas_probes), check.reachable_many(checks, 0.5), strict=True))
        if state == self.atlas_state:
            return
        if self.atlas_state:
            self.say(f"           atlas: {sum(state.values())}/{len(state)} emulated Atlas probes connected")
        self.atlas_state = state
        doc = {"probes": [{"id": p.id, "asn_v4": topo.node(p.node).asn, "country_code": topo.node(p.node).cc,
                           "address_v4": topo.node(p.node).address, "connected": state[p.id]}
                          for p in topo.atlas_probes]}
        tmp = self.atlas_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.atlas_path())

    # --- the run ----------------------------------------------------------------------------
    def setup(self) -> None:
        lab = self.lab
        started = time.monotonic()
        lab.up()
        problems = lab.verify_guard()
        if problems:
            raise netns.LabError("route guard failed: " + "; ".join(problems))
        self.procs = Procs(lab.prefix, lab.workdir)
        services.launch_services(lab, self.procs)      # waited for below, while the coordinator starts
        self.update_atlas()
        extra = {}
        why_not = atlas.available() if self.with_atlas else "switched off (--no-atlas)"
        if why_not is None:
            ca, cert, key = atlas.make_certs(lab)
            self.commands["atlas-standin"] = (lab.ns("atlas"), atlas.standin_args(
                lab, cert, key, self.atlas_path(), self.sc.interval_s))
            self.start("atlas-standin")
            extra["atlas"] = atlas.coordinator_section(lab, ca, self.sc.interval_s)
        else:
            self.say(f"no RIPE Atlas stand-in: {why_not}")
        if self.with_replica:
            extra["replica"] = {"token": deploy.replica_token(lab)}
        deploy.write_coordinator_config(lab, self.sc, extra)
        data = deploy.data_dir(lab)
        self.commands["coordinator"] = (lab.ns("coord"), ["coordinator", "serve", "--data", str(data)])
        self.start("coordinator")
        fallbacks = []
        if self.with_replica:   # started at once: it syncs (with backoff) as soon as the coordinator answers
            deploy.write_replica_config(lab, self.sc)
            self.commands["replica"] = (lab.ns(deploy.replica_node(lab)),
                                        ["coordinator", "serve", "--data", str(deploy.replica_data_dir(lab))])
            self.start("replica")
            fallbacks.append(deploy.replica_url(lab))
        services.wait_services(lab, self.procs)
        self._wait_coordinator()
        self.atlas_state = {}
        self.update_atlas()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:   # the campaign is added while probes register
            campaign = pool.submit(deploy.add_campaign, lab, self.sc)
            if self.with_replica:
                self._wait_coordinator("replica")
                self.say(f"in-country replica on {deploy.replica_url(lab)} ({lab.topo.replica_host}'s host)")
            ids = deploy.register_probes(lab, fallbacks)
            self.say(f"campaign {campaign.result()} (every {self.sc.interval_s:g} s)")
        self.probe_ids = sorted(ids.values())
        for p in lab.topo.probes:
            self.commands[f"probe-{p.name}"] = (lab.ns(p.node), ["probe", "run", "-v", "--state",
                                                                 str(deploy.probe_state(lab, p.name))])
            self.start(f"probe-{p.name}")
        self.say(f"{len(ids)} probes registered and running: {', '.join(sorted(ids))} "
                 f"(set-up {time.monotonic() - started:.1f} s)")

    def _idle(self, until: float) -> None:
        while True:
            now = time.time()
            if self.live:
                for source, data in self.data_dirs().items():
                    for t in events.new_transitions(data, self._seq.get(source, 0)):
                        self._seq[source] = max(self._seq.get(source, 0), int(t["seq"]))
                        self.say(events.format_transition(t, self.t0) + ("  [replica]" if source == "replica" else ""))
            if now >= until:
                return
            time.sleep(min(1.0, until - now))

    def warmup(self) -> None:
        """Normal operation until every coordinator's verdict engine has its first baseline
        (:func:`lab.check.baseline_missing`), at most ``warmup_s``."""
        begin = time.time()
        deadline = begin + self.sc.warmup_s

        def missing() -> list[str]:
            return [f"{source}: {m}" for source, data in self.data_dirs().items()
                    for m in check.baseline_missing(data, self.probe_ids)]
        left = missing()
        while left and time.time() < deadline:
            self._idle(min(deadline, time.time() + 0.25))
            left = missing()
        self.warmup_s = time.time() - begin
        self.say(f"warm-up {self.warmup_s:.1f} s" + (f" (baseline still incomplete: {'; '.join(left[:3])})" if left else ""))

    def play(self) -> None:
        ctx = self._ctx()
        self.warmup()
        self.t0 = time.time()
        timeline = self.sc.timeline()
        for i, (at, what, step) in enumerate(timeline):
            self._idle(self.t0 + at)
            entry = {"id": step.action.id, "kind": step.action.KIND, "what": what, "at": at,
                     "ts": time.time(), "params": step.action.params}
            try:
                (step.action.apply if what == "apply" else step.action.undo)(ctx)
            except Exception as exc:  # an action that fails is reported, the run goes on
                self.errors.append(f"{what} {step.action.describe()}: {exc}")
                entry["error"] = str(exc)
            self.steps_log.append(entry)
            self.say(f"[{time.time() - self.t0:+7.1f}s] {what:<5} {step.action.describe()}"
                     + (f"  # {step.note}" if step.note else ""))
            if i + 1 == len(timeline) or timeline[i + 1][0] != at:   # after the last step of this instant
                self.update_atlas()
        self._idle(self.t0 + self.sc.duration_s + self.sc.tail_s)

    def result(self) -> dict[str, Any]:
        return {
            "scenario": self.sc.name, "interval_s": self.sc.interval_s, "t0": self.t0,
            "duration_s": self.sc.duration_s, "warmup_s": round(self.warmup_s, 2), "negative": self.sc.negative,
            "steps": self.steps_log,
            "expects": [vars(e) for e in self.sc.expects], "errors": self.errors,
            "events": events.read_events(deploy.data_dir(self.lab)), "finished_ts": time.time(),
            "replica": self.with_replica,
            "replica_events": events.read_events(deploy.replica_data_dir(self.lab)) if self.with_replica else [],
        }

    def execute(self) -> dict[str, Any]:
        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        result: dict[str, Any] = {}
        try:
            self.setup()
            self.play()
            result = self.result()
            self.results_dir.mkdir(parents=True, exist_ok=True)
            (self.results_dir / f"{self.sc.name}.json").write_text(json.dumps(result, indent=1))
        finally:
            try:
                if self.procs is not None and not self.keep:
                    self.procs.stop_all()
                if not self.keep:
                    self.lab.down()
                else:
                    self.say(f"--keep: lab left up (prefix {self.lab.prefix}); `python -m lab down` removes it")
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        return result
