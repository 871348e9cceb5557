"""The researcher's download command: fetch a bundle file by file, resuming, then verify it.

Each file is fetched into ``<file>.part``; an interrupted download resumes with an HTTP ``Range``
request from the size already on disk.  A file already complete (right size and sha256) is not
fetched again.  The manifest's signature is checked before any file is fetched, against ``key``
when given; after the last file the whole bundle is verified (:func:`manifest.verify_bundle`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from coordinator.archive import manifest, signing

CHUNK = 1 << 16
TIMEOUT_S = 60.0


class DownloadError(RuntimeError):
    """The bundle could not be fetched or did not verify."""


@dataclass
class Stats:
    files: int = 0
    skipped: int = 0
    resumed: int = 0
    bytes_fetched: int = 0


def _get(url: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {exc}") from exc


def _fetch_file(url: str, dest: Path, entry: dict[str, Any], progress: Progress | None, task: Any,
                stats: Stats) -> None:
    if dest.is_file() and dest.stat().st_size == entry["bytes"] and manifest.sha256_file(dest) == entry["sha256"]:
        stats.skipped += 1
        if progress is not None:
            progress.advance(task, entry["bytes"])
        return
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    if offset > entry["bytes"]:
        part.unlink()
        offset = 0
    part.touch()
    if offset < entry["bytes"]:
        resp = _get(url, {"Range": f"bytes={offset}-"} if offset else None)
        with resp:
            if offset and resp.status != 206:
                offset = 0                      # the server ignored Range: start again
            elif offset:
                stats.resumed += 1
            if progress is not None:
                progress.advance(task, offset)
            with open(part, "ab" if offset else "wb") as fh:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    stats.bytes_fetched += len(chunk)
                    if progress is not None:
                        progress.advance(task, len(chunk))
    elif progress is not None:
        progress.advance(task, offset)
    digest = manifest.sha256_file(part)
    if part.stat().st_size != entry["bytes"] or digest != entry["sha256"]:
        part.unlink()
        raise DownloadError(f"{entry['path']}: checksum mismatch after download (partial file removed; run again)")
    part.replace(dest)
    stats.files += 1


def fetch(url: str, out: Path, *, key: str | None = None,
          progress: bool = True) -> tuple[Path, Stats, manifest.Report]:
    """Download the bundle at ``url`` (``.../api/v1/archives/NAME``) into ``out/NAME`` and verify it."""
    url = url.rstrip("/")
    with _get(url + "/manifest.json") as resp:
        data = resp.read()
    with _get(url + "/manifest.json.sig") as resp:
        sig = resp.read().decode()
    try:
        m = json.loads(data)
        name = m["name"]
        signing.verify(m["signing_key"]["public_key"], data, sig)
        if key is not None and signing.public_key_b64(signing.parse_public_key(key)) != m["signing_key"]["public_key"]:
            raise DownloadError("the bundle is signed by another key than the one given")
    except (ValueError, KeyError, signing.SignatureError) as exc:
        raise DownloadError(f"manifest does not verify: {exc}") from exc
    if not name or "/" in name or name.startswith("."):
        raise DownloadError(f"bad bundle name {name!r}")
    root = out / name
    root.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    total = sum(f["bytes"] for f in m["files"])
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), disable=not progress)
    with bar:
        task = bar.add_task(name, total=total)
        for entry in m["files"]:
            dest = (root / entry["path"]).resolve()
            if root.resolve() not in dest.parents:
                raise DownloadError(f"manifest path {entry['path']!r} leaves the bundle folder")
            bar.update(task, description=f"{name}: {entry['path']}")
            _fetch_file(f"{url}/{entry['path']}", dest, entry, bar, task, stats)
    (root / manifest.MANIFEST).write_bytes(data)
    (root / manifest.SIGNATURE).write_text(sig)
    return root, stats, manifest.verify_bundle(root, key)


def download(url: str, out: Path, *, key: str | None = None, progress: bool = True) -> int:
    """The ``download`` command: 0 when the bundle verified, 1 when it did not."""
    root, stats, report = fetch(url, out, key=key, progress=progress)
    print(f"{root.name}: {stats.files} fetched ({stats.resumed} resumed), {stats.skipped} already complete, "
          f"{stats.bytes_fetched} bytes")
    for problem in report.problems:
        print(f"FAIL {problem}")
    if not report.ok:
        return 1
    print(f"OK {root}: {report.files_checked} files, {report.measurements} measurements, key {report.key_id}")
    return 0
