"""Helpers shared by the core-service tests (no tests here): a real app on loopback, signed calls."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator import auth
from coordinator.app import make_app
from coordinator.config import load_config
from coordinator.store import Store
from probe import signing
from probe.record import make_record

ADMIN = "test-admin-token"


class Probe:
    def __init__(self, client: TestClient, key: Ed25519PrivateKey, probe: dict[str, Any]):
        self.client, self.key, self.info = client, key, probe
        self.id = probe["probe_id"]
        self.head = signing.GENESIS

    async def post(self, path: str, body: bytes, *, probe_id: str | None = None, key: Ed25519PrivateKey | None = None,
                   now: float | None = None, headers: dict[str, str] | None = None,
                   content_type: str = "application/gzip") -> ClientResponse:
        h = signing.sign_headers(key or self.key, "POST", path, probe_id or self.id, body, now=now)
        h["Content-Type"] = content_type
        if headers is not None:
            h = headers
        return await self.client.post(path, data=body, headers=h)

    def record(self, i: int, **kw: Any) -> dict[str, Any]:
        base: dict[str, Any] = dict(
            test_name="tcp", test_version="1.0.0", target=f"192.0.2.{i % 250}:443",
            start_time=datetime.now(UTC) - timedelta(seconds=60 - i % 50), runtime_s=0.01, success=True,
            failure=None, test_keys={"connect_ms": 1.0 + i}, probe_id=self.id, probe_cc=self.info["cc"],
            probe_asn=self.info["asn"], probe_access=self.info["access"])
        base.update(kw)
        return make_record(**base)

    def batch(self, records: list[dict[str, Any]], kind: str = "record") -> bytes:
        items = []
        for r in records:
            h = signing.chain_hash(self.head, r)
            items.append({"prev": self.head, "hash": h, kind: r})
            self.head = h
        return gzip.compress(orjson.dumps({"items": items}))

    async def upload(self, records: list[dict[str, Any]]) -> ClientResponse:
        return await self.post("/api/v1/measurements", self.batch(records))


RegisterFn = Callable[..., Awaitable[Probe]]


async def make_service(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[TestClient, Store]]:
    """Body of each module's ``service`` fixture: the whole app on a loopback port, real SQLite."""
    config = load_config(None, environ={"TOCSIN_ADMIN_TOKEN": ADMIN, "TOCSIN_INGEST_MAX_BYTES": "200000",
                                        "TOCSIN_RATE_BURST_RECORDS": "5000", "TOCSIN_RATE_RECORDS_PER_S": "1"})
    store = Store(tmp_path)
    client = await aiohttp_client(make_app(store, config, str(tmp_path)))
    yield client, store
    await client.close()
    store.close()


async def register(client: TestClient, store: Store, *, cc: str = "KZ", asn: int = 9198, access: str = "fixed",
                   tags: list[str] | None = None) -> Probe:
    invite = await store.write(auth.create_invite, 3600.0, None)
    key = signing.new_key()
    body = orjson.dumps({"invite": invite, "public_key": signing.public_key_b64(key), "cc": cc, "asn": asn,
                         "access": access, "tags": tags or []})
    h = signing.sign_headers(key, "POST", "/api/v1/register", signing.UNREGISTERED, body)
    resp = await client.post("/api/v1/register", data=body, headers=h)
    assert resp.status == 201, await resp.text()
    return Probe(client, key, (await resp.json())["probe"])


def count(store: Store, table: str = "measurements") -> int:
    return int(store.write_sync(lambda c: c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))
