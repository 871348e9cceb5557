"""Who may do what: the admin token, one-use invites, probe registration, replay protection.

Invites are stored only as their SHA-256; a token is shown once, when it is made.  Probe ids are
assigned here.  Signed-request nonces are kept in SQLite for the clock window, so a replay is
refused even across a coordinator restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

from probe.record import ACCESS_TYPES

ADMIN_TOKEN_FILE = "admin_token"


class AuthError(Exception):
    """Refused; ``status`` is the HTTP status and ``str()`` the reason given back."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def admin_token(configured: str, data_dir: str | Path) -> str:
    """``TOCSIN_ADMIN_TOKEN``/config if set, else the token in DATA/admin_token (made 0600 once)."""
    if configured:
        return configured
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def check_admin(expected: str, authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError(401, "admin token required: Authorization: Bearer <token>")
    if not hmac.compare_digest(authorization[7:].strip().encode(), expected.encode()):
        raise AuthError(403, "admin token is wrong")


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invite(conn: sqlite3.Connection, ttl_s: float, note: str | None = None) -> str:
    token = "inv-" + secrets.token_urlsafe(24)
    now = time.time()
    conn.execute("INSERT INTO invites (token_sha256, created_ts, expires_ts, note) VALUES (?, ?, ?, ?)",
                 (_sha(token), now, now + ttl_s, note))
    return token


def network_key(cc: str | None, asn: int | None, access: str) -> str:
    return f"{cc or ''}|{'' if asn is None else asn}|{access}"


def effective(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """The network a probe's records carry: observed (prefix table) where known, else declared."""
    return {"probe_id": row["probe_id"], "cc": row["observed_cc"] or row["declared_cc"],
            "asn": row["observed_asn"] if row["observed_asn"] is not None else row["declared_asn"],
            "access": row["access"], "tags": json.loads(row["tags"])}


def remember_network(conn: sqlite3.Connection, probe: dict[str, Any], now: float) -> None:
    conn.execute(
        "INSERT INTO probe_networks (probe_id, network, cc, asn, access, first_ts, last_ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(probe_id, network) DO UPDATE SET last_ts = excluded.last_ts",
        (probe["probe_id"], network_key(probe["cc"], probe["asn"], probe["access"]), probe["cc"], probe["asn"],
         probe["access"], now, now))


def register_probe(conn: sqlite3.Connection, invite: str, public_key: str, declared: dict[str, Any],
                   observed: tuple[int, str | None] | None) -> dict[str, Any]:
    """Redeem ``invite`` (one use) and create the probe; returns its effective network."""
    access = declared.get("access", "fixed")
    if access not in ACCESS_TYPES:
        raise AuthError(400, f"access must be one of {', '.join(ACCESS_TYPES)}")
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT * FROM invites WHERE token_sha256 = ?", (_sha(invite),)).fetchone()
        if row is None:
            raise AuthError(403, "invite is not valid")
        if row["used_ts"] is not None:
            raise AuthError(403, "invite was already used")
        if row["expires_ts"] is not None and row["expires_ts"] < now:
            raise AuthError(403, "invite has expired")
        if conn.execute("SELECT 1 FROM probes WHERE public_key = ?", (public_key,)).fetchone():
            raise AuthError(409, "this public key is already registered")
        probe_id = "p-" + secrets.token_hex(6)
        conn.execute(
            "INSERT INTO probes (probe_id, public_key, name, created_ts, declared_cc, declared_asn, observed_cc, "
            "observed_asn, access, tags, software) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (probe_id, public_key, declared.get("name"), now, declared.get("cc"), declared.get("asn"),
             observed[1] if observed else None, observed[0] if observed else None, access,
             json.dumps(declared.get("tags", [])), declared.get("software")))
        conn.execute("UPDATE invites SET used_ts = ?, probe_id = ? WHERE token_sha256 = ?", (now, probe_id, _sha(invite)))
        probe = effective(conn.execute("SELECT * FROM probes WHERE probe_id = ?", (probe_id,)).fetchone())
        remember_network(conn, probe, now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return probe


def use_nonce(conn: sqlite3.Connection, probe_id: str, nonce: str, ts: float, window_s: float) -> None:
    """Remember a request nonce; :class:`AuthError` 401 if it was seen already (a replay)."""
    try:
        conn.execute("INSERT INTO request_nonces (nonce, probe_id, ts) VALUES (?, ?, ?)", (nonce, probe_id, ts))
    except sqlite3.IntegrityError:
        raise AuthError(401, "replayed request: this nonce was already used") from None
    if secrets.randbelow(200) == 0:  # prune now and then; entries older than the window are useless
        conn.execute("DELETE FROM request_nonces WHERE ts < ?", (time.time() - 2 * window_s,))
