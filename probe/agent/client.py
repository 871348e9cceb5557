"""Signed HTTP to the coordinator: endpoints tried in order, clock offset from ``Date``."""

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
                 timeout_s: float = 30.0):
        if not endpoints:
            raise ValueError("at least one coordinator endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.key = key
        self.probe_id = probe_id
        self.clock_offset_s = 0.0          # coordinator clock - local clock, from the Date header
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(10.0, timeout_s)   # the agent shortens it to fit its poll interval
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
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return self._session

    async def post(self, path: str, body: bytes, content_type: str = "application/json", *,
                   timeout_s: float | None = None) -> Answer:
        """POST to the first endpoint that answers (any HTTP status counts as an answer).
        ``timeout_s`` bounds each endpoint's attempt (default: the client's timeout)."""
        errors = []
        total = self.timeout_s if timeout_s is None else timeout_s
        timeout = aiohttp.ClientTimeout(total=total, connect=min(self.connect_timeout_s, total))
        for i, base in enumerate(self.endpoints):
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
                    if i:  # remember the endpoint that worked: try it first next time
                        self.endpoints.insert(0, self.endpoints.pop(i))
                    return Answer(resp.status, doc if isinstance(doc, dict) else {"value": doc}, base)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{base}: {type(exc).__name__} {exc}".strip())
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
