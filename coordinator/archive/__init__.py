"""Researchers' archives: signed daily and per-campaign bundles, export formats, HTTP and download."""
