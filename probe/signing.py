"""Wire format of Tocsin request signatures, shared by the probe agent and the coordinator.

Every probe request carries four headers:

``X-Tocsin-Probe``      the probe id the coordinator assigned (``-`` while registering)
``X-Tocsin-Timestamp``  seconds since the epoch, decimal, on the coordinator's clock as the probe
                        estimates it (local clock + offset learnt from the ``Date`` header)
``X-Tocsin-Nonce``      32 lower-case hex characters, never reused
``X-Tocsin-Signature``  base64 of the Ed25519 signature of :func:`signing_message`

The signed message binds the method, the path with its query, the probe id, the timestamp, the
nonce and the SHA-256 of the exact body bytes sent (the gzip bytes for a batch).  Standard
library and ``cryptography`` only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SCHEME = "tocsin-sig-v1"
H_PROBE = "X-Tocsin-Probe"
H_TIMESTAMP = "X-Tocsin-Timestamp"
H_NONCE = "X-Tocsin-Nonce"
H_SIGNATURE = "X-Tocsin-Signature"
HEADERS = (H_PROBE, H_TIMESTAMP, H_NONCE, H_SIGNATURE)
UNREGISTERED = "-"
_NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_TS_RE = re.compile(r"^\d{1,12}(\.\d{1,6})?$")


class SignatureError(ValueError):
    """A request's signature headers are missing, malformed or do not verify."""


def signing_message(method: str, path: str, probe_id: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((SCHEME, method.upper(), path, probe_id, timestamp, nonce, digest)).encode()


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(b64: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(b64, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SignatureError(f"public key is not base64 of 32 raw Ed25519 bytes: {exc}") from None


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write the key as PKCS#8 PEM readable by its owner only (created 0600, never world-readable)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} does not hold an Ed25519 private key")
    return key


def sign_headers(key: Ed25519PrivateKey, method: str, path: str, probe_id: str, body: bytes,
                 *, now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four signature headers for one request."""
    ts = f"{(time.time() if now is None else now):.3f}"
    nonce = nonce or os.urandom(16).hex()
    sig = key.sign(signing_message(method, path, probe_id, ts, nonce, body))
    return {H_PROBE: probe_id, H_TIMESTAMP: ts, H_NONCE: nonce, H_SIGNATURE: base64.b64encode(sig).decode()}


def parse_headers(headers: Mapping[str, str]) -> tuple[str, float, str, bytes]:
    """(probe id, timestamp, nonce, signature) from request headers, or :class:`SignatureError`."""
    missing = [h for h in HEADERS if not headers.get(h)]
    if missing:
        raise SignatureError(f"unsigned request: missing header(s) {', '.join(missing)}")
    ts_text, nonce = headers[H_TIMESTAMP], headers[H_NONCE]
    if not _TS_RE.match(ts_text):
        raise SignatureError(f"{H_TIMESTAMP} must be decimal epoch seconds")
    if not _NONCE_RE.match(nonce):
        raise SignatureError(f"{H_NONCE} must be 32 lower-case hex characters")
    try:
        sig = base64.b64decode(headers[H_SIGNATURE], validate=True)
    except ValueError:
        raise SignatureError(f"{H_SIGNATURE} is not base64") from None
    if len(sig) != 64:
        raise SignatureError(f"{H_SIGNATURE} must be a 64-byte Ed25519 signature")
    probe_id = headers[H_PROBE]
    if len(probe_id) > 80:
        raise SignatureError(f"{H_PROBE} is too long")
    return probe_id, float(ts_text), nonce, sig


def verify(public_key: Ed25519PublicKey, headers: Mapping[str, str], method: str, path: str, body: bytes) -> None:
    """Raise :class:`SignatureError` unless the headers sign this exact request with ``public_key``."""
    probe_id, _, nonce, sig = parse_headers(headers)
    msg = signing_message(method, path, probe_id, headers[H_TIMESTAMP], nonce, body)
    try:
        public_key.verify(sig, msg)
    except InvalidSignature:
        raise SignatureError(f"signature does not verify for probe {probe_id}") from None


# --- the outbox hash chain (each item carries the hash of the one before) ---------------------

GENESIS = "0" * 64


def chain_hash(prev: str, payload: dict[str, object]) -> str:
    """Link hash of one outbox item: sha256 of ``prev`` and the item's canonical content hash."""
    from probe.record import content_hash

    return hashlib.sha256(f"{prev}:{content_hash(payload)}".encode()).hexdigest()


def chain_hash_raw(prev: str, canonical: bytes) -> str:
    """The same link hash from the payload's canonical JSON bytes (what the wire carries)."""
    return hashlib.sha256(f"{prev}:{hashlib.sha256(canonical).hexdigest()}".encode()).hexdigest()
