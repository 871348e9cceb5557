"""Tocsin probe: measurements, the result record and the volunteer's agent."""

__version__ = "0.1.0"
