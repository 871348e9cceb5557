"""Atlas results into the store in bulk, with the store's table, columns and idempotency.

:func:`store_results` writes what :func:`coordinator.store.insert_measurements` would write for the
same records - the same ``measurements`` rows (``store.MEASUREMENT_COLUMNS``), the same content hash
(:func:`probe.record.content_hash`), the same outcome for each record (same id and content: a
duplicate; same id, other content: a conflict, reported; a record the envelope refuses: rejected
with the envelope's reason) - plus the original result in ``atlas_raw``, in one transaction per
batch.  It is cheaper for Atlas results because it knows what it writes:

- a batch is inserted whole, optimistically, without looking its ids up (:mod:`coordinator.atlas.write`);
  only when an id turns out to be stored or repeated is each result decided by look-ups, and a
  result whose id is already in ``atlas_raw`` then counts before its parse (the stored text equal
  to the line read is a duplicate without decoding anything).  A batch whose first result is in
  ``atlas_raw`` (a re-import) is decided that way before anything is parsed;
- ``test_keys`` is serialised once (sorted keys): that text is stored and also spliced into the
  canonical JSON the content hash is taken of (the other envelope keys sort before ``test_keys``,
  except ``test_name`` and ``test_version``), instead of serialising the record twice;
- for a ping, the float check the hash needs reads only the values where a float can be (sagan's
  rtts, and the two values it passes through unconverted), with C-level calls, instead of a walk
  over every nested value (:func:`plain_ping`);
- the envelope of a ping or traceroute record the normaliser built is checked only where the input
  can reach it (timestamp range, id and target lengths, the probe's stored country/ASN): every other
  field is valid by construction; anything else gets the full ``probe.record.validate_epoch``, and
  whatever the cheap check does not vouch for does too, so a refusal keeps the envelope's reason.

The tests compare every row (built, and as stored) with ``store.row_from_record`` for every shared
sample.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from coordinator.atlas import write
from coordinator.atlas.normalize import ProbeInfo, TargetCountry, measurement_id_for, normalize
from coordinator.atlas.parse import MalformedResult
from coordinator.atlas.write import NULL
from coordinator.store import timestamp_flag
from probe.record import RecordError, content_hash, validate_epoch

if TYPE_CHECKING:  # storage imports this module
    from coordinator.atlas.storage import Counts

_SORT = orjson.OPT_SORT_KEYS
_TAILS: dict[tuple[str, str], bytes] = {}
_KEYS_KEY = b'"test_keys":'
_MSM_TEXTS: dict[str, str] = {}
_STR_OR_NONE = frozenset((str, type(None)))
_PING_RTTS = itemgetter("rtt_min", "rtt_max", "rtt_average", "rtt_median")
_BUILT_FAST = frozenset(("ping", "traceroute"))  # the types whose records :func:`built_epoch` knows
_YEAR_10000 = 253402300800  # first timestamp sagan cannot make a datetime of
_HUGE = 2**1000             # integers measurement_id_for takes as floats without overflow


def plain_floats(values: Iterable[Any]) -> bool:
    """True when every float among ``values`` (nested in dicts and lists) is one that orjson and the
    standard library write alike: 0, or 1e-4 <= |v| < 1e16 (the rule of ``store._plain_floats``);
    False for NaN, infinities and any type other than JSON's (those take the standard library)."""
    for v in values:   # type(v), tests in order of frequency: ~30% cheaper than the store's loop
        c = type(v)
        if c is str or v is None or c is int or c is bool:
            continue
        if c is float:
            if 1e-4 <= v < 1e16 or -1e16 < v <= -1e-4 or v == 0.0:
                continue
            return False
        if c is dict:
            if plain_floats(v.values()):
                continue
            return False
        if c is list:
            if plain_floats(v):
                continue
            return False
        return False
    return True


def _tail(name: str, version: str) -> bytes:
    """The canonical JSON's end after ``test_keys``: the same few texts over and over, so kept."""
    tail = _TAILS.get((name, version))
    if tail is None:
        tail = b"".join((b',"test_name":', orjson.dumps(name), b',"test_version":', orjson.dumps(version), b"}"))
        if len(_TAILS) < 64:
            _TAILS[name, version] = tail
    return tail


def _annotations_text(annotations: dict[str, Any]) -> str:
    """orjson's text of ``annotations``; the usual Atlas one (``atlas_msm_id`` alone) is kept per msm."""
    if len(annotations) == 1:
        msm = annotations.get("atlas_msm_id")
        if msm.__class__ is str:
            text = _MSM_TEXTS.get(msm)
            if text is None:
                text = orjson.dumps(annotations).decode()
                if len(_MSM_TEXTS) < 4096:
                    _MSM_TEXTS[msm] = text
            return text
    return orjson.dumps(annotations).decode()


def hash_and_texts(record: dict[str, Any], plain: bool = False) -> tuple[str, str, str | None]:
    """(content hash, ``test_keys`` text, ``annotations`` text) of a valid record.

    The hash equals :func:`probe.record.content_hash`; ``TypeError`` when orjson cannot write the
    record (an integer beyond 64 bits, a key that is not a string).  ``plain``: the caller has
    checked what :func:`plain_floats` checks (e.g. :func:`plain_ping`), so it is not walked again.
    """
    annotations = record.get("annotations")
    ann_text = None if annotations is None else _annotations_text(annotations)
    if plain or plain_floats(record.values()):
        # One orjson pass: the sorted record is the canonical JSON, and test_keys' text is the slice
        # between its key (once only: a nested "test_keys" key would make the slice ambiguous) and
        # the tail (test_name and test_version sort after it, nothing else does).
        whole = orjson.dumps(record, option=_SORT)
        tail = _tail(record["test_name"], record["test_version"])
        if whole.endswith(tail) and whole.count(_KEYS_KEY) == 1:
            keys = whole[whole.index(_KEYS_KEY) + len(_KEYS_KEY):len(whole) - len(tail)]
            return hashlib.sha256(whole).hexdigest(), keys.decode(), ann_text
    keys = orjson.dumps(record["test_keys"], option=_SORT)
    return content_hash(record), keys.decode(), ann_text


def plain_ping(record: dict[str, Any]) -> bool:
    """:func:`plain_floats` of a ping record the normaliser built, read only where a float can be.

    The envelope's other values are strings, ints or the runtime 0.0, except the annotations'
    values (a campaign's target country is whatever its spec holds): those must be strings.

    sagan converts every other value of a ping to int, str or bool (``ensure``); floats are only its
    rtts (``float()`` of the input: strings such as "NaN" or "1e999" too), and the input reaches the
    record unconverted only as the packets' source address and the error message.  False (the full
    walk decides) when one of those is not a string or null.  NaN fails every comparison."""
    for v in record["annotations"].values():
        if v.__class__ is not str:
            return False
    values = record["test_keys"]
    if values["error_message"].__class__ not in _STR_OR_NONE:
        return False
    for p in values["packets"]:
        v = p["rtt"]
        if (v and not (1e-4 <= v < 1e16 or -1e16 < v <= -1e-4)) or p["source_address"].__class__ not in _STR_OR_NONE:
            return False
    for v in _PING_RTTS(values):  # noqa: SIM110 (a loop: no generator frame)
        if v and not (1e-4 <= v < 1e16 or -1e16 < v <= -1e-4):
            return False
    return True


def built_epoch(record: dict[str, Any], timestamp: Any) -> float | None:
    """``start_time``'s epoch seconds of a ping or traceroute record that :func:`normalize` built from a
    result with this ``timestamp``, when every envelope rule holds; None: let the full check decide.

    By construction the record has exactly the envelope's keys, each of its type; schema_version,
    test_name, source, runtime_s (0, or clamped to a day) and failure (the vocabulary, or
    ``unknown_failure``) are right; measurement_id is ``atlas-`` and three integers.  What the input
    can still reach: the timestamp (``start_time``), the lengths of id and target, and the probe's
    country and ASN read from stored probe objects.
    """
    if (timestamp.__class__ is not int or not 0 <= timestamp < _YEAR_10000
            or record["test_name"] not in _BUILT_FAST or len(record["measurement_id"]) > 80
            or not 0 < len(record["target"]) <= 2048):
        return None
    cc = record.get("probe_cc")
    if cc is not None and not (cc.__class__ is str and len(cc) == 2 and cc.isascii() and cc.isalpha()
                               and cc.isupper()):
        return None
    asn = record.get("probe_asn")
    if asn is not None and not (asn.__class__ is int and 0 <= asn < 2**32):
        return None
    return float(timestamp)  # start_time is sagan's UTC datetime of this integer: the same second


def atlas_row(record: dict[str, Any], received_ts: float, start_ts: float | None = None,
              plain: bool = False) -> tuple[Any, ...]:
    """The ``measurements`` row of a record as ``store.row_from_record`` makes it (``test_keys`` text
    with sorted keys), with :data:`coordinator.atlas.write.NULL` for NULL; :class:`probe.record.RecordError`
    when the envelope refuses it.  ``start_ts``: the record is known valid (:func:`built_epoch`);
    ``plain``: see :func:`hash_and_texts`."""
    if start_ts is None:
        start_ts = validate_epoch(record)
    digest, keys, ann = hash_and_texts(record, plain)
    get = record.get
    failure = record["failure"]
    return (record["measurement_id"], digest, record["schema_version"], record["test_name"],
            record["test_version"], record["target"], get("probe_id", NULL), get("campaign_id", NULL),
            get("task_id", NULL), record["source"], get("probe_cc", NULL), get("probe_asn", NULL),
            get("probe_access", NULL), record["start_time"], start_ts, record["runtime_s"],
            1 if record["success"] else 0, NULL if failure is None else failure, keys,
            NULL if ann is None else ann, received_ts, timestamp_flag(start_ts, received_ts) or NULL)


def row(record: dict[str, Any], received_ts: float, start_ts: float | None = None,
        plain: bool = False) -> tuple[Any, ...]:
    """:func:`atlas_row` with None for NULL."""
    return tuple(None if v is NULL else v for v in atlas_row(record, received_ts, start_ts, plain))


def _mid(raw: Any) -> str | None:
    """:func:`measurement_id_for` of the result, None when it has none (the parse then says why)."""
    try:
        msm, prb, ts = raw["msm_id"], raw["prb_id"], raw["timestamp"]
        if msm.__class__ is int and prb.__class__ is int and ts.__class__ is int and -_HUGE < ts < _HUGE:
            return f"atlas-{msm}-{prb}-{ts}"   # the usual result: what measurement_id_for makes of it
        return measurement_id_for(msm, prb, ts)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


_DUPLICATE = object()   # the outcome of a result stored before with the same text


def _stored_raw(conn: sqlite3.Connection, mids: list[str | None]) -> dict[str, str]:
    return write.lookup(conn, "SELECT measurement_id, raw FROM atlas_raw WHERE measurement_id IN ({})",
                        [m for m in mids if m is not None])


def _old(mid: str, old: str, raw: Any, text: str | None) -> object:
    """The outcome of a result whose id is in ``atlas_raw``: the same Atlas result is a duplicate even
    when the probe metadata known now would enrich its record differently; other content a conflict."""
    if (text is not None and old == text) or orjson.loads(old) == raw:
        return _DUPLICATE
    return f"conflict: measurement_id {mid} is already stored with a different Atlas result"


def store_results(conn: sqlite3.Connection, raws: Iterable[Any], counts: Counts, *,
                  probes: Mapping[int, ProbeInfo] | None = None, target_cc: TargetCountry | None = None,
                  texts: Sequence[str | None] | None = None) -> None:
    """Normalise and store one batch of results into ``counts`` (see the module's docstring)."""
    raws = list(raws)
    if texts is None:
        texts = [None] * len(raws)
    mids = [_mid(r) for r in raws]
    # A batch whose first result is stored already is probably a re-import: decide those results
    # before parsing them.  Otherwise parse everything and try to insert it all at once.
    first = next((m for m in mids if m is not None), None)
    stored_raw = _stored_raw(conn, mids) if first is not None and write.raw_stored(conn, first) else None
    received = time.time()
    # per result: (row, raw row), a reason it is refused (str), or _DUPLICATE
    outcomes: list[Any] = []
    add = outcomes.append
    for raw, mid, text in zip(raws, mids, texts, strict=True):
        if stored_raw is not None and mid is not None and mid in stored_raw:
            add(_old(mid, stored_raw[mid], raw, text))
            continue
        if text is None:
            try:
                text = orjson.dumps(raw).decode()  # before parsing: sagan may alter what it parses
            except TypeError as exc:   # an integer beyond 64 bits (a result decoded by another library)
                add(f"{exc}"[:200])
                continue
        try:
            rec = normalize(raw, probes=probes, target_cc=target_cc, mid=mid, check=False)
        except MalformedResult as exc:
            add(str(exc))
            continue
        try:
            r = atlas_row(rec, received, built_epoch(rec, raw["timestamp"]),
                          rec["test_name"] == "ping" and plain_ping(rec))
        except RecordError as exc:   # the envelope's reason, as the store gives it
            add(str(exc))
            continue
        except TypeError as exc:     # orjson cannot write it (the store could not either)
            add(f"{rec['test_name']}: {exc}"[:200])
            continue
        add((r, (r[0], raw["msm_id"], raw["prb_id"], raw["timestamp"], r[3], text)))
    pairs = [o for o in outcomes if o.__class__ is tuple]
    if stored_raw is None:
        if not pairs or write.insert_new(conn, [r for r, _ in pairs], [x for _, x in pairs]):
            _count(outcomes, counts)
            counts.inserted += len(pairs)
            counts.inserted_ids.extend(r[0] for r, _ in pairs)
            return
        # an id of the batch is stored already, or is in it twice: decide each result
        stored_raw = _stored_raw(conn, mids)
        for i, (raw, mid, text) in enumerate(zip(raws, mids, texts, strict=True)):
            if mid is not None and mid in stored_raw:
                outcomes[i] = _old(mid, stored_raw[mid], raw, text)
        pairs = [o for o in outcomes if o.__class__ is tuple]
    _count(outcomes, counts)
    if pairs:
        inserted = write.decide_and_write(conn, pairs, counts)
        counts.inserted += len(inserted)
        counts.inserted_ids.extend(inserted)


def _count(outcomes: list[Any], counts: Counts) -> None:
    """Count the duplicates and refusals among ``outcomes``, in order."""
    for o in outcomes:
        if o is _DUPLICATE:
            counts.duplicates += 1
        elif o.__class__ is str:
            counts.bad(o)
