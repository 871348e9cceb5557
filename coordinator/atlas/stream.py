"""The live Atlas stream (cousteau's ``AtlasStream``; in 2.3.1 a plain WebSocket carrying JSON
``[event_name, payload]`` frames - no socket.io) with reconnects, resume and de-duplication.

On every (re)connect the subscriptions are sent again with ``startTime`` set a little before the
last event seen (``stream_overlap_s``), so events emitted while the connection was down are
replayed; the replayed ones already seen are dropped here by key, and the store's primary keys
make a second copy impossible anyway.  Blocking: run :func:`run_stream` in a thread.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websocket
from ripe.atlas.cousteau import AtlasStream

from coordinator.atlas.settings import Settings

log = logging.getLogger("tocsin.atlas.stream")
DEFAULT_URL = "wss://atlas-stream.ripe.net/stream/"
CONNECTION_MSM = 7000

Handler = Callable[[str, list[dict[str, Any]]], None]


class ResumingStream(AtlasStream):
    """cousteau's stream with a CA bundle, a connect timeout and one connect attempt per call."""

    ws: websocket.WebSocket | None

    def __init__(self, url: str, ca_file: str = "", timeout_s: float = 10.0):
        parts = urlsplit(url)
        super().__init__(base_url=f"{parts.scheme}://{parts.netloc}", path=parts.path or "/stream/")
        self.sslopt: dict[str, Any] = {"ca_certs": ca_file} if ca_file else {}
        self.timeout_s = timeout_s

    def connect(self) -> None:
        self.ws = websocket.create_connection(self.url, header=self.headers, sslopt=self.sslopt,
                                              timeout=self.timeout_s, **self._get_proxy_options())
        for subscription in self.subscriptions:
            self.send(self.ws, self.EVENT_NAME_SUBSCRIBE, subscription)

    def drop(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except (OSError, websocket.WebSocketException):
                pass
        self.ws = None

    def readable(self, wait_s: float) -> bool:
        sock = self.ws.sock if self.ws is not None else None
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        ready, _, _ = select.select([sock], [], [], wait_s)
        return bool(ready)


@dataclass
class StreamStats:
    connects: int = 0
    received: int = 0
    duplicates_dropped: int = 0
    delivered: int = 0
    errors: int = 0
    last_event_ts: float | None = None


def event_key(name: str, payload: dict[str, Any]) -> tuple[Any, ...]:
    if name == "atlas_probestatus" or payload.get("type") == "connection":
        return ("c", payload.get("prb_id"), payload.get("timestamp"), payload.get("event"))
    return ("r", payload.get("msm_id"), payload.get("prb_id"), payload.get("timestamp"))


def subscriptions(settings: Settings) -> list[dict[str, Any]]:
    subs: list[dict[str, Any]] = [{"stream_type": "probestatus"}]
    for msm in dict.fromkeys([*settings.builtin_msm_ids, *settings.msm_ids]):
        subs.append({"stream_type": "result", "msm": int(msm)})
    return subs


def run_stream(settings: Settings, handle: Handler, *, stop: threading.Event, resume_ts: float | None = None,
               max_seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
               batch: int = 500) -> StreamStats:
    """Receive until ``stop`` is set (or ``max_seconds``); ``handle(kind, payloads)`` gets batches
    of ``connection`` events and ``result`` objects, each event once."""
    stats = StreamStats(last_event_ts=resume_ts)
    stream = ResumingStream(settings.stream_url or DEFAULT_URL, settings.ca_file, settings.timeout_s)
    stream.subscriptions = subscriptions(settings)
    seen: dict[tuple[Any, ...], float] = {}
    pending: dict[str, list[dict[str, Any]]] = {"connection": [], "result": []}
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    delay = settings.backoff_s
    alive_ts: float | None = resume_ts

    def flush() -> None:
        for kind, items in pending.items():
            if items:
                handle(kind, items)
                stats.delivered += len(items)
                pending[kind] = []

    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        if stream.ws is None:
            starts = [t for t in (stats.last_event_ts, alive_ts) if t is not None]
            for sub in stream.subscriptions:
                if starts:
                    sub["startTime"] = int(min(starts) - settings.stream_overlap_s)
            try:
                stream.connect()
            except (OSError, websocket.WebSocketException) as exc:
                stats.errors += 1
                log.info("atlas stream: connect failed (%s); retry in %.1fs", exc, delay)
                stream.ws = None
                sleep(delay)
                delay = min(settings.backoff_max_s, delay * 2)
                continue
            stats.connects += 1
            delay = settings.backoff_s
            alive_ts = time.time()
        try:
            if not stream.readable(0.2):
                flush()
                continue
            name, payload = stream.recv(stream.ws)
        except (OSError, ValueError, websocket.WebSocketException) as exc:
            stats.errors += 1
            log.info("atlas stream: connection lost (%s); reconnecting", exc)
            flush()
            stream.drop()
            continue
        alive_ts = time.time()
        if name not in (stream.EVENT_NAME_RESULTS, stream.EVENT_NAME_PROBESTATUS) or not isinstance(payload, dict):
            continue
        stats.received += 1
        key = event_key(name, payload)
        if key in seen:
            stats.duplicates_dropped += 1
            continue
        ts = float(payload.get("timestamp") or 0)
        seen[key] = ts
        stats.last_event_ts = max(stats.last_event_ts or ts, ts)
        is_connection = name == stream.EVENT_NAME_PROBESTATUS or payload.get("msm_id") == CONNECTION_MSM
        pending["connection" if is_connection else "result"].append(payload)
        if sum(len(v) for v in pending.values()) >= batch:
            flush()
        if len(seen) > 200_000:  # forget keys far older than any replay can reach
            horizon = (stats.last_event_ts or 0) - 4 * settings.stream_overlap_s
            seen = {k: t for k, t in seen.items() if t >= horizon}
    flush()
    stream.drop()
    return stats
