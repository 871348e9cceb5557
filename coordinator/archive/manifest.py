"""Bundle manifests: writing and signing them, and verifying a bundle on disk.

A bundle is a folder holding ``manifest.json``, ``manifest.json.sig`` (base64 Ed25519 signature of
the exact bytes of ``manifest.json``) and the files the manifest lists with their sha256 and size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.archive import signing

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
ARCHIVE_FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(root: Path, rel: str, fmt: str, rows: int | None) -> dict[str, Any]:
    path = root / rel
    return {"path": rel, "format": fmt, "rows": rows, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_signed(root: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    pub = signing.public_key_b64(key)
    manifest["signing_key"] = {"algorithm": "ed25519", "public_key": pub, "key_id": signing.key_id(pub)}
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (root / MANIFEST).write_bytes(data)
    (root / SIGNATURE).write_text(signing.sign(key, data) + "\n")


def read_manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST).read_bytes())
    return data


@dataclass
class Report:
    bundle: str
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    measurements: int = 0
    key_id: str | None = None
    pinned: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(root: Path, public_key: str | None = None, *, deep: bool = True) -> Report:
    """Check signature, every file's size and sha256, no unlisted file; ``deep`` also counts rows."""
    report = Report(bundle=str(root))
    try:
        data = (root / MANIFEST).read_bytes()
        sig = (root / SIGNATURE).read_text()
        manifest = json.loads(data)
        key = manifest["signing_key"]["public_key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"manifest unreadable: {exc}")
        return report
    report.key_id = signing.key_id(key)
    if public_key is not None:
        report.pinned = True
        if signing.public_key_b64(signing.parse_public_key(public_key)) != key:
            report.problems.append("signed by another key than the one given")
    try:
        signing.verify(key, data, sig)
    except signing.SignatureError as exc:
        report.problems.append(f"manifest signature: {exc}")
    listed = {MANIFEST, SIGNATURE}
    for entry in manifest.get("files", []):
        rel = entry["path"]
        listed.add(rel)
        path = root / rel
        if not path.is_file():
            report.problems.append(f"{rel}: missing")
            continue
        report.files_checked += 1
        if path.stat().st_size != entry["bytes"]:
            report.problems.append(f"{rel}: size {path.stat().st_size} != {entry['bytes']}")
        elif sha256_file(path) != entry["sha256"]:
            report.problems.append(f"{rel}: sha256 mismatch")
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                   and str(p.relative_to(root)) not in listed)
    report.problems += [f"{rel}: not in the manifest" for rel in extra]
    if deep and report.ok:
        _deep_check(root, manifest, report)
    return report


def _deep_check(root: Path, manifest: dict[str, Any], report: Report) -> None:
    seen: set[str] = set()
    for entry in manifest["files"]:
        if entry["format"] != "jsonl":
            continue
        n = 0
        with gzip.open(root / entry["path"], "rb") as fh:
            for line in fh:
                mid = json.loads(line)["measurement_id"]
                if mid in seen:
                    report.problems.append(f"{entry['path']}: measurement {mid} appears twice")
                seen.add(mid)
                n += 1
        if n != entry["rows"]:
            report.problems.append(f"{entry['path']}: {n} rows, manifest says {entry['rows']}")
    report.measurements = len(seen)
    expected = manifest.get("counts", {}).get("measurements")
    if any(e["format"] == "jsonl" for e in manifest["files"]) and expected != len(seen):
        report.problems.append(f"{len(seen)} measurements in the files, manifest says {expected}")
