"""Record types: the one definition of what each topic carries.

Each record is a frozen dataclass. The JSON on the wire is :meth:`Record.to_json`
(timestamps as ISO 8601 UTC with milliseconds and a ``Z``); :func:`from_json`
checks a decoded object against the type and raises :class:`RecordError` with
the reason. Spark schemas are derived from these classes
(``processing.schemas.spark_schema``), never typed a second time.

Every record carries ``event_time`` (when it happened, from the record itself)
and the publisher adds ``produced_at`` (when it was sent to Kafka).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_type_hints

__all__ = [
    "AccessRecord",
    "CaseReport",
    "CensusRow",
    "RandomNumber",
    "Record",
    "RecordError",
    "VmstatSample",
    "format_time",
    "from_json",
    "parse_time",
    "utc_now",
]

UTC = dt.UTC


class RecordError(ValueError):
    """A decoded object is not a valid record; the message says which field and why."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


def format_time(value: dt.datetime) -> str:
    """``2026-11-22T05:00:00.123Z``: ISO 8601, UTC, milliseconds. Naive datetimes are refused."""
    if value.tzinfo is None:
        raise RecordError("naive datetime: every timestamp in the kit is timezone-aware UTC")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(raw: str) -> dt.datetime:
    """Parse an ISO 8601 timestamp that has a zone (``Z`` or ``+hh:mm``) into UTC."""
    try:
        value = dt.datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise RecordError(f"not an ISO 8601 timestamp: {raw!r}") from None
    if value.tzinfo is None:
        raise RecordError(f"timestamp without a time zone: {raw!r}")
    return value.astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of all records: ``event_time`` is when the thing happened, in UTC."""

    #: Fields that identify a record and must be present; others may be null.
    required: ClassVar[tuple[str, ...]] = ("event_time",)

    event_time: dt.datetime

    def key(self) -> str | None:
        """The Kafka key: records with the same key keep their order in one partition."""
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = format_time(value) if isinstance(value, dt.datetime) else value
        return out


R = TypeVar("R", bound=Record)


def _check(name: str, hint: Any, value: Any) -> Any:
    """The value converted to ``hint``, or RecordError naming the field."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check(name, args[0], value)
    if value is None:
        raise RecordError(f"field {name} is missing or null")
    if hint is dt.datetime:
        if not isinstance(value, str):
            raise RecordError(f"field {name} must be an ISO 8601 string, got {type(value).__name__}")
        return parse_time(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise RecordError(f"field {name} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise RecordError(f"field {name} must be an integer, got {value!r:.40}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecordError(f"field {name} must be a number, got {value!r:.40}")
        if value != value or value in (float("inf"), float("-inf")):
            raise RecordError(f"field {name} must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise RecordError(f"field {name} must be a string, got {type(value).__name__}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise RecordError(f"field {name} must be an object of strings")
        return dict(value)
    raise TypeError(f"unsupported field type {hint!r} for {name}")


_Plan = tuple[tuple[str, Any, bool, Any], ...]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type[Record]) -> _Plan:
    """Per field of ``cls``: (name, type hint, may default, default or its factory), once per class.

    ``get_type_hints`` evaluates every annotation string each call (``from __future__
    import annotations``): done per record it cost the display server's feed about 0.8 ms
    a record, so 1,000 records/s fell behind (py-spy, 2026-12-02).
    """
    plan = _PLANS.get(cls)
    if plan is None:
        hints = get_type_hints(cls)
        plan = _PLANS[cls] = tuple(
            (f.name, hints[f.name],
             f.name not in cls.required and (f.default is not dataclasses.MISSING
                                             or f.default_factory is not dataclasses.MISSING),
             f.default_factory if f.default is dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls))
    return plan


def from_json(cls: type[R], data: Any) -> R:
    """Build a ``cls`` from a decoded JSON object, checking every field's type.

    Unknown keys are ignored (``produced_at`` and fields added by newer
    producers), so old consumers keep working.
    """
    if not isinstance(data, dict):
        raise RecordError(f"expected a JSON object, got {type(data).__name__}")
    values = {}
    for name, hint, may_default, default in _plan(cls):
        raw = data.get(name)
        if raw is None and may_default:
            values[name] = default() if callable(default) else default
            continue
        values[name] = _check(name, hint, raw)
    return cls(**values)


def fields_of(cls: type[Record]) -> dict[str, Any]:
    """Field name -> type hint, in declaration order (used to derive Spark schemas)."""
    return {name: hint for name, hint, _, _ in _plan(cls)}


@dataclasses.dataclass(frozen=True)
class VmstatSample(Record):
    """One sample of a host's metrics (psutil, or a line of ``vmstat -n -t 1``).

    Percentages are 0-100; sizes in bytes; rates per second. A field the
    sampler cannot see (``vmstat`` shows no network) is null.
    """

    required: ClassVar[tuple[str, ...]] = ("event_time", "host")

    host: str = ""
    cpu_user: float | None = None
    cpu_system: float | None = None
    cpu_idle: float | None = None
    cpu_iowait: float | None = None
    mem_used: float | None = None
    mem_available: float | None = None
    mem_cached: float | None = None
    swap_used: float | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_in_bps: float | None = None
    net_out_bps: float | None = None
    load_1m: float | None = None
    load_5m: float | None = None
    load_15m: float | None = None
    #: Where ``event_time`` comes from: None, the kit's own sampler (psutil) at that time;
    #: "vmstat", the timestamp ``vmstat -t`` printed; "arrival", when a line of ``vmstat``
    #: without ``-t`` arrived (vmstat printed no time).
    time_source: str | None = None

    #: The metrics, in the order charts show them.
    METRICS: ClassVar[tuple[str, ...]] = (
        "cpu_user", "cpu_system", "cpu_idle", "cpu_iowait",
        "mem_used", "mem_available", "mem_cached", "swap_used",
        "disk_read_bps", "disk_write_bps", "net_in_bps", "net_out_bps",
        "load_1m", "load_5m", "load_15m",
    )

    def key(self) -> str:
        return self.host


@dataclasses.dataclass(frozen=True)
class RandomNumber(Record):
    """A random draw; ``seq`` counts up from 0 per ``producer`` so gaps can be found."""

    required: ClassVar[tuple[str, ...]] = ("event_time", "producer", "seq", "value")

    producer: str = ""
    seq: int = 0
    value: float = 0.0
    distribution: str | None = None

    def key(self) -> str:
        return self.producer


@dataclasses.dataclass(frozen=True)
class AccessRecord(Record):
    """One request NGINX answered. ``method`` and ``path`` are empty for non-HTTP requests."""

    required: ClassVar[tuple[str, ...]] = ("event_time", "status")

    client: str = ""
    method: str = ""
    path: str = ""
    protocol: str = ""
    status: int = 0
    bytes: int = 0
    referer: str = ""
    user_agent: str = ""
    host: str = ""
    upstream: str = ""
    request_time: float | None = None
    upstream_time: float | None = None
    service: str = ""
    remote_user: str = ""
    upstream_status: int | None = None
    upstream_connect_time: float | None = None
    request_length: int | None = None
    forwarded_for: str = ""
    #: Variables of the site's log format that no field above takes, as text.
    extras: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def key(self) -> str:
        return self.service or self.host


@dataclasses.dataclass(frozen=True)
class CaseReport(Record):
    """A case report posted to the ingest (Locust sends them); ``location`` is the city."""

    required: ClassVar[tuple[str, ...]] = ("event_time", "id", "location", "state", "age")

    id: str = ""
    name: str = ""
    location: str = ""
    state: str = ""
    age: int = 0
    infection: str = ""

    def key(self) -> str:
        return self.location


@dataclasses.dataclass(frozen=True)
class CensusRow(Record):
    """A row of the census population dataset; ``event_time`` is 1 January of ``year``, UTC."""

    required: ClassVar[tuple[str, ...]] = ("event_time", "year", "age", "sex", "people")

    year: int = 0
    age: int = 0
    sex: int = 0
    people: int = 0

    def key(self) -> str:
        return str(self.year)


#: The record type each topic carries, by the topic's role in queue/topics.toml.
BY_TOPIC_ROLE: dict[str, type[Record]] = {
    "vmstat": VmstatSample,
    "random": RandomNumber,
    "nginx": AccessRecord,
    "cases": CaseReport,
    "census": CensusRow,
}
