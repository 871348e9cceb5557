"""The coordinator's dashboard: countries, timelines with events, event evidence, probes, campaigns."""
