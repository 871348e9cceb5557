"""Numbered schema migrations, ``mNNNN_name.py``, each with ``apply(db: sqlite_utils.Database)``.

Numbers in use: 0001 core tables (measurements, probes, invites, campaigns, events).  Each feature
adds its own tables in its own migration; a migration once landed is never edited.
"""
