"""Two fewer measurement indexes: (test_name, start_ts) and (source, start_ts).

Every ingested row paid for nine indexes.  These two index columns with a handful of values (a few
test names; two sources), like ``probe_access``, which never had one: a query by test or source
now walks the time index (``start_ts``) and filters, reading at most the other tests' or source's
rows of the same time range.  Checked with EXPLAIN QUERY PLAN over the read API's filters, the
verdict engine's and Atlas signals' queries, the archive export and the dashboard
(tests/test_store_migrations.py).  Indexes only: every row stays as it is.
"""

from __future__ import annotations

from typing import Any

DROPPED = ("idx_measurements_test_name_start_ts", "idx_measurements_source_start_ts")


def apply(db: Any) -> None:
    for name in DROPPED:
        db.execute(f"DROP INDEX IF EXISTS {name}")
