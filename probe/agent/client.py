"""Signed HTTP to the coordinator: endpoints tried in order, clock offset from ``Date``.

Endpoint policy (docs/agent.md): the endpoints are tried in their configured order - the first is
the primary coordinator, the others fallbacks such as an in-country replica.  An endpoint that
failed to answer (connection refused or timed out) is tried after the others while another
endpoint has answered more recently than it did (and did not fail since); polls try it first again
after ``recheck_s`` (they re-probe it), uploads only once it has answered again, so after a cut the
probe is back on its primary within ``recheck_s`` plus one poll (at once after a blackout, when
nothing answered) and no upload waits on a primary that failed lately.  While another endpoint is left to try, one attempt is bounded by ``fallback_after_s``
and its connection attempt by ``fallback_connect_s`` (a wrong fallback costs little: the replica
forwards what it gets; a late one delays the data the people inside the country need).  With a
fallback configured, every request opens its own connection: a kept-alive connection that a cut
left dangling would skip the connection bound and hold the attempt for ``fallback_after_s``, while
a fresh connection's handshake is done by the kernel and so times the network, not the coordinator's load.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe import signing


class Unreachable(Exception):
    """No endpoint answered; ``str()`` lists what each one said."""


@dataclass
class Answer:
    status: int
    doc: dict[str, Any]
    endpoint: str


class Client:
    def __init__(self, endpoints: list[str], key: Ed25519PrivateKey, probe_id: str = signing.UNREGISTERED,
                 timeout_s: float = 30.0, recheck_s: float = 60.0):
        if not endpoints:
            raise ValueError("at least one coordinator endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.key = key
        self.probe_id = probe_id
        self.clock_offset_s = 0.0          # coordinator clock - local clock, from the Date header
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(10.0, timeout_s)   # the agent shortens it to fit its poll interval
        self.recheck_s = recheck_s                      # a failed endpoint goes last for this long
        self.fallback_after_s = 2 * self.connect_timeout_s   # one attempt's bound while others remain
        self.fallback_connect_s = min(3.0, self.connect_timeout_s)   # ... and its connection attempt's
        self.down_until: dict[str, float] = {}          # endpoint -> monotonic time it goes first again
        self.failed_at: dict[str, float] = {}           # endpoint -> monotonic time of its last failure
        self.ok_at: dict[str, float] = {}               # endpoint -> monotonic time it last answered
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # no keep-alive while a fallback exists (see the module docstring)
            connector = aiohttp.TCPConnector(force_close=len(self.endpoints) > 1)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    def order(self, recheck: bool = True) -> list[str]:
        """Endpoints in the order to try now: configured order; one that failed lately goes last,
        but only while another endpoint has answered since that failure (when nothing answers - a
        blackout - the primary stays first, so the probe is back on it as soon as the line is).

        An endpoint whose last outcome was a failure stays behind one that answered more recently
        and whose last outcome was an answer, whatever requests still in flight say about it: a
        late failure of the primary does not send the next request back to it.  ``recheck``
        (polls): after ``recheck_s`` it is tried first again - the poll re-probes the primary.
        Without it (uploads), the results keep going where the last answer came from until the
        primary has answered again."""
        now = time.monotonic()

        def demoted(e: str) -> bool:
            if recheck and self.down_until.get(e, 0.0) <= now:
                return False
            mine = self.ok_at.get(e, -1.0)
            if self.failed_at.get(e, -1.0) <= mine:
                return False                                  # its last outcome was an answer
            return any(self.ok_at.get(f, -1.0) > max(mine, self.failed_at.get(f, -1.0))
                       for f in self.endpoints if f != e)

        fresh = [e for e in self.endpoints if not demoted(e)]
        return fresh + [e for e in self.endpoints if e not in fresh]

    async def post(self, path: str, body: bytes, content_type: str = "application/json", *,
                   timeout_s: float | None = None, recheck: bool = True) -> Answer:
        """POST to the first endpoint that answers (any HTTP status counts as an answer).
        ``timeout_s`` bounds each endpoint's attempt (default: the client's timeout); ``recheck``:
        see :meth:`order`."""
        errors = []
        total = self.timeout_s if timeout_s is None else timeout_s
        order = self.order(recheck)
        # nothing answered at the last try (a blackout): every endpoint gets the short connection
        # bound, so a SYN lost in the cut is not waited out in TCP's back-off after the line is back
        dark = len(order) > 1 and all(self.failed_at.get(e, -1.0) > self.ok_at.get(e, -1.0) for e in order)
        for i, base in enumerate(order):
            last = i == len(order) - 1
            bound = total if last else min(total, self.fallback_after_s)
            connect = min(self.connect_timeout_s if last and not dark else self.fallback_connect_s, bound)
            timeout = aiohttp.ClientTimeout(total=bound, connect=connect)
            headers = signing.sign_headers(self.key, "POST", path, self.probe_id, body,
                                           now=time.time() + self.clock_offset_s)
            headers["Content-Type"] = content_type
            sent = time.time()
            try:
                async with self.session().post(base + path, data=body, headers=headers, timeout=timeout) as resp:
                    raw = await resp.read()
                    self._learn_clock(resp.headers.get("Date"), sent, time.time())
                    try:
                        doc = json.loads(raw) if raw else {}
                    except (ValueError, UnicodeDecodeError):
                        doc = {"error": raw[:200].decode(errors="replace")}
                    self.down_until.pop(base, None)
                    self.ok_at[base] = time.monotonic()
                    return Answer(resp.status, doc if isinstance(doc, dict) else {"value": doc}, base)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{base}: {type(exc).__name__} {exc}".strip())
                if len(self.endpoints) > 1:
                    self.failed_at[base] = time.monotonic()
                    self.down_until[base] = self.failed_at[base] + self.recheck_s
        raise Unreachable("; ".join(errors))

    def _learn_clock(self, date: str | None, sent: float, received: float) -> None:
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        # Date has 1 s resolution: the server's second started somewhere in [server, server + 1).
        self.clock_offset_s = server + 0.5 - (sent + received) / 2
