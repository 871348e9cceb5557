"""The coordinator's Ed25519 signing key (archives' manifests, webhook bodies).

The private key lives in the data directory as ``signing-ed25519.pem`` (PKCS#8, mode 0600), made on
first use.  Public keys travel as base64 of the raw 32 bytes; the key id is the first 16 hex digits
of the sha256 of those bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILENAME = "signing-ed25519.pem"


class SignatureError(ValueError):
    """A signature or a public key is malformed or does not verify."""


def key_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / KEY_FILENAME


def load_or_create_key(data_dir: str | Path) -> Ed25519PrivateKey:
    """Load the coordinator's key, creating it (atomically, mode 0600) if there is none yet."""
    path = key_path(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)        # never replace a key another process made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SignatureError(f"{path} does not hold an Ed25519 private key")
    return loaded


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def key_id(public_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """Base64 Ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 raw bytes (what ``archive key`` prints) or a PEM block."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            pub = serialization.load_pem_public_key(text.encode())
            if not isinstance(pub, Ed25519PublicKey):
                raise SignatureError("the PEM key is not an Ed25519 public key")
            return pub
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"not an Ed25519 public key: {exc}") from exc


def verify(public_b64: str, data: bytes, signature_b64: str) -> None:
    """Raise :class:`SignatureError` unless ``signature_b64`` signs ``data`` under the key."""
    pub = parse_public_key(public_b64)
    try:
        pub.verify(base64.b64decode(signature_b64.strip(), validate=True), data)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("bad signature") from exc
