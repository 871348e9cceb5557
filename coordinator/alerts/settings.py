"""``[alerts]`` settings (a section of the coordinator's configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    webhooks: list[str] = field(default_factory=list)  # URLs that receive every event state change
    webhook_secret: str = ""           # HMAC-SHA256 key for X-Tocsin-Signature-256; empty = Ed25519 only
    poll_interval_s: float = 1.0       # how often new event transitions are looked for
    retry_initial_s: float = 1.0       # first retry delay after a failed delivery; doubles each time
    retry_max_s: float = 300.0         # longest delay between retries (deliveries are retried forever)
    timeout_s: float = 10.0            # one delivery attempt's timeout
    feed_entries: int = 100            # entries in an Atom feed

    def __post_init__(self) -> None:
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"alerts.webhooks: {url!r} is not an http(s) URL")
        if self.poll_interval_s <= 0 or self.retry_initial_s <= 0 or self.retry_max_s < self.retry_initial_s:
            raise ValueError("alerts: poll_interval_s and retry_initial_s must be > 0, retry_max_s >= retry_initial_s")
        if self.timeout_s <= 0 or self.feed_entries < 1:
            raise ValueError("alerts: timeout_s must be > 0 and feed_entries >= 1")


def from_config(config: object) -> Settings:
    try:
        section = config.section("alerts")  # type: ignore[attr-defined]
    except (AttributeError, KeyError):
        section = None
    return section if isinstance(section, Settings) else Settings()
