"""One polling pass: per watched country its probes, their connection events, results of the
built-in and our own measurements from those probes, and results of measurements towards the
campaigns' targets in the country.  Blocking (cousteau + store): run it in an executor.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

from coordinator.atlas import storage
from coordinator.atlas.client import CONNECTION_MSM, AtlasAPIError, Client
from coordinator.atlas.settings import Settings
from coordinator.atlas.storage import Counts
from coordinator.store import Store

log = logging.getLogger("tocsin.atlas.fetch")
CURSOR = "fetch_until"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def fetch_once(store: Store, client: Client, settings: Settings, *, now: float | None = None,
               since: float | None = None) -> Counts:
    """Fetch [cursor, now] (or [since, now]); the cursor advances only when every request worked."""
    now = time.time() if now is None else now
    cursor = store.write_sync(lambda c: storage.get_state(c, CURSOR))
    # Probes cut off from their controller keep measuring and upload later, with their original
    # timestamps: every pass re-asks ``late_s`` before the cursor (duplicates are free: same ids).
    start = int(since if since is not None else cursor - settings.late_s if cursor is not None
                else now - settings.lookback_s)
    stop = int(now)
    counts = Counts()
    failed = False

    def attempt(what: str, fn: Callable[[], Any]) -> Any:
        nonlocal failed
        try:
            return fn()
        except AtlasAPIError as exc:
            failed = True
            counts.reasons[f"fetch {what}: {exc}"[:200]] += 1
            log.warning("atlas fetch %s failed: %s", what, exc)
            return None

    ids: list[int] = []
    for cc in settings.countries:
        probes = attempt(f"probes {cc}", functools.partial(client.probes, country=cc))
        if probes:
            counts.add(store.write_sync(storage.store_probes, probes))
            ids.extend(p["id"] for p in probes if isinstance(p.get("id"), int))
    infos = store.write_sync(storage.probe_infos)
    targets = store.write_sync(storage.target_countries)
    if ids:
        events = attempt("connection events", lambda: client.results(CONNECTION_MSM, start, stop, ids))
        if events:
            counts.add(store.write_sync(lambda c: storage.store_connection_events(c, events, probes=infos)))
        for msm in dict.fromkeys([*settings.builtin_msm_ids, *settings.msm_ids]):
            got = attempt(f"results of {msm}", functools.partial(client.results, msm, start, stop, ids))
            if got:
                counts.add(store.write_sync(lambda c, got=got: storage.store_results(c, got, probes=infos,
                                                                                    target_cc=targets.get)))
    watched = set(settings.countries)
    seen_msm: set[int] = set()
    for target, cc in sorted(targets.items()):
        if cc not in watched:
            continue
        key = "target_ip" if _is_ip(target) else "target"
        msms = attempt(f"measurements to {target}", functools.partial(client.measurements, **{key: target}))
        for m in msms or []:
            msm = m.get("id")
            if not isinstance(msm, int) or msm in seen_msm or msm == CONNECTION_MSM:
                continue
            seen_msm.add(msm)
            got = attempt(f"results of {msm}", functools.partial(client.results, msm, start, stop))
            if got:
                counts.add(store.write_sync(lambda c, got=got: storage.store_results(c, got, probes=infos,
                                                                                    target_cc=targets.get)))
    if not failed:
        store.write_sync(lambda c: storage.set_state(c, CURSOR, stop + 1))
    return counts
