"""The ``[atlas]`` section of ``coordinator.toml`` (env: ``TOCSIN_ATLAS__<KEY>``).

Every key, its default and its meaning; docs/atlas.md lists them all (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    enabled: bool = False                 # run polling/stream/closed loop inside `serve`
    server: str = "atlas.ripe.net"        # API host[:port] (https); the stand-in's HOST:PORT in tests and the lab
    stream_url: str = ""                  # stream URL; empty = wss://atlas-stream.ripe.net/stream/
    api_key: str = ""                     # Atlas API key (needed to create measurements)
    ca_file: str = ""                     # PEM bundle to trust for API and stream TLS; empty = system trust
    countries: list[str] = field(default_factory=list)   # watched countries (ISO alpha-2)
    builtin_msm_ids: list[int] = field(default_factory=lambda: [1001, 5001])  # built-in msms to fetch
    msm_ids: list[int] = field(default_factory=list)     # our own user-defined measurements to fetch
    poll_interval_s: float = 300.0        # how often the service fetches probes, events and results
    lookback_s: float = 3600.0            # first fetch window; later fetches resume from the last one
    late_s: float = 21600.0               # each fetch re-asks this much before its cursor (late uploads)
    window_s: float = 86400.0             # longest time window asked for in one results request
    page_size: int = 500                  # `page_size` asked of paged listings
    timeout_s: float = 30.0               # per-request timeout
    max_retries: int = 5                  # retries on 429, 5xx, timeouts and connection errors
    backoff_s: float = 1.0                # first backoff; doubles each retry (Retry-After wins)
    backoff_max_s: float = 60.0           # longest single backoff
    stream: bool = True                   # subscribe to the live stream (connection events + results)
    stream_overlap_s: float = 300.0       # replay this much before the last seen event on reconnect
    closed_loop: bool = False             # create one-off measurements when an event becomes suspected
    closed_loop_interval_s: float = 15.0  # how often the closed loop looks for new suspected events
    credit_budget: int = 20000            # credits the closed loop may spend per rolling 24 hours
    probes_inside: int = 5                # in-country Atlas probes asked per one-off
    probes_outside: int = 5               # outside Atlas probes asked per one-off
    outside_countries: list[str] = field(default_factory=lambda: ["DE", "NL", "GB", "US", "FR"])  # where they are
    targets_per_event: int = 5            # most targets measured per suspected event
    result_wait_s: float = 900.0          # how long to keep fetching a one-off's results
    bucket_s: float = 600.0               # signals: disconnection bucket length
    baseline_s: float = 7 * 86400.0       # signals: baseline window before the bucket
    min_disconnects: int = 3              # signals: fewest distinct probes disconnecting to fire
    min_fraction: float = 0.2             # signals: smallest share of the scope's probes disconnecting
    alpha: float = 0.001                  # signals: binomial tail probability needed to fire
    baseline_rate: float = 0.01           # signals: prior per-probe disconnect chance per bucket
