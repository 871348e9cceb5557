"""The probe agent: registration, schedule, store-and-forward outbox, uploads (docs/agent.md)."""
