"""The messages on the ``results`` and ``health`` topics, each defined once.

The records on the raw topics are in :mod:`common.records`; these are what the stages tell
each other about them. Who writes a message builds one of these; who reads it decodes the
bytes with :func:`decode_results` or :func:`decode_health` and gets the same type back, or a
:class:`MessageError` that says what is wrong (the reader counts it and goes on).

``results`` (key: the stream), one per stream and store after a job's batch is stored:

* :class:`ResultsBatch`: the rows just upserted, with the batch's timing for the health view.

``health`` (key: the component), told apart by their ``kind``:

* :class:`SourceProgress` (``source_progress``): a source's sent and rejected counts, every 2 s;
* :class:`QueryProgress` (``query_progress``): a streaming query's last batch and totals;
* :class:`QueryStarted`, :class:`QueryTerminated` (``query_started``, ``query_terminated``);
* :class:`Ready` (``ready``): a Spark application started all its queries;
* :class:`StackStages` (``stack_stages``): the stack's stages as its supervisor sees them.

Times are strings as :func:`common.records.format_time` writes them (UTC, milliseconds).
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "HealthMessage", "MessageError", "QueryProgress", "QueryStarted", "QueryTerminated",
    "Ready", "ResultsBatch", "SourceProgress", "StackStages", "StageState", "decode_health",
    "decode_results", "to_json",
]


class MessageError(ValueError):
    """A message on ``results`` or ``health`` that is not JSON or not of its type."""


class ResultsBatch(msgspec.Struct, kw_only=True):
    """Rows of one stream a job just wrote to one store (``store``: "disk", "cassandra")."""

    stream: str
    store: str
    #: each a stored row as ``ResultRow.to_json()`` writes it, plus ``updated_at``
    rows: list[dict[str, Any]]
    query: str | None = None
    batch_id: int | None = None
    written_at: str | None = None
    batch_seconds: float | None = None
    #: newest produce and broker times of the batch's input, its start and write times
    timing: dict[str, str] = msgspec.field(default_factory=dict)
    #: rows of this stream the job has stored in this store (the ledger's total)
    stored_records: int | None = None


class Health(msgspec.Struct, kw_only=True, tag_field="kind"):
    """What every health message carries: who sent it (``component``: input, processing,
    stack, or a benchmark's engine), its application, and when."""

    component: str
    app: str | None = None
    time: str | None = None
    published_at: str | None = None


class SourceProgress(Health, tag="source_progress", kw_only=True):
    source: str
    #: the topic it writes (the ingest: every topic of its routes, comma-separated)
    topic: str
    sent: int
    rejected: int
    failed: int = 0
    #: inputs per second since the last report (sent and rejected)
    rate: float = 0.0


class QueryProgress(Health, tag="query_progress", kw_only=True):
    query: str
    batch_id: int | None = None
    input_rows: int = 0
    input_rate: float = 0.0
    processed_rate: float = 0.0
    batch_ms: int | None = None
    #: where the batch's time went (Spark's names: latestOffset, queryPlanning, addBatch, ...)
    stages_ms: dict[str, float] = msgspec.field(default_factory=dict)
    #: records in Kafka the query has not read yet
    lag: int | None = None
    late_rows: int = 0
    state_rows: int = 0
    watermark: str | None = None
    #: Spark's observed metrics, per observation name
    observed: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    malformed: int = 0
    #: since the application started: input_rows, late_rows, malformed (and an engine's own)
    totals: dict[str, int] = msgspec.field(default_factory=dict)
    #: a query with no new data (Spark's idle event): the last batch's figures, no input
    idle: bool = False


class QueryStarted(Health, tag="query_started", kw_only=True):
    query: str


class QueryTerminated(Health, tag="query_terminated", kw_only=True):
    query: str
    error: str | None = None


class Ready(Health, tag="ready", kw_only=True):
    queries: list[str]


class StageState(msgspec.Struct, kw_only=True):
    """One child of the stack's supervisor."""

    name: str
    #: running, starting (runs, does not answer yet) or restarting
    state: str
    restarts: int = 0
    last_exit: int | None = None
    pid: int | None = None
    up_s: float | None = None
    #: where a node of a cluster answers (host:port); None for a stage
    address: str | None = None


class StackStages(Health, tag="stack_stages", kw_only=True):
    stages: list[StageState]


HealthMessage = SourceProgress | QueryProgress | QueryStarted | QueryTerminated | Ready | StackStages

_results = msgspec.json.Decoder(ResultsBatch)
_health: msgspec.json.Decoder[HealthMessage] = msgspec.json.Decoder(HealthMessage)


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes | str, topic: str) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as e:  # ValidationError is one
        raise MessageError(f"not a {topic} message: {e}") from None


def decode_results(data: bytes | str) -> ResultsBatch:
    """A ``results`` message from its JSON; :class:`MessageError` if it is not one."""
    message: ResultsBatch = _decode(_results, data, "results")
    return message


def decode_health(data: bytes | str) -> HealthMessage:
    """A ``health`` message of its kind from its JSON; :class:`MessageError` if it is none."""
    message: HealthMessage = _decode(_health, data, "health")
    return message


def to_json(message: msgspec.Struct) -> dict[str, Any]:
    """The message as JSON values (``kind`` included), as pages and ``/api`` show it."""
    value: dict[str, Any] = msgspec.to_builtins(message)
    return value
