"""Prefix table: which ASN and country an address belongs to.

Two line formats are read (tab or space separated, ``#`` comments, blank lines ignored):

* ``PREFIX ASN CC [DESCRIPTION]`` - CIDR prefixes (IPv4 or IPv6), e.g. ``95.56.0.0/14 9198 KZ``;
* ``RANGE_START RANGE_END ASN CC [DESCRIPTION]`` - the iptoasn.com ``ip2asn-v4.tsv`` /
  ``ip2asn-v6.tsv`` layout (ASN 0 = not routed, skipped).

The most specific (smallest) matching range wins.  Lookups are a binary search; the table is
loaded once.  The address itself is only ever used for this lookup: it is never stored.
"""

from __future__ import annotations

import bisect
import gzip
import ipaddress
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TABLE = Path(__file__).with_name("prefixes_default.tsv")


class PrefixTableError(ValueError):
    """A line of the prefix table could not be read; the message names file and line."""


@dataclass(frozen=True)
class Origin:
    asn: int
    cc: str | None


class PrefixTable:
    def __init__(self, entries: list[tuple[int, int, int, Origin]]):
        # (version, start, end, origin), sorted by start then by size descending
        self._by_version: dict[int, tuple[list[int], list[tuple[int, int, Origin]], list[int]]] = {}
        for version in (4, 6):
            rows = sorted(((s, e, o) for v, s, e, o in entries if v == version), key=lambda r: (r[0], -(r[1] - r[0])))
            max_end, top = [], -1
            for r in rows:
                top = max(top, r[1])
                max_end.append(top)
            self._by_version[version] = ([r[0] for r in rows], rows, max_end)
        self.size = len(entries)

    def lookup(self, address: str) -> Origin | None:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        starts, rows, max_end = self._by_version[ip.version]
        value = int(ip)
        j = bisect.bisect_right(starts, value) - 1
        best: tuple[int, Origin] | None = None
        # Walk back over ranges starting at or before the address while one of them can still
        # reach it (max_end is the running maximum of range ends).
        while j >= 0 and max_end[j] >= value:
            start, end, origin = rows[j]
            j -= 1
            if start <= value <= end and (best is None or end - start < best[0]):
                best = (end - start, origin)
        return best[1] if best else None


def _parse_line(text: str, where: str) -> tuple[int, int, int, Origin] | None:
    parts = text.split("\t") if "\t" in text else text.split()
    parts = [p.strip() for p in parts]
    try:
        if "/" in parts[0]:
            net = ipaddress.ip_network(parts[0], strict=False)
            start, end, version = int(net.network_address), int(net.broadcast_address), net.version
            asn_text, cc = parts[1], parts[2] if len(parts) > 2 else ""
        else:
            a, b = ipaddress.ip_address(parts[0]), ipaddress.ip_address(parts[1])
            if a.version != b.version or int(b) < int(a):
                raise ValueError("range end before start or mixed versions")
            start, end, version = int(a), int(b), a.version
            asn_text, cc = parts[2], parts[3] if len(parts) > 3 else ""
        asn = int(asn_text.upper().removeprefix("AS"))
    except (IndexError, ValueError) as exc:
        raise PrefixTableError(f"{where}: cannot read {text!r} ({exc}); expected 'PREFIX ASN CC' or "
                               "'START END ASN CC'") from None
    if asn == 0:
        return None
    cc = cc.upper()
    return version, start, end, Origin(asn, cc if len(cc) == 2 and cc.isalpha() and cc != "NONE" else None)


def load_table(path: str | Path | None = None) -> PrefixTable:
    """Load a prefix table file (``.gz`` read transparently); ``None`` = the built-in default."""
    path = Path(path) if path else DEFAULT_TABLE
    opener = gzip.open if path.suffix == ".gz" else open
    entries = []
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                entry = _parse_line(text, f"{path}:{n}")
                if entry:
                    entries.append(entry)
    except OSError as exc:
        raise PrefixTableError(f"cannot read prefix table {path}: {exc}") from None
    return PrefixTable(entries)
