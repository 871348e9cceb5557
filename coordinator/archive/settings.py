"""``[archive]`` settings (a section of the coordinator's configuration)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Settings:
    dir: str = "archives"                    # bundles' folder, relative to the data dir unless absolute
    formats: list[str] = field(default_factory=lambda: ["jsonl", "parquet", "csv", "atlas"])
    gzip_level: int = 1                      # 1 (fast) .. 9 (small) for .gz files; 1-3 ISA-L (docs: trade-off)
    # processes of a JSONL export of >= 200k rows; 1: the building process alone (docs: Export speed)
    export_workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    parquet_batch_rows: int = 20000          # rows per Parquet row group; bounds the build's memory
    query_max_days: float = 366.0            # widest time range one streamed query may ask for
    daily_build: bool = True                 # the coordinator builds daily bundles by itself
    daily_delay_s: float = 3600.0            # wait this long after a UTC day ends before building it
    daily_backfill_days: int = 7             # days back that are built (and rebuilt on late uploads)
    daily_check_s: float = 600.0             # how often due daily bundles are looked for

    def __post_init__(self) -> None:
        from coordinator.archive.formats import FORMATS

        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ValueError(f"archive.formats: {bad or 'empty'} - choose from {', '.join(FORMATS)}")
        if not 1 <= self.gzip_level <= 9:
            raise ValueError("archive.gzip_level must be 1..9")
        if not 1 <= self.export_workers <= 16:
            raise ValueError("archive.export_workers must be 1..16")
        if self.parquet_batch_rows < 100:
            raise ValueError("archive.parquet_batch_rows must be at least 100")
        if self.daily_delay_s < 0 or self.daily_backfill_days < 1 or self.daily_check_s <= 0:
            raise ValueError("archive: daily_delay_s >= 0, daily_backfill_days >= 1 and daily_check_s > 0 are required")


def from_config(config: Any) -> Settings:
    """The ``archive`` section of the coordinator's config object, or the defaults."""
    try:
        section = config.section("archive")
    except (AttributeError, KeyError):
        section = None
    return section if isinstance(section, Settings) else Settings()
