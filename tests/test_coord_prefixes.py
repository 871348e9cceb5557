"""Prefix table: CIDR and iptoasn range formats, most specific match, errors name the line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from coordinator.prefixes import PrefixTableError, load_table


def test_default_table_and_lookups() -> None:
    t = load_table()
    assert (o := t.lookup("95.57.1.1")) and (o.asn, o.cc) == (9198, "KZ")
    assert t.lookup("127.0.0.1") is None and t.lookup("not an address") is None
    assert (o := t.lookup("::ffff:192.0.2.9")) and o.asn == 64496
    assert (o := t.lookup("2001:db8::5")) and o.asn == 64499


def test_cidr_most_specific_wins_and_lab_ranges(tmp_path: Path) -> None:
    f = tmp_path / "lab.tsv"
    lines = ["# lab", "198.18.0.0/15\t64500\tZZ", "198.18.1.0/24\t64501\tKZ\tlab mobile"]
    lines += [f"198.18.{i}.0/26 {65000 + i} KZ" for i in range(2, 200)]   # many small ones after the big one
    f.write_text("\n".join(lines) + "\n")
    t = load_table(f)
    assert (o := t.lookup("198.18.1.7")) and (o.asn, o.cc) == (64501, "KZ")
    assert (o := t.lookup("198.19.200.1")) and o.asn == 64500
    assert (o := t.lookup("198.18.150.70")) and o.asn == 64500      # outside the /26, inside the /15
    assert (o := t.lookup("198.18.150.7")) and o.asn == 65150


def test_iptoasn_format_gzipped(tmp_path: Path) -> None:
    f = tmp_path / "ip2asn-v4.tsv.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n"
                 "2.132.0.0\t2.135.255.255\t9198\tKZ\tKAZTELECOM-AS\n")
    t = load_table(f)
    assert (o := t.lookup("2.133.4.5")) and (o.asn, o.cc) == (9198, "KZ")
    assert t.lookup("1.0.2.1") is None and t.size == 2


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.tsv"
    f.write_text("192.0.2.0/24 64496 KZ\nnot-a-prefix 1 KZ\n")
    with pytest.raises(PrefixTableError, match=r"bad\.tsv:2"):
        load_table(f)
