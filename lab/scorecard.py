"""Compare what a scenario expected with what the verdict engine raised, and how fast.

An expected event is *found* when an event of the same kind (and scope type and scope, when the
scenario names them) overlaps the fault period.  Latencies use the wall clock at which each state
was written (``event_transitions.recorded_ts``) against the wall time the fault or repair was
applied; they are also given in probe intervals.  Every found event that matches no expectation
is a false event (on a negative scenario, every event is).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SLACK_INTERVALS = 2.0     # an event may start this many intervals before the fault and still match
TARGET_IV = {"suspected": 2.0, "confirmed": 3.0, "resolved": 3.0}   # issue 4's latency targets, in intervals


def _scope_ok(exp: dict[str, Any], ev: dict[str, Any]) -> bool:
    if exp.get("scope_type") and exp["scope_type"] != ev.get("scope_type"):
        return False
    accepted = exp.get("scope") or []
    if not accepted:
        return True
    scope = str(ev.get("scope") or "")
    alternatives = {scope, scope.split("|")[-1], str(ev.get("target") or "")}
    return any(a in alternatives for a in accepted)


def _first(ev: dict[str, Any], states: tuple[str, ...], after: float, kind: str | None = None,
           exp: dict[str, Any] | None = None) -> float | None:
    """Wall time of the first transition to one of ``states`` after ``after`` - while the event
    already had the expected ``kind`` (events can be re-classified as late data arrive) and, with
    ``exp``, the expected scope (an event can be widened: one ASN first, then the country)."""
    times = [t["recorded_ts"] for t in ev.get("transitions", []) if t["state"] in states and t["recorded_ts"] >= after
             and (kind is None or t.get("kind") in (None, kind))
             and (exp is None or t.get("scope") is None
                  or _scope_ok({**exp, "scope_type": None}, {"scope": t["scope"], "target": ev.get("target")}))]
    return min(times) if times else None


def _kind_at(ev: dict[str, Any], ts: float | None) -> str | None:
    """The event's kind at that transition, and its scope when that was another (a narrower one)."""
    for t in ev.get("transitions", []):
        if t["recorded_ts"] == ts:
            kind = t.get("kind") or ev.get("kind")
            scope = t.get("scope")
            return f"{kind} {scope}" if scope and scope != ev.get("scope") else kind
    return None


def _step_ts(result: dict[str, Any], rel: float) -> float:
    """Wall time of timeline second ``rel``: the logged step at that time if any, else t0 + rel."""
    for s in result.get("steps", []):
        if abs(float(s["at"]) - rel) < 1e-6:
            return float(s["ts"])
    return float(result["t0"]) + rel


LATENCIES = ("suspected_s", "confirmed_s", "resolved_s", "noticed_s")


def sources(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Events by where they were raised: the coordinator abroad and, when it ran, the in-country replica."""
    out = {"coordinator": list(result.get("events", []))}
    if result.get("replica"):
        out["replica"] = list(result.get("replica_events", []))
    return out


def score(result: dict[str, Any]) -> dict[str, Any]:
    """Score every source on its own, then merge: an expected event is found when any source found
    it, each latency is the earliest any source reached (that verdict was visible there at that
    moment), and false events are counted from every source."""
    cards = {name: _score_source(result, events) for name, events in sources(result).items()}
    merged = cards["coordinator"]
    if len(cards) == 1:
        return merged
    iv = merged["interval_s"]
    for i, row in enumerate(merged["rows"]):
        per = {name: c["rows"][i]["found"] for name, c in cards.items() if c["rows"][i]["found"] is not None}
        if not per:
            continue
        best = dict(per.get("coordinator") or next(iter(per.values())))
        best["by_source"] = {name: {k: f[k] for k in LATENCIES} for name, f in per.items()}
        best["first_at"] = {}
        for k in LATENCIES:
            have = [(f[k], name) for name, f in per.items() if f[k] is not None]
            if have:
                best[k], best["first_at"][k] = min(have)
                if k == "noticed_s":
                    best["noticed_kind"] = per[best["first_at"][k]]["noticed_kind"]
        best["late"] = _late(best, row["expected"], iv)
        row["found"] = best
    merged["false"] = [{**f, "source": name} for name, c in cards.items() for f in c["false"]]
    return merged


def _late(found: dict[str, Any], exp: dict[str, Any], iv: float) -> list[str]:
    return [k for k in TARGET_IV if (found[f"{k}_s"] is None and (k != "resolved" or exp.get("repair") is not None))
            or (found[f"{k}_s"] or 0) > TARGET_IV[k] * iv]


def _score_source(result: dict[str, Any], found: list[dict[str, Any]]) -> dict[str, Any]:
    iv = float(result["interval_s"])
    t0 = float(result["t0"])
    end = t0 + float(result["duration_s"])
    used: set[str] = set()
    rows = []
    for exp in result.get("expects", []):
        fault = _step_ts(result, float(exp["fault"]))
        repair = None if exp.get("repair") is None else _step_ts(result, float(exp["repair"]))
        window_end = (repair or end) + 2 * iv
        match = None
        for ev in found:
            resolved = ev.get("resolved_ts") or math.inf
            if (ev.get("kind") == exp["kind"] and _scope_ok(exp, ev)
                    and float(ev["start_ts"]) <= window_end and resolved >= fault - SLACK_INTERVALS * iv):
                match = ev
                break
        row: dict[str, Any] = {"expected": exp, "found": None}
        if match is not None:
            used.add(match["event_id"])
            after = fault - SLACK_INTERVALS * iv
            sus = _first(match, ("suspected", "confirmed"), after, exp["kind"], exp)
            conf = _first(match, ("confirmed",), after, exp["kind"], exp)
            res = _first(match, ("resolved",), repair) if repair is not None else None
            noticed = _first(match, ("suspected", "confirmed"), after)     # as any kind of its family
            row["found"] = {"event_id": match["event_id"], "kind": match["kind"], "scope_type": match.get("scope_type"),
                            "scope": match.get("scope"), "state": match.get("state"),
                            "suspected_s": None if sus is None else sus - fault,
                            "confirmed_s": None if conf is None else conf - fault,
                            "resolved_s": None if res is None or repair is None else res - repair,
                            "noticed_s": None if noticed is None else noticed - fault,
                            "noticed_kind": _kind_at(match, noticed)}
            row["found"]["late"] = _late(row["found"], exp, iv)
        rows.append(row)
    false = [{"event_id": ev["event_id"], "kind": ev.get("kind"), "scope_type": ev.get("scope_type"),
              "scope": ev.get("scope"), "state": ev.get("state"), "start_s": float(ev["start_ts"]) - t0,
              "retracted": bool((ev.get("details") or {}).get("retracted")) if isinstance(ev.get("details"), dict) else False}
             for ev in found if ev["event_id"] not in used]
    required = [r for r in rows if not r["expected"].get("optional")]
    return {"scenario": result["scenario"], "interval_s": iv, "negative": not required,
            "rows": rows, "false": false, "errors": result.get("errors", []),
            "recall": (sum(1 for r in required if r["found"]), len(required))}


def _lat(seconds: float | None, iv: float) -> str:
    return "-" if seconds is None else f"{seconds:+.1f}s ({seconds / iv:.1f} iv)"


def render(cards: list[dict[str, Any]]) -> str:
    lines = []
    hit = total = false = on_time = 0
    for c in cards:
        h, n = c["recall"]
        hit, total, false = hit + h, total + n, false + len(c["false"])
        head = "negative" if c["negative"] else f"recall {h}/{n}"
        lines.append(f"== {c['scenario']}  (interval {c['interval_s']:g} s)  {head}  false events {len(c['false'])}")
        for r in c["rows"]:
            e = r["expected"]
            scopes = e.get("scope") or []
            what = f"{e['kind']} {e.get('scope_type') or ''} {' or '.join(scopes[:2])}".strip()
            where = f"fault {e['fault']:g}s" + (f" repair {e['repair']:g}s" if e.get("repair") is not None else "")
            f = r["found"]
            if f is None:
                label = "absent " if e.get("optional") else "MISSED "
                lines.append(f"  {label} {what:<36} {where}" + ("  (optional)" if e.get("optional") else ""))
                continue
            lines.append(f"  found   {what:<36} {where}  -> {f['kind']} {f['scope_type']} {f['scope']} [{f['state']}]"
                         f"  suspected {_lat(f['suspected_s'], c['interval_s'])}"
                         f"  confirmed {_lat(f['confirmed_s'], c['interval_s'])}"
                         f"  resolved {_lat(f['resolved_s'], c['interval_s'])}")
            if f.get("noticed_s") is not None and f["noticed_s"] < (f["suspected_s"] if f["suspected_s"] is not None
                                                                      else math.inf) - 1e-6:
                lines.append(f"          first seen as {f['noticed_kind']} {_lat(f['noticed_s'], c['interval_s'])}"
                             " (re-classified or widened as more results arrived)")
            first = {k[:-2] for k, v in (f.get("first_at") or {}).items() if v == "replica" and k != "noticed_s"}
            alone = (f.get("by_source") or {}).get("coordinator")
            if first:
                lines.append(f"          first at the in-country replica: {', '.join(sorted(first))}"
                             + ("; the coordinator alone: " + "  ".join(
                                 f"{k[:-2]} {_lat(alone[k], c['interval_s'])}" for k in LATENCIES[:3])
                                if alone else "; the coordinator abroad did not find it"))
            if f.get("late"):
                lines.append(f"          over the latency target: {', '.join(f['late'])}")
            elif not e.get("optional"):
                on_time += 1
        for fe in c["false"]:
            lines.append(f"  FALSE   {fe['kind']} {fe['scope_type']} {fe['scope']} [{fe['state']}] from {fe['start_s']:+.1f}s"
                         + (f"  (at the {fe['source']})" if fe.get("source") else "")
                         + ("  (later retracted)" if fe.get("retracted") else ""))
        for err in c["errors"]:
            lines.append(f"  error   {err}")
    recall = f"{100 * hit / total:.0f}%" if total else "n/a"
    lines.append(f"TOTAL  recall {hit}/{total} ({recall})  false events {false}  scenarios {len(cards)}"
                 f"  within latency targets {on_time}/{hit}")
    return "\n".join(lines)


def load_result(results_dir: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((results_dir / f"{name}.json").read_text())
    return data


def _failed_card(name: str, errors: list[str]) -> dict[str, Any]:
    """A run that could not finish: every required expectation counts as missed."""
    from dataclasses import asdict

    from lab.scenario import ScenarioError, load

    rows: list[dict[str, Any]] = []
    interval = 1.0
    try:
        sc = load(name)
        rows = [{"expected": asdict(e), "found": None} for e in sc.expects]
        interval = sc.interval_s
    except ScenarioError:
        pass
    required = [r for r in rows if not r["expected"]["optional"]]
    return {"scenario": name, "interval_s": interval, "negative": not required, "rows": rows, "false": [],
            "errors": errors, "recall": (0, len(required))}


def run_scorecard(names: list[str], *, prefix: str, results_dir: Path, run: bool, as_json: bool,
                  with_replica: bool = True) -> int:
    from lab.build import Lab
    from lab.runner import Run
    from lab.scenario import load
    from lab.topology import kazakhstan

    cards = []
    failed = 0
    for name in names:
        try:
            if run:
                sc = load(name, Lab(kazakhstan(), prefix))
                result = Run(sc, prefix=prefix, results_dir=results_dir, say=lambda _m: None,
                             with_replica=with_replica).execute()
            else:
                result = load_result(results_dir, name)
            cards.append(score(result))
        except Exception as exc:  # one broken scenario run must not hide the others' results
            failed += 1
            first = str(exc).strip().splitlines()
            errors = [f"run failed: {type(exc).__name__}: {first[0] if first else ''}", *first[1:][-3:]]
            cards.append(_failed_card(name, errors))
        if not as_json:
            print(render(cards[-1:]).rsplit("\n", 1)[0], flush=True)
    print(json.dumps(cards, indent=1) if as_json else render(cards).rsplit("\n", 1)[1])
    return 1 if failed else 0
