"""The cousteau client against the stand-in on loopback: paging, filters, windows, errors, backoff."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from coordinator.atlas import standin
from coordinator.atlas.client import AtlasAPIError, Client
from coordinator.atlas.settings import Settings

SAMPLES = standin.default_samples()


class Standin:
    def __init__(self, app: Any, port: int, cafile: str):
        self.app, self.port, self.cafile = app, port, cafile
        self.server = f"127.0.0.1:{port}"

    def control(self, action: str, body: dict[str, Any] | None = None) -> Any:
        ctx = ssl.create_default_context(cafile=self.cafile)
        req = urllib.request.Request(f"https://{self.server}/_standin/{action}", method="POST",
                                     data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def settings(self, **kw: Any) -> Settings:
        base: dict[str, Any] = {"server": self.server, "ca_file": self.cafile, "backoff_s": 0.01,
                                "backoff_max_s": 0.05, "timeout_s": 2.0, "page_size": 5}
        base.update(kw)
        return Settings(**base)


@pytest.fixture
async def atlas(tls_ca: trustme.CA, tls_cafile: str, tmp_path: Path) -> AsyncIterator[Standin]:
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({"probes": [
        {"id": 900001 + i, "asn_v4": 64500 + i % 3, "country_code": "KZ", "address_v4": f"198.18.5.{i + 1}",
         "connected": True} for i in range(12)]}))
    app = standin.make_app(SAMPLES, probes, poll_s=0.05, result_interval_s=0)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    runner, port = await standin.start(app, "127.0.0.1", 0, ctx)
    yield Standin(app, port, tls_cafile)
    await runner.cleanup()


async def test_paging_follows_next_and_filters(atlas: Standin) -> None:
    client = Client(atlas.settings(page_size=5))
    kz = await asyncio.to_thread(client.probes, country="KZ")
    assert sorted(p["id"] for p in kz) == [900001 + i for i in range(12)]
    assert client.requests == 3                       # 12 probes, 5 a page
    de = await asyncio.to_thread(client.probes, country="DE")
    assert de and all(p["country_code"] == "DE" for p in de)
    by_asn = await asyncio.to_thread(client.probes, country="KZ", asn=64501)
    assert {p["id"] for p in by_asn} == {900002, 900005, 900008, 900011}
    by_id = await asyncio.to_thread(client.probes, ids=[900003, 3183])
    assert {p["id"] for p in by_id} == {900003, 3183}


async def test_results_time_window_and_probe_filter(atlas: Standin) -> None:
    rows = [json.loads(line) for line in (SAMPLES / "ping.jsonl").open()]
    msm = rows[2]["msm_id"]
    mine = [r for r in rows if r["msm_id"] == msm]
    ts = sorted(r["timestamp"] for r in mine)
    window = (ts[-1] - ts[0]) // 3 + 1
    client = Client(atlas.settings(window_s=window))
    got = await asyncio.to_thread(client.results, msm, ts[0], ts[-1])
    assert len(got) == len(mine)
    assert client.requests >= 3                       # asked in slices of window_s
    got = await asyncio.to_thread(client.results, msm, ts[0], ts[-1] - 1)
    assert len(got) == len([t for t in ts if t < ts[-1]])
    one = mine[0]["prb_id"]
    got = await asyncio.to_thread(client.results, msm, ts[0], ts[-1], [one])
    assert got and {r["prb_id"] for r in got} == {one}
    log = atlas.app[standin.LOG]
    asked = [e["query"] for e in log if e["path"].endswith("/results/") or e["path"].endswith("/results")]
    assert all(int(q["stop"]) - int(q["start"]) < window for q in asked)
    assert all(float(q["start"]).is_integer() for q in asked)   # UTC epochs, never ISO strings


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retries_with_backoff_then_succeeds(atlas: Standin, status: int) -> None:
    slept: list[float] = []
    client = Client(atlas.settings(), sleep=slept.append)
    await asyncio.to_thread(atlas.control, "fail", {"path": "/api/v2/probes/", "status": status, "count": 3})
    kz = await asyncio.to_thread(client.probes, country="KZ")
    assert len(kz) == 12
    assert client.retries == 3 and slept == [0.01, 0.02, 0.04]


async def test_retry_after_header_is_obeyed(atlas: Standin) -> None:
    slept: list[float] = []
    client = Client(atlas.settings(backoff_max_s=5), sleep=slept.append)
    await asyncio.to_thread(atlas.control, "fail", {"status": 429, "count": 1, "retry_after": 2})
    await asyncio.to_thread(client.probes, country="KZ")
    assert slept == [2.0]


async def test_gives_up_after_max_retries(atlas: Standin) -> None:
    client = Client(atlas.settings(max_retries=2), sleep=lambda s: None)
    await asyncio.to_thread(atlas.control, "fail", {"status": 503, "count": 10})
    with pytest.raises(AtlasAPIError) as err:
        await asyncio.to_thread(client.probes, country="KZ")
    assert err.value.status == 503 and client.requests == 3


async def test_not_found_is_not_retried(atlas: Standin) -> None:
    client = Client(atlas.settings(), sleep=lambda s: None)
    with pytest.raises(AtlasAPIError) as err:
        await asyncio.to_thread(client.results, 123456789, 0, 10)
    assert err.value.status == 404 and client.requests == 1


async def test_timeout_is_retried(atlas: Standin) -> None:
    client = Client(atlas.settings(timeout_s=0.3), sleep=lambda s: None)
    await asyncio.to_thread(atlas.control, "fail", {"path": "/api/v2/probes/", "delay_s": 1.0, "count": 1})
    kz = await asyncio.to_thread(client.probes, country="KZ")
    assert len(kz) == 12 and client.retries == 1


async def test_untrusted_certificate_is_refused(atlas: Standin) -> None:
    client = Client(atlas.settings(ca_file="", max_retries=0))
    with pytest.raises(AtlasAPIError) as err:
        await asyncio.to_thread(client.probes, country="KZ")
    assert err.value.status is None and "SSL" in str(err.value)


async def test_create_needs_key_and_returns_ids(atlas: Standin) -> None:
    no_key = Client(atlas.settings())
    with pytest.raises(AtlasAPIError):
        await asyncio.to_thread(no_key.create_oneoff, "ping", "198.18.9.9",
                                [{"type": "country", "value": "KZ", "requested": 2}], description="t")
    client = Client(atlas.settings(api_key="test-key", window_s=2**31))
    ids = await asyncio.to_thread(client.create_oneoff, "ping", "198.18.9.9",
                                  [{"type": "country", "value": "KZ", "requested": 2}], description="t")
    assert len(ids) == 1
    got = await asyncio.to_thread(client.results, ids[0], 0, 2**31 - 1)
    assert len(got) == 2 and all(r["dst_addr"] == "198.18.9.9" for r in got)
