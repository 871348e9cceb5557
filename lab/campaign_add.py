"""``python -m lab.campaign_add --data DIR FILE``: ``python -m coordinator campaign add`` for the lab.

The coordinator refuses campaign intervals below ``coordinator.campaigns.MIN_INTERVAL_S`` (10 s,
sensible for volunteers' probes).  The lab compresses days into minutes and needs intervals of a
few seconds, so this wrapper lowers that floor to :data:`LAB_MIN_INTERVAL_S` for this one
command and otherwise runs the coordinator's own command unchanged.
"""

from __future__ import annotations

import sys

LAB_MIN_INTERVAL_S = 1.0


def main(argv: list[str] | None = None) -> int:
    from coordinator import campaigns
    from coordinator.__main__ import main as coordinator_main

    if hasattr(campaigns, "MIN_INTERVAL_S"):
        campaigns.MIN_INTERVAL_S = min(campaigns.MIN_INTERVAL_S, LAB_MIN_INTERVAL_S)
    return coordinator_main(["campaign", "add", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
