"""The dashboard's static assets, served from memory: plotly.js, dashboard.js, style.css.

plotly.js is the small "basic" bundle (scatter, bar, pie; ``plotly.js-basic-dist-min`` from npm, put
in ``vendor/`` by scripts/install-deps.sh) when it is there, else the full bundle shipped inside the
``plotly`` Python package: either way nothing is fetched from the internet at render time.

Every asset is served under its plain name (``/static/plotly.min.js``, ``Cache-Control:
max-age=3600``) and under a content-hashed name (``/static/plotly.min.<sha256[:12]>.js``, cached for
a year as ``immutable``); pages link the hashed names.  Each is gzip-compressed once at start-up and
sent compressed to browsers that accept gzip; ``ETag`` answers revalidations with 304.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import plotly

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
SMALL_PLOTLY = "plotly-basic.min.js"          # file name inside the npm package plotly.js-basic-dist-min
FULL_PLOTLY = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLAIN_CACHE = "max-age=3600"
HASHED_CACHE = "public, max-age=31536000, immutable"
NAMES = ("plotly.min.js", "dashboard.js", "style.css")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}


@dataclass(frozen=True)
class Asset:
    name: str            # plain name, e.g. plotly.min.js
    hashed: str          # e.g. plotly.min.3f2a9c1b7d4e.js
    source: Path         # the file it was read from
    body: bytes
    gzipped: bytes
    etag: str            # quoted, from the full sha256
    content_type: str


def plotly_source(vendor: Path = VENDOR) -> Path:
    """The plotly.js file to serve: the small bundle when installed, else the plotly package's."""
    small = vendor / SMALL_PLOTLY
    return small if small.is_file() else FULL_PLOTLY


def _asset(name: str, source: Path) -> Asset:
    body = source.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    stem, dot, ext = name.rpartition(".")
    return Asset(name=name, hashed=f"{stem}.{digest[:12]}{dot}{ext}", source=source, body=body,
                 gzipped=gzip.compress(body, compresslevel=6, mtime=0), etag=f'"{digest}"',
                 content_type=CONTENT_TYPES[f".{ext}"])


def load(vendor: Path = VENDOR) -> dict[str, Asset]:
    """Read, hash and compress every asset (blocking: call it off the event loop)."""
    out: dict[str, Asset] = {}
    for name in NAMES:
        asset = _asset(name, plotly_source(vendor) if name == "plotly.min.js" else STATIC / name)
        out[asset.name] = out[asset.hashed] = asset
    return out


def urls(loaded: dict[str, Asset]) -> dict[str, str]:
    """Plain name -> the hashed URL pages should link."""
    return {name: f"/static/{loaded[name].hashed}" for name in NAMES}


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip;q=0`` refuses it)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _q_is_zero(q[2:]))
    return False


def _q_is_zero(value: str) -> bool:
    try:
        return float(value) == 0.0
    except ValueError:
        return False
