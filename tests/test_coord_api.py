"""Registration, schedule polls, campaigns and the read side over a real server on loopback."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_coord_helpers import ADMIN, count, make_service, register

from coordinator import auth
from probe import signing

ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CAMPAIGN = {"name": "kz-basic", "lists": ["kz", "controls"], "categories": ["domestic", "control"],
            "tests": [{"name": "http"}, {"name": "tcp"}], "interval_s": 60, "selector": {"cc": ["KZ", "DE"]}}


@pytest.fixture
async def service(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Any]:
    async for value in make_service(tmp_path, aiohttp_client):
        yield value


async def test_invite_is_one_use_and_ids_are_assigned(service: Any) -> None:
    client, store = service
    resp = await client.post("/api/v1/invites", headers=ADMIN_H)
    invite = (await resp.json())["invite"]
    assert resp.status == 201
    stored = store.write_sync(lambda c: [r[0] for r in c.execute("SELECT token_sha256 FROM invites")])
    assert invite not in stored   # only the hash is kept

    async def try_register(token: str) -> Any:
        key = signing.new_key()
        body = orjson.dumps({"invite": token, "public_key": signing.public_key_b64(key), "cc": "KZ"})
        h = signing.sign_headers(key, "POST", "/api/v1/register", "-", body)
        return await client.post("/api/v1/register", data=body, headers=h)

    first = await try_register(invite)
    assert first.status == 201 and (await first.json())["probe"]["probe_id"].startswith("p-")
    second = await try_register(invite)
    assert second.status == 403 and "already used" in (await second.json())["error"]
    bad = await try_register("inv-nonsense")
    assert bad.status == 403 and "not valid" in (await bad.json())["error"]
    # registration must prove possession of the key it registers
    key, other = signing.new_key(), signing.new_key()
    token = await store.write(auth.create_invite, 60.0, None)
    body = orjson.dumps({"invite": token, "public_key": signing.public_key_b64(key)})
    resp = await client.post("/api/v1/register", data=body, headers=signing.sign_headers(other, "POST", "/api/v1/register", "-", body))
    assert resp.status == 401
    assert (await client.post("/api/v1/invites")).status == 401
    assert (await client.post("/api/v1/invites", headers={"Authorization": "Bearer wrong"})).status == 403


async def test_poll_is_a_heartbeat_and_returns_annotated_tasks(service: Any) -> None:
    client, store = service
    resp = await client.post("/api/v1/campaigns", data=orjson.dumps(CAMPAIGN), headers=ADMIN_H)
    assert resp.status == 201, await resp.text()
    cid = (await resp.json())["campaign_id"]
    kz = await register(client, store, cc="KZ", asn=9198)
    de = await register(client, store, cc="DE", asn=3320)
    resp = await kz.post("/api/v1/schedule", orjson.dumps({"buffered": 7, "buffered_since_ts": time.time() - 60}),
                         content_type="application/json")
    doc = await resp.json()
    assert resp.status == 200 and doc["campaigns"] == [cid]
    assert doc["probe"] == {"probe_id": kz.id, "cc": "KZ", "asn": 9198, "access": "fixed", "tags": []}
    egov = [t for t in doc["tasks"] if t["target"] == "https://egov.kz/"]
    assert egov and egov[0]["annotations"] == {"target_category": "domestic", "target_cc": "KZ",
                                               "target_group": "egov", "vantage": "inside"}
    assert all(t["annotations"]["target_category"] in ("domestic", "control") for t in doc["tasks"])
    tasks_de = (await (await de.post("/api/v1/schedule", b"{}", content_type="application/json")).json())["tasks"]
    assert {t["annotations"]["vantage"] for t in tasks_de if t["annotations"]["target_cc"] == "KZ"} == {"outside"}
    assert count(store, "probe_heartbeats") == 2
    probes = (await (await client.get("/api/v1/probes")).json())["probes"]
    me = next(p for p in probes if p["probe_id"] == kz.id)
    assert me["status"] == "connected" and me["buffered"] == 7
    never = next(p for p in probes if p["probe_id"] not in (kz.id, de.id)) if len(probes) > 2 else None
    assert never is None
    text = orjson.dumps(probes).decode()
    assert "public_key" not in text and "127.0.0.1" not in text and "declared" not in text
    # stopping the campaign empties the next schedule
    assert (await client.post(f"/api/v1/campaigns/{cid}/stop", headers=ADMIN_H)).status == 200
    doc = await (await kz.post("/api/v1/schedule", b"{}", content_type="application/json")).json()
    assert doc["tasks"] == [] and doc["campaigns"] == []


async def test_campaign_admin_and_validation(service: Any) -> None:
    client, _ = service
    assert (await client.post("/api/v1/campaigns", data=orjson.dumps(CAMPAIGN))).status == 401
    bad = dict(CAMPAIGN, tests=[{"name": "tcp", "params": {"no_such_param": 1}}])
    resp = await client.post("/api/v1/campaigns", data=orjson.dumps(bad), headers=ADMIN_H)
    assert resp.status == 422 and "tests[0] (tcp)" in (await resp.json())["error"]
    resp = await client.post("/api/v1/campaigns", data=orjson.dumps(dict(CAMPAIGN, colour="red")), headers=ADMIN_H)
    assert resp.status == 422 and "unknown campaign key(s) colour" in (await resp.json())["error"]
    toml = b'name = "t"\nlists = ["controls"]\ntests = ["tcp"]\ninterval_s = 30\n'
    resp = await client.post("/api/v1/campaigns", data=toml, headers={**ADMIN_H, "Content-Type": "application/toml"})
    assert resp.status == 201
    cid = (await resp.json())["campaign_id"]
    listed = (await (await client.get("/api/v1/campaigns")).json())["campaigns"]
    assert [c["campaign_id"] for c in listed] == [cid] and listed[0]["state"] == "active"
    shown = await (await client.get(f"/api/v1/campaigns/{cid}")).json()
    assert shown["spec"]["tests"] == [{"name": "tcp", "params": {}}]
    assert (await client.get("/api/v1/campaigns/c-none")).status == 404


async def test_measurements_filters_stream_jsonl_and_csv(service: Any) -> None:
    client, store = service
    kz = await register(client, store, cc="KZ", asn=9198)
    de = await register(client, store, cc="DE", asn=3320)
    assert (await kz.upload([kz.record(i, test_name="tcp" if i % 2 else "dns") for i in range(30)])).status == 200
    assert (await de.upload([de.record(i) for i in range(10)])).status == 200
    lines = (await (await client.get("/api/v1/measurements?country=KZ&test=dns")).read()).splitlines()
    recs = [orjson.loads(x) for x in lines]
    assert len(recs) == 15 and {r["probe_cc"] for r in recs} == {"KZ"} and {r["test_name"] for r in recs} == {"dns"}
    assert len((await (await client.get("/api/v1/measurements?asn=AS3320")).read()).splitlines()) == 10
    assert len((await (await client.get(f"/api/v1/measurements?probe={de.id}&limit=3")).read()).splitlines()) == 3
    since = time.time() - 45
    got = [orjson.loads(x) for x in (await (await client.get(f"/api/v1/measurements?since={since}")).read()).splitlines()]
    assert got and all(r["start_time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since)) for r in got)
    resp = await client.get("/api/v1/measurements?format=csv&source=tocsin")
    assert resp.headers["Content-Type"].startswith("text/csv") and resp.headers.get("Transfer-Encoding") == "chunked"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 40 and rows[0]["measurement_id"]
    resp = await client.get("/api/v1/measurements?colour=red")
    assert resp.status == 400 and "unknown parameter(s) colour" in (await resp.json())["error"]
    assert (await client.get("/api/v1/measurements?since=yesterday")).status == 400


async def test_health(service: Any) -> None:
    client, _ = service
    assert (await (await client.get("/api/v1/health")).json())["status"] == "ok"
