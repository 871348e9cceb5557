"""Blocking RIPE Atlas API client on ``ripe.atlas.cousteau``: paging, filters, time windows,
retries with backoff on HTTP 429/5xx, timeouts and connection errors.

Run it off the event loop (``run_in_executor``).  Times are passed to cousteau as UTC epoch
integers: cousteau turns aware datetimes into epochs ignoring their UTC offset.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from ripe.atlas.cousteau import (
    AtlasCreateRequest,
    AtlasRequest,
    AtlasResultsRequest,
    AtlasSource,
    Ping,
    Traceroute,
)

from coordinator.atlas.settings import Settings

log = logging.getLogger("tocsin.atlas.client")
CONNECTION_MSM = 7000
PROBE_CHUNK = 500
RETRY_STATUS = (429, 500, 502, 503, 504)


class AtlasAPIError(RuntimeError):
    """The Atlas API refused a request or kept failing; ``status`` is the last HTTP status (or None)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _Tracking:
    """Keeps the HTTP status and Retry-After that cousteau's ``http_method`` throws away."""

    status: int | None = None
    retry_after: float | None = None

    def get_http_method(self, method: str) -> Any:
        self.status = None
        response = super().get_http_method(method)  # type: ignore[misc]
        self.status = response.status_code
        try:
            self.retry_after = float(response.headers.get("Retry-After", ""))
        except ValueError:
            self.retry_after = None
        return response


class _Get(_Tracking, AtlasRequest):
    pass


class _Results(_Tracking, AtlasResultsRequest):
    pass


class _Create(_Tracking, AtlasCreateRequest):
    pass


class Client:
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep):
        self.s = settings
        self.sleep = sleep
        self.requests = 0
        self.retries = 0

    def _common(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"server": self.s.server, "verify": self.s.ca_file or True}
        if self.s.api_key:
            kw["key"] = self.s.api_key
        return kw

    def _run(self, make: Callable[[], Any], call: Callable[[Any], tuple[bool, Any]], what: str,
             retry_status: tuple[int, ...] = RETRY_STATUS, retry_errors: bool = True) -> Any:
        delay = self.s.backoff_s
        for attempt in range(self.s.max_retries + 1):
            req = make()
            req.http_method_args["timeout"] = self.s.timeout_s
            self.requests += 1
            ok, body = call(req)
            if ok:
                return body
            status = req.status
            retryable = status in retry_status if status is not None else retry_errors
            if not retryable or attempt == self.s.max_retries:
                raise AtlasAPIError(f"{what}: {'HTTP ' + str(status) if status else 'no response'}: "
                                    f"{str(body)[:200]}", status)
            wait = min(self.s.backoff_max_s, req.retry_after if req.retry_after is not None else delay)
            log.info("atlas %s: %s, retry %d in %.1fs", what, status or body, attempt + 1, wait)
            self.retries += 1
            self.sleep(wait)
            delay = min(self.s.backoff_max_s, delay * 2)
        raise AssertionError("unreachable")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        query = ("?" + urlencode(params)) if params else ""
        return self._run(lambda: _Get(url_path=path + query, **self._common()), lambda r: r.get(), f"GET {path}")

    def pages(self, path: str, params: dict[str, Any] | None = None, max_pages: int = 10000) -> Iterator[dict[str, Any]]:
        """Every object of a paged listing, following ``next``."""
        params = {"page_size": self.s.page_size, **(params or {})}
        url: str | None = path + "?" + urlencode(params)
        for _ in range(max_pages):
            if url is None:
                return
            page = self._run(functools.partial(_Get, url_path=url, **self._common()), lambda r: r.get(), f"GET {path}")
            yield from page.get("results", [])
            nxt = page.get("next")
            if nxt:
                parts = urlsplit(nxt)
                url = parts.path + ("?" + parts.query if parts.query else "")
            else:
                url = None
        raise AtlasAPIError(f"GET {path}: more than {max_pages} pages")

    def probes(self, *, country: str | None = None, asn: int | None = None,
               ids: list[int] | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if country:
            params["country_code"] = country
        if asn is not None:
            params["asn_v4"] = asn
        if ids is None:
            return list(self.pages("/api/v2/probes/", params))
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), PROBE_CHUNK):
            out.extend(self.pages("/api/v2/probes/", {**params, "id__in": ",".join(map(str, ids[i:i + PROBE_CHUNK]))}))
        return out

    def measurements(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.pages("/api/v2/measurements/", filters))

    def results(self, msm_id: int, start: int, stop: int, probe_ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Results of ``msm_id`` in [start, stop] (UTC epochs), asked in windows of ``window_s``."""
        out: list[dict[str, Any]] = []
        chunks = [probe_ids[i:i + PROBE_CHUNK] for i in range(0, len(probe_ids), PROBE_CHUNK)] if probe_ids else [None]
        step = max(1, int(self.s.window_s))
        for chunk in chunks:
            t = int(start)
            while t <= int(stop):
                end = min(int(stop), t + step - 1)

                def make(t: int = t, end: int = end, chunk: list[int] | None = chunk) -> _Results:
                    return _Results(msm_id=msm_id, start=t, stop=end, probe_ids=chunk, **self._common())

                body = self._run(make, lambda r: r.create(), f"results of {msm_id}")
                out.extend(body if isinstance(body, list) else [])
                t = end + 1
        return out

    def connection_events(self, start: int, stop: int, probe_ids: list[int] | None = None) -> list[dict[str, Any]]:
        return self.results(CONNECTION_MSM, start, stop, probe_ids)

    def create_oneoff(self, kind: str, target: str, sources: list[dict[str, Any]], *, description: str,
                      packets: int = 3) -> list[int]:
        """Create one one-off ping or traceroute; returns the new measurement ids."""
        if not self.s.api_key:
            raise AtlasAPIError("creating measurements needs an API key ([atlas] api_key)")
        cls = Ping if kind == "ping" else Traceroute
        extra = {"packets": packets} if kind == "ping" else {"protocol": "ICMP"}
        msm = cls(af=4, target=target, description=description, **extra)
        srcs = [AtlasSource(type=s["type"], value=str(s["value"]), requested=int(s["requested"])) for s in sources]
        body = self._run(lambda: _Create(measurements=[msm], sources=srcs, is_oneoff=True, **self._common()),
                         lambda r: r.create(), f"create {kind} to {target}", retry_status=(429, 503),
                         retry_errors=False)
        return [int(i) for i in body.get("measurements", [])]


__all__ = ["AtlasAPIError", "Client"]
