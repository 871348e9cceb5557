"""Alerts: signed webhooks delivered once per event state change, Atom feeds, Prometheus metrics."""
