"""Record types: the one definition of what each topic carries.

Each record is a frozen ``msgspec.Struct``: msgspec encodes it to JSON, decodes and checks
JSON against it (every field's type; a missing or null required field, a time without a
zone are errors) and writes its JSON Schema, the ingest's OpenAPI document. Spark schemas
are derived from the same classes (``processing.reading.spark_schema``), never typed a
second time. Timestamps on the wire are RFC 3339 (ISO 8601) in UTC with a ``Z``.

Why msgspec (issue #25): against the dataclasses, ``json`` and a hand-written field check
it replaced, one ``VmstatSample`` encodes in 1.75 us instead of 36 us and decodes and checks
in 1.2 us instead of 71 us (pydantic 2.14: 5.0 and 7.0 us); figures from
``bench/records_codec.py`` on these 2-core machines.

Every record carries ``event_time`` (when it happened, from the record itself)
and the publisher adds ``produced_at`` (when it was sent to Kafka).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import typing
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec

__all__ = [
    "BY_TOPIC_ROLE",
    "EPOCH",
    "AccessRecord",
    "CaseReport",
    "CensusRow",
    "RandomNumber",
    "Record",
    "RecordError",
    "UtcTime",
    "VmstatSample",
    "decode",
    "from_micros",
    "micros_of",
    "fields_of",
    "format_time",
    "from_json",
    "json_schema",
    "parse_time",
    "required_fields",
    "utc_now",
]

UTC = dt.UTC

#: A timestamp that must carry a zone (``Z`` or ``+hh:mm``); records hold it in UTC.
UtcTime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class RecordError(ValueError):
    """A decoded object is not a valid record; the message says which field and why."""


#: The Unix epoch, timezone-aware: window maths and stores count microseconds from it.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def micros_of(value: dt.datetime) -> int:
    """Microseconds since :data:`EPOCH` of a timezone-aware time, exactly (no float)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    """The UTC time ``micros`` microseconds after :data:`EPOCH`."""
    return EPOCH + dt.timedelta(microseconds=int(micros))


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


_ZERO = dt.timedelta(0)


class Record(msgspec.Struct, frozen=True):
    """Base of all records: ``event_time`` is when the thing happened, in UTC.

    A field without a default is required; the others may be missing (or null where
    the type allows it). Subclasses are ``kw_only``: build them with keywords.
    """

    event_time: UtcTime

    def __post_init__(self) -> None:
        offset = self.event_time.utcoffset()
        if offset is None:
            raise RecordError("naive datetime: every timestamp in the kit is timezone-aware UTC")
        if offset != _ZERO or self.event_time.tzinfo is not UTC:
            msgspec.structs.force_setattr(self, "event_time", self.event_time.astimezone(UTC))

    def key(self) -> str | None:
        """The Kafka key: records with the same key keep their order in one partition."""
        return None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values (times as RFC 3339 text), as it travels."""
        return typing.cast(dict[str, Any], msgspec.to_builtins(self))

    def encode(self, produced_at: dt.datetime | None = None) -> bytes:
        """The record's JSON bytes, with ``produced_at`` added when given (the publisher's)."""
        raw = _ENCODER.encode(self)
        if produced_at is None:
            return raw
        return b"%s,\"produced_at\":\"%s\"}" % (raw[:-1], format_time(produced_at).encode())


_ENCODER = msgspec.json.Encoder()

R = TypeVar("R", bound=Record)


def _error(e: msgspec.ValidationError) -> RecordError:
    """msgspec's message with the field named first: ``field age: expected int, got str``."""
    text = str(e)
    missing = re.fullmatch(r"Object missing required field `(\w+)`", text)
    if missing:
        return RecordError(f"field {missing[1]} is missing")
    head, sep, path = text.rpartition(" - at `$.")
    if not sep:
        return RecordError(text)
    field = path.rstrip("`").split("[", 1)[0]
    if "datetime" in head:
        return RecordError(f"field {field} is not an ISO 8601 time with a zone: {head}")
    return RecordError(f"field {field}: {head.replace('`', '').lower()}")


def from_json(cls: type[R], data: Any) -> R:
    """Build a ``cls`` from a decoded JSON object, checking every field's type.

    Unknown keys are ignored (``produced_at`` and fields added by newer
    producers), so old consumers keep working.
    """
    if not isinstance(data, dict):
        raise RecordError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as e:
        raise _error(e) from None


@functools.cache
def _decoder(cls: type[Record]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(cls)


def decode(cls: type[R], raw: bytes | str) -> R:
    """Decode JSON text straight into a ``cls`` (no dict in between): the fast path."""
    try:
        return typing.cast(R, _decoder(cls).decode(raw))
    except msgspec.ValidationError as e:
        raise _error(e) from None
    except msgspec.DecodeError as e:
        raise RecordError(f"not JSON: {e}") from None


def _plain(hint: Any) -> Any:
    """``hint`` without ``Annotated`` constraints, also inside ``X | None``."""
    if typing.get_origin(hint) is Annotated:
        return typing.get_args(hint)[0]
    args = typing.get_args(hint)
    if type(None) in args:
        inner = [_plain(a) for a in args if a is not type(None)]
        return inner[0] | None
    return hint


@functools.cache
def fields_of(cls: type[Record]) -> dict[str, Any]:
    """Field name -> type hint (constraints dropped), in declaration order (Spark schemas)."""
    return {f.name: _plain(f.type) for f in msgspec.structs.fields(cls)}


@functools.cache
def required_fields(cls: type[Record]) -> tuple[str, ...]:
    """The fields a record of ``cls`` cannot be without (those without a default)."""
    return tuple(f.name for f in msgspec.structs.fields(cls) if f.required)


def json_schema(cls: type[Record]) -> dict[str, Any]:
    """The JSON Schema of ``cls``'s JSON, self-contained (for the ingest's OpenAPI document)."""
    schema = msgspec.json.schema(cls)
    return typing.cast(dict[str, Any], schema["$defs"][cls.__name__])


class VmstatSample(Record, frozen=True, kw_only=True):
    """One sample of a host's metrics (psutil, or a line of ``vmstat -n -t 1``).

    Percentages are 0-100; sizes in bytes; rates per second. A field the
    sampler cannot see (``vmstat`` shows no network) is null.
    """

    host: str
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

    #: The metrics, in the order charts show them, with the label and unit pages show.
    METRIC_LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "cpu_user": ("CPU user", "%"), "cpu_system": ("CPU system", "%"),
        "cpu_idle": ("CPU idle", "%"), "cpu_iowait": ("CPU iowait", "%"),
        "mem_used": ("memory used", "bytes"), "mem_available": ("memory available", "bytes"),
        "mem_cached": ("memory cache", "bytes"), "swap_used": ("swap used", "bytes"),
        "disk_read_bps": ("disk read", "bytes/s"), "disk_write_bps": ("disk write", "bytes/s"),
        "net_in_bps": ("network in", "bytes/s"), "net_out_bps": ("network out", "bytes/s"),
        "load_1m": ("load 1 min", ""), "load_5m": ("load 5 min", ""),
        "load_15m": ("load 15 min", ""),
    }
    METRICS: ClassVar[tuple[str, ...]] = tuple(METRIC_LABELS)

    def key(self) -> str:
        return self.host


class RandomNumber(Record, frozen=True, kw_only=True):
    """A random draw; ``seq`` counts up from 0 per ``producer`` so gaps can be found."""

    producer: str
    seq: int
    value: float
    distribution: str | None = None

    def key(self) -> str:
        return self.producer


class AccessRecord(Record, frozen=True, kw_only=True):
    """One request NGINX answered. ``method`` and ``path`` are empty for non-HTTP requests."""

    client: str = ""
    method: str = ""
    path: str = ""
    protocol: str = ""
    status: int
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
    extras: dict[str, str] = {}

    def key(self) -> str:
        return self.service or self.host


class CaseReport(Record, frozen=True, kw_only=True):
    """A case report posted to the ingest (Locust sends them); ``location`` is the city."""

    id: str
    name: str = ""
    location: str
    state: str
    age: int
    infection: str = ""

    def key(self) -> str:
        return self.location


class CensusRow(Record, frozen=True, kw_only=True):
    """A row of the census population dataset; ``event_time`` is 1 January of ``year``, UTC."""

    year: int
    age: int
    sex: int
    people: int

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
