"""Tocsin coordinator: registration, campaigns, ingest, verdicts, Atlas, archives and dashboard."""

__version__ = "0.1.0"
