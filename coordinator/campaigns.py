"""Campaigns: what to measure, from where, how often - and the tasks a given probe gets.

A campaign is defined by a TOML file (``python -m coordinator campaign add``) or JSON through the
API; both carry the same keys (docs/coordinator.md).  Targets come from ``targets/`` lists and/or
inline ``[[target]]`` tables; test parameters are checked with ``probe.runner.validate_params``.
The resolved target list is stored with the campaign, so a running campaign does not change when
a list file is edited later.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import targets as targetlists
from probe.record import ACCESS_TYPES, RecordError, time_to_epoch

CAMPAIGN_KEYS = ("name", "country", "lists", "categories", "groups", "target", "tests", "interval_s",
                 "timeout_s", "selector", "start", "end", "embargo_s")
SELECTOR_KEYS = ("cc", "asn", "access", "tags", "vantage")
VANTAGES = ("any", "inside", "outside")
TEST_KEYS = ("name", "params")
MIN_INTERVAL_S = 1.0


class CampaignError(ValueError):
    """A campaign definition is invalid; the message says which key and why."""


@dataclass
class Selector:
    cc: list[str] = field(default_factory=list)
    asn: list[int] = field(default_factory=list)
    access: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    vantage: str = "any"

    def matches(self, probe: dict[str, Any]) -> bool:
        if self.cc and probe.get("cc") not in self.cc:
            return False
        if self.asn and probe.get("asn") not in self.asn:
            return False
        if self.access and probe.get("access") not in self.access:
            return False
        return not (self.tags and not set(self.tags) <= set(probe.get("tags", [])))


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CampaignError(f"{where} must be a list of strings")
    return list(value)


def parse_campaign(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a campaign definition; return the normalised spec stored in ``campaigns.spec``."""
    from probe.probers.base import ParamsError
    from probe.runner import validate_params

    if not isinstance(doc, dict):
        raise CampaignError("a campaign must be a table/object")
    unknown = sorted(set(doc) - set(CAMPAIGN_KEYS))
    if unknown:
        raise CampaignError(f"unknown campaign key(s) {', '.join(unknown)}; known: {', '.join(CAMPAIGN_KEYS)}")
    name = doc.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise CampaignError("name must be a string of 1-100 characters")
    resolved: list[targetlists.Target] = []
    lists = _strings(doc.get("lists"), "lists")
    try:
        for list_name in lists:
            resolved.extend(targetlists.load_list(list_name))
        if "target" in doc:
            resolved.extend(targetlists.parse_targets({"target": doc["target"]}, "campaign", doc.get("country")))
    except targetlists.TargetListError as exc:
        raise CampaignError(str(exc)) from None
    categories = _strings(doc.get("categories"), "categories")
    bad = sorted(set(categories) - set(targetlists.CATEGORIES))
    if bad:
        raise CampaignError(f"categories: unknown {', '.join(bad)}; known: {', '.join(targetlists.CATEGORIES)}")
    groups = _strings(doc.get("groups"), "groups")
    resolved = [t for t in resolved if (not categories or t.category in categories) and (not groups or t.group in groups)]
    if not resolved:
        raise CampaignError("the campaign has no targets: name lists (lists = [\"kz\"]) or inline [[target]] tables")
    tests = doc.get("tests")
    if not isinstance(tests, list) or not tests:
        raise CampaignError("tests must be a non-empty list of tables {name = \"tcp\", params = {...}}")
    norm_tests = []
    for i, t in enumerate(tests):
        if isinstance(t, str):
            t = {"name": t}
        if not isinstance(t, dict) or sorted(set(t) - set(TEST_KEYS)):
            raise CampaignError(f"tests[{i}] must be a table with keys name and params")
        params = t.get("params", {})
        if not isinstance(params, dict):
            raise CampaignError(f"tests[{i}].params must be a table")
        try:
            validate_params(str(t.get("name")), params)
        except (ParamsError, KeyError) as exc:
            raise CampaignError(f"tests[{i}] ({t.get('name')}): {exc}") from None
        norm_tests.append({"name": t["name"], "params": params})
    interval = doc.get("interval_s", 300)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval < MIN_INTERVAL_S:
        raise CampaignError(f"interval_s must be a number >= {MIN_INTERVAL_S}")
    timeout = doc.get("timeout_s")
    if timeout is not None and (not isinstance(timeout, (int, float)) or not 0 < timeout <= interval):
        raise CampaignError("timeout_s must be a positive number no larger than interval_s")
    selector = parse_selector(doc.get("selector", {}))
    window = {}
    for key in ("start", "end"):
        value = doc.get(key)
        if value is None:
            continue
        if hasattr(value, "isoformat"):  # TOML datetimes
            value = value.isoformat().replace("+00:00", "Z")
        try:
            window[key] = time_to_epoch(value if "." in value else value.replace("Z", ".0Z"))
        except (RecordError, AttributeError):
            raise CampaignError(f"{key} must be ISO 8601 UTC like 2026-01-05T10:30:00Z") from None
    if "start" in window and "end" in window and window["end"] <= window["start"]:
        raise CampaignError("end must be after start")
    embargo = doc.get("embargo_s", 0)
    if not isinstance(embargo, (int, float)) or embargo < 0:
        raise CampaignError("embargo_s must be a number >= 0")
    country = doc.get("country")
    return {
        "name": name, "country": country, "lists": lists, "categories": categories, "groups": groups,
        "targets": [asdict(t) for t in resolved], "tests": norm_tests, "interval_s": float(interval),
        "timeout_s": None if timeout is None else float(timeout), "selector": asdict(selector),
        "start_ts": window.get("start"), "end_ts": window.get("end"), "embargo_s": float(embargo),
    }


def parse_selector(doc: Any) -> Selector:
    if not isinstance(doc, dict):
        raise CampaignError("selector must be a table")
    unknown = sorted(set(doc) - set(SELECTOR_KEYS))
    if unknown:
        raise CampaignError(f"unknown selector key(s) {', '.join(unknown)}; known: {', '.join(SELECTOR_KEYS)}")
    asns = doc.get("asn", [])
    if isinstance(asns, int):
        asns = [asns]
    if not isinstance(asns, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in asns):
        raise CampaignError("selector.asn must be a list of integers")
    access = _strings(doc.get("access"), "selector.access")
    if sorted(set(access) - set(ACCESS_TYPES)):
        raise CampaignError(f"selector.access must be among {', '.join(ACCESS_TYPES)}")
    vantage = doc.get("vantage", "any")
    if vantage not in VANTAGES:
        raise CampaignError(f"selector.vantage must be one of {', '.join(VANTAGES)}")
    return Selector(cc=_strings(doc.get("cc"), "selector.cc"), asn=asns, access=access,
                    tags=_strings(doc.get("tags"), "selector.tags"), vantage=vantage)


def tasks_for_probe(campaign_id: str, spec: dict[str, Any], probe: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of one campaign for one probe (empty when the selector does not match)."""
    selector = Selector(**spec["selector"])
    if not selector.matches(probe):
        return []
    out = []
    for tdict in spec["targets"]:
        target = targetlists.Target(**{**tdict, "tests": tuple(tdict["tests"])})
        vantage = "inside" if probe.get("cc") == target.cc else "outside"
        if selector.vantage != "any" and vantage != selector.vantage:
            continue
        for test in spec["tests"]:
            if test["name"] not in target.tests:
                continue
            what = target.target_for(test["name"])
            if what is None:
                continue
            key = json.dumps([campaign_id, test["name"], what, test["params"]], sort_keys=True)
            out.append({
                "task_id": "t-" + hashlib.sha256(key.encode()).hexdigest()[:16],
                "campaign_id": campaign_id, "test": test["name"], "target": what, "params": test["params"],
                "interval_s": spec["interval_s"], "timeout_s": spec.get("timeout_s"),
                "start_ts": spec.get("start_ts"), "end_ts": spec.get("end_ts"),
                "annotations": {**target.annotations(), "vantage": vantage},
            })
    return out


# --- storage (run on the Store's writer/reader threads) ---------------------------------------

def add_campaign(conn: sqlite3.Connection, spec: dict[str, Any], campaign_id: str | None = None) -> str:
    campaign_id = campaign_id or "c-" + secrets.token_hex(4)
    conn.execute("INSERT INTO campaigns (campaign_id, name, spec, created_ts, embargo_s) VALUES (?, ?, ?, ?, ?)",
                 (campaign_id, spec["name"], json.dumps(spec), time.time(), spec["embargo_s"]))
    return campaign_id


def stop_campaign(conn: sqlite3.Connection, campaign_id: str) -> bool:
    cur = conn.execute("UPDATE campaigns SET stopped_ts = ? WHERE campaign_id = ? AND stopped_ts IS NULL",
                       (time.time(), campaign_id))
    return cur.rowcount == 1


def list_campaigns(conn: sqlite3.Connection, *, active_only: bool = False) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    for row in conn.execute("SELECT * FROM campaigns ORDER BY created_ts"):
        spec = json.loads(row["spec"])
        ended = spec.get("end_ts") is not None and spec["end_ts"] <= now
        state = "stopped" if row["stopped_ts"] else "ended" if ended else (
            "scheduled" if spec.get("start_ts") and spec["start_ts"] > now else "active")
        if active_only and state not in ("active", "scheduled"):
            continue
        out.append({"campaign_id": row["campaign_id"], "name": row["name"], "state": state,
                    "created_ts": row["created_ts"], "stopped_ts": row["stopped_ts"], "spec": spec})
    return out


def summary(campaign: dict[str, Any]) -> dict[str, Any]:
    """Public view of a campaign (no target list dump)."""
    spec = campaign["spec"]
    return {"campaign_id": campaign["campaign_id"], "name": campaign["name"], "state": campaign["state"],
            "created_ts": campaign["created_ts"], "stopped_ts": campaign["stopped_ts"],
            "country": spec.get("country"), "lists": spec["lists"], "targets": len(spec["targets"]),
            "tests": [t["name"] for t in spec["tests"]], "interval_s": spec["interval_s"],
            "selector": spec["selector"], "start_ts": spec.get("start_ts"), "end_ts": spec.get("end_ts")}
