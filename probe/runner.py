"""Runs one measurement test and returns a validated record.

The runner, not the prober, owns the overall timeout, timing (``start_time``, ``runtime_s``),
the envelope, the classification of exceptions into the failure vocabulary and the cap on
concurrent tests.  It imports no prober until one is needed and never imports scapy, so the
coordinator can call :func:`validate_params` cheaply when it checks a campaign.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import types
import typing
from datetime import UTC, datetime
from typing import Any

from probe import probers
from probe.classify import classify
from probe.probers.base import Context, Guard, Outcome, ParamsError, TestCannotRun
from probe.record import make_record

DEFAULT_TIMEOUT_S = 60.0
ENVELOPE_KEYS = ("probe_id", "campaign_id", "task_id", "probe_cc", "probe_asn", "probe_access", "annotations")


def _module(test_name: str) -> types.ModuleType:
    try:
        return probers.load(test_name)
    except KeyError as exc:
        raise ParamsError(str(exc.args[0])) from None


def params_class(test_name: str) -> type:
    """The frozen ``<Test>Params`` dataclass of a test."""
    module = _module(test_name)
    for value in vars(module).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__name__.endswith("Params") \
                and value.__module__ == module.__name__:
            return value
    raise ParamsError(f"test {test_name!r} declares no <Test>Params dataclass")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "integer", float: "number", bool: "boolean", str: "string", type(None): "null"}.get(tp, str(tp))


def _accepts(tp: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from JSON) fits type ``tp``, and the value converted (lists to tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _accepts(arg, value)
            if ok:
                return True, converted
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(tp), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        item_type = typing.get_args(tp)[0]
        items = [_accepts(item_type, v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if tp is type(None):
        return value is None, value
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool), float(value) \
            if isinstance(value, int | float) and not isinstance(value, bool) else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def validate_params(test_name: str, params: dict[str, Any] | None) -> Any:
    """Build the test's ``<Test>Params`` from a dict; ParamsError with a clear reason if it does not fit."""
    cls = params_class(test_name)
    if params is None:
        params = {}
    if isinstance(params, cls):
        return params
    if not isinstance(params, dict):
        raise ParamsError(f"{test_name}: parameters must be an object, not {type(params).__name__}")
    hints = _field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ParamsError(f"{test_name}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(names)}")
    values: dict[str, Any] = {}
    for key, value in params.items():
        ok, converted = _accepts(hints[key], value)
        if not ok:
            raise ParamsError(f"{test_name}: parameter {key} must be {_type_name(hints[key])}, not {value!r}")
        values[key] = converted
    try:
        return cls(**values)
    except ParamsError as exc:
        raise ParamsError(f"{test_name}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ParamsError(f"{test_name}: {exc}") from None


def parse_param_text(test_name: str, pairs: list[str]) -> dict[str, Any]:
    """``["count=5", "protocol=udp"]`` (the CLI's ``--param``) to a dict typed by the Params fields."""
    cls = params_class(test_name)
    hints = _field_types(cls)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(f"--param {pair!r}: expected KEY=VALUE")
        if key not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ParamsError(f"{test_name}: unknown parameter {key}; known: {known}")
        out[key] = _from_text(hints[key], text)
    return out


def _from_text(tp: Any, text: str) -> Any:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                value = _from_text(arg, text)
                if _accepts(arg, value)[0]:
                    return value
        return text
    if origin is tuple:
        return [_from_text(args[0], t.strip()) for t in text.split(",") if t.strip()]
    conversions: dict[Any, Any] = {int: int, float: float,
                                   bool: lambda t: {"true": True, "false": False, "1": True, "0": False}[t.lower()]}
    try:
        return conversions[tp](text) if tp in conversions else text
    except (ValueError, KeyError):
        return text  # validate_params then says what was expected


def describe_params(test_name: str) -> list[dict[str, Any]]:
    """Name, type, default and help of every parameter of a test (for ``probe tests``)."""
    cls = params_class(test_name)
    hints = _field_types(cls)
    out = []
    for f in dataclasses.fields(cls):
        default: Any = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, tuple):
            default = list(default)
        out.append({"name": f.name, "type": _type_name(hints[f.name]), "default": default,
                    "help": str(f.metadata.get("help", ""))})
    return out


def describe_test(test_name: str) -> dict[str, Any]:
    module = _module(test_name)
    doc = (module.__doc__ or "").strip().splitlines()
    return {"name": test_name, "version": getattr(module, "VERSION", "?"), "summary": doc[0] if doc else "",
            "default_timeout_s": getattr(module, "DEFAULT_TIMEOUT_S", DEFAULT_TIMEOUT_S),
            "params": describe_params(test_name)}


async def run_test(test_name: str, target: str, params: Any = None, *, guard: Guard,
                   timeout_s: float | None = None, envelope: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one test and return its validated record.

    A network failure is data (``success: false`` and a failure string); TestCannotRun
    (TargetForbidden, ParamsError, missing privilege) is raised when the test could not run at all.
    """
    module = _module(test_name)
    checked = validate_params(test_name, params)
    if not isinstance(target, str) or not target.strip() or len(target) > 2048:
        raise ParamsError(f"{test_name}: target must be a non-empty string of at most 2048 characters")
    envelope = dict(envelope or {})
    unknown = sorted(set(envelope) - set(ENVELOPE_KEYS))
    if unknown:
        raise ParamsError(f"unknown envelope key(s): {', '.join(unknown)}")
    if timeout_s is None:
        timeout_s = float(getattr(module, "DEFAULT_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    if not 0 < timeout_s <= 3600:
        raise ParamsError(f"timeout must be between 0 and 3600 seconds, not {timeout_s}")
    slot = getattr(guard, "test_slot", None)
    if slot is None:
        return await _run(module, test_name, target, checked, guard, timeout_s, envelope)
    async with slot():
        return await _run(module, test_name, target, checked, guard, timeout_s, envelope)


async def _run(module: types.ModuleType, test_name: str, target: str, params: Any, guard: Guard,
               timeout_s: float, envelope: dict[str, Any]) -> dict[str, Any]:
    ctx = Context(guard=guard, timeout_s=timeout_s)
    start = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            outcome: Outcome = await module.run(target, params, ctx)
    except TestCannotRun:
        raise
    except TimeoutError:
        outcome = Outcome(test_keys=dict(ctx.extra.get("partial_keys", {})), success=False, failure="timeout")
    except Exception as exc:  # a network failure the prober did not turn into data itself
        outcome = Outcome(test_keys=dict(ctx.extra.get("partial_keys", {})), success=False,
                          failure=classify(exc))
    runtime_s = time.perf_counter() - t0
    if outcome.failure is not None:
        outcome.success = False          # success always has failure null (docs/record.md)
    return make_record(test_name=test_name, test_version=str(module.VERSION), target=target,
                       start_time=start, runtime_s=runtime_s, success=outcome.success,
                       failure=outcome.failure, test_keys=outcome.test_keys, **envelope)
