"""The probe's identity in its state directory: Ed25519 key, assigned id, coordinator endpoints.

State directory layout (docs/agent.md): ``key.pem`` (private key, 0600, never leaves the
machine), ``identity.json`` (probe id, endpoints, the network the coordinator assigned),
``schedule.json`` (last schedule), ``outbox.db``, ``status.json``, ``probe.toml`` (local caps).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from probe import signing

KEY_FILE = "key.pem"
IDENTITY_FILE = "identity.json"


class IdentityError(Exception):
    """The state directory holds no usable identity; the message says what to run."""


@dataclass
class Identity:
    probe_id: str
    endpoints: list[str]
    probe: dict[str, Any] = field(default_factory=dict)   # cc, asn, access, tags as the coordinator assigned
    registered_ts: float = 0.0

    def save(self, state: Path) -> None:
        write_json_atomic(state / IDENTITY_FILE, asdict(self))


def write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(state: Path) -> tuple[Identity, Ed25519PrivateKey]:
    try:
        doc = json.loads((state / IDENTITY_FILE).read_text())
        key = signing.load_private_key(state / KEY_FILE)
    except FileNotFoundError:
        raise IdentityError(f"{state} holds no probe identity: run "
                            "`python -m probe register --coordinator URL --invite TOKEN --state DIR` first") from None
    return Identity(**doc), key


def ensure_key(state: Path) -> Ed25519PrivateKey:
    """The probe's key; made on first use (an interrupted registration reuses it)."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / KEY_FILE
    if path.exists():
        return signing.load_private_key(path)
    key = signing.new_key()
    signing.save_private_key(key, path)
    return key
