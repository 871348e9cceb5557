"""The volunteer's local configuration: ``probe.toml`` in the probe's state directory.

These caps are local on purpose: nothing the coordinator sends can raise or lift them.  Every
setting and its default is declared once, in :class:`ProbeConfig`; unknown keys and wrong types
are refused with a message that names the key (see ``docs/probe-cli.md``).
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_FILE_NAME = "probe.toml"


class ConfigError(ValueError):
    """The local configuration file is unreadable or invalid; ``str()`` says which key and why."""


@dataclass(frozen=True)
class ProbeConfig:
    allow_ranges: tuple[str, ...] = field(
        default=(), metadata={"help": "CIDR ranges the address guard lets through (labs), e.g. 198.18.0.0/15"})
    max_pps: int = field(
        default=200, metadata={"help": "packets per second for the whole probe process (ping, traceroute, dns)",
                               "min": 1, "max": 100_000})
    max_concurrent_tests: int = field(
        default=4, metadata={"help": "tests running at the same time", "min": 1, "max": 256})
    max_throughput_bytes_per_hour: int = field(
        default=200_000_000, metadata={"help": "bytes the throughput test may download in any hour",
                                       "min": 0, "max": 10**13})

    def __post_init__(self) -> None:
        for name in ("max_pps", "max_concurrent_tests", "max_throughput_bytes_per_hour"):
            value = getattr(self, name)
            meta = _FIELD_META[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, not {type(value).__name__}")
            if not meta["min"] <= value <= meta["max"]:
                raise ConfigError(f"{name} must be between {meta['min']} and {meta['max']}, not {value}")
        if isinstance(self.allow_ranges, str | bytes) or not isinstance(self.allow_ranges, tuple | list):
            raise ConfigError("allow_ranges must be a list of CIDR strings, e.g. [\"198.18.0.0/15\"]")
        for item in self.allow_ranges:
            if not isinstance(item, str):
                raise ConfigError(f"allow_ranges entries must be strings, not {type(item).__name__}")
            try:
                ipaddress.ip_network(item, strict=True)
            except ValueError as exc:
                raise ConfigError(f"allow_ranges entry {item!r} is not a CIDR range: {exc}") from None
        object.__setattr__(self, "allow_ranges", tuple(self.allow_ranges))

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(r) for r in self.allow_ranges)


_FIELD_META: dict[str, Any] = {}


def _init_meta() -> None:
    for f in fields(ProbeConfig):
        _FIELD_META[f.name] = dict(f.metadata)


_init_meta()
SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(ProbeConfig))


def config_from_dict(data: dict[str, Any], *, origin: str = "config") -> ProbeConfig:
    """Build a :class:`ProbeConfig` from parsed TOML, refusing unknown keys."""
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"{origin}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    try:
        return ProbeConfig(**data)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_config(path: str | Path | None) -> ProbeConfig:
    """The configuration in ``path`` (a ``probe.toml``), or the defaults when ``path`` is None."""
    if path is None:
        return ProbeConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data, origin=str(path))


def load_state_config(state_dir: str | Path) -> ProbeConfig:
    """``probe.toml`` in a state directory, or the defaults when the directory has none."""
    path = Path(state_dir) / CONFIG_FILE_NAME
    return load_config(path if path.exists() else None)
