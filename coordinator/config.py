"""Coordinator configuration: a TOML file plus ``TOCSIN_*`` environment variables.

Defaults are declared once, in the dataclasses.  Core settings live in the file's
``[coordinator]`` table; each feature declares its own section as a ``Settings`` dataclass in a
module listed in :data:`SECTION_MODULES` (modules that are not installed are skipped).  Unknown
sections and unknown keys are refused with a message naming them and the known ones.

Environment: ``TOCSIN_<KEY>`` sets a core key (``TOCSIN_LISTEN``), ``TOCSIN_<SECTION>__<KEY>``
a feature key (``TOCSIN_VERDICT__WINDOW_S``).  The environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.plugins import import_optional

CONFIG_FILENAME = "coordinator.toml"
ENV_PREFIX = "TOCSIN_"

# Feature sections: (section name, module exposing a ``Settings`` dataclass).
SECTION_MODULES: tuple[tuple[str, str], ...] = (
    ("verdict", "coordinator.verdict.settings"),
    ("atlas", "coordinator.atlas.settings"),
    ("alerts", "coordinator.alerts.settings"),
    ("archive", "coordinator.archive.settings"),
)


@dataclass
class ReplicaSettings:
    """The ``[replica]`` table (docs/replica.md): both ends of coordinator replication."""

    token: str = ""                  # upstream side: bearer token replicas present; empty = no replica routes
    upstream: str = ""               # replica side: the upstream coordinator's URL; set = this is a replica
    upstream_token: str = ""         # replica side: the upstream's [replica] token (TOCSIN_REPLICA__UPSTREAM_TOKEN)
    upstream_token_file: str = ""    # replica side: ... or a file holding it (first line)
    sync_s: float = 1.0              # how often measurements, heartbeats and forwarded data are exchanged
    registry_s: float = 30.0         # how often probes, their networks and campaigns are pulled
    history_s: float = 86400.0       # a fresh replica pulls measurements and heartbeats this far back
    timeout_s: float = 10.0          # one request to the upstream, connection included
    batch_records: int = 5000        # most measurements per pull or push request


class ConfigError(ValueError):
    """The configuration file or environment is invalid; the message says what and where."""


@dataclass
class CoreSettings:
    """The ``[coordinator]`` table.  Every key, its default and its meaning (docs/coordinator.md)."""

    listen: str = "127.0.0.1:8470"            # HOST:PORT the HTTP service binds
    public_url: str = ""                      # URL printed for probes; default http://LISTEN
    admin_token: str = ""                     # admin bearer token; empty = generated into DATA/admin_token
    prefix_table: str = ""                    # prefix -> ASN/country file; empty = built-in default table
    ingest_max_bytes: int = 8 * 2**20         # largest request body accepted (gzip bytes as sent)
    ingest_max_decompressed_bytes: int = 64 * 2**20  # largest batch after gunzip
    ingest_max_records: int = 20000           # most items in one batch
    rate_records_per_s: float = 5000.0        # per-probe sustained records/s
    rate_burst_records: int = 100000          # per-probe burst of records
    rate_requests_per_s: float = 20.0         # per-probe sustained requests/s
    rate_burst_requests: int = 200            # per-probe burst of requests
    clock_window_s: float = 300.0             # signed timestamps older/newer than this are refused
    poll_interval_s: float = 60.0             # how often probes poll their schedule (= heartbeat)
    silent_after_s: float = 300.0             # a probe not polled for this long is listed as silent
    invite_ttl_s: float = 7 * 86400.0         # invites expire after this


@dataclass
class Config:
    core: CoreSettings = field(default_factory=CoreSettings)
    sections: dict[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def __getattr__(self, name: str) -> Any:
        # Core keys read as attributes: config.listen, config.ingest_max_bytes (app.py relies on it).
        core = self.__dict__.get("core")
        if core is not None and name in {f.name for f in dataclasses.fields(core)}:
            return getattr(core, name)
        raise AttributeError(name)

    def section(self, name: str) -> Any:
        """The ``Settings`` instance of feature section ``name`` (KeyError if not installed)."""
        return self.sections[name]


def section_classes() -> dict[str, type]:
    """Installed feature sections: name -> Settings dataclass."""
    found: dict[str, type] = {"coordinator": CoreSettings, "replica": ReplicaSettings}
    for name, module_name in SECTION_MODULES:
        module = import_optional(module_name)
        if module is None:
            continue
        cls = getattr(module, "Settings", None)
        if cls is None or not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{module_name} must expose a Settings dataclass")
        found[name] = cls  # type: ignore[assignment]
    return found


def _convert(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is list or typ is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        (inner,) = typing.get_args(typ) or (str,)
        return [_convert(v, inner, where) for v in value]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or value == "":
            return None
        return _convert(value, args[0], where)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError(value)
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {getattr(typ, '__name__', typ)}, not {value!r}") from None
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [{where}]; known keys: {', '.join(sorted(known))}")
    kwargs = {k: _convert(v, hints[k], f"[{where}] {k}") for k, v in values.items()}
    return cls(**kwargs)


def load_config(path: str | Path | None = None, *, data_dir: str | Path | None = None,
                environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or ``DATA/coordinator.toml`` when it exists), then apply the environment."""
    env = os.environ if environ is None else environ
    classes = section_classes()
    raw: dict[str, dict[str, Any]] = {}
    source = "defaults"
    if path is None and data_dir is not None and (Path(data_dir) / CONFIG_FILENAME).exists():
        path = Path(data_dir) / CONFIG_FILENAME
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        for key, value in doc.items():
            if key not in classes:
                raise ConfigError(f"unknown section [{key}] in {path}; known sections: {', '.join(sorted(classes))}")
            if not isinstance(value, dict):
                raise ConfigError(f"{key} in {path} must be a table [{key}]")
            raw[key] = dict(value)
        source = str(path)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("__") if "__" in rest else ("coordinator", "", rest)
        if section not in classes:
            continue  # other tools share the TOCSIN_ prefix (documented)
        known = {f.name for f in dataclasses.fields(classes[section])}
        if key not in known:
            if section != "coordinator":
                raise ConfigError(f"unknown setting in environment {name}; [{section}] keys: {', '.join(sorted(known))}")
            continue
        raw.setdefault(section, {})[key] = value
    core = _build(CoreSettings, raw.get("coordinator", {}), "coordinator")
    sections = {name: _build(cls, raw.get(name, {}), name) for name, cls in classes.items() if name != "coordinator"}
    return Config(core=core, sections=sections, source=source)


def documented_keys() -> dict[str, list[str]]:
    """Every setting, by section (the docs test compares docs/coordinator.md with this)."""
    return {"coordinator": [f.name for f in dataclasses.fields(CoreSettings)]}
