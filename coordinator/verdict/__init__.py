"""The verdict engine: detectors, baselines, lifecycle tracker, persistence, service and commands (docs/verdicts.md)."""
