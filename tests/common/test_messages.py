"""The messages on ``results`` and ``health``: what is sent is what is read back, and a
message not of its type is a MessageError naming what is wrong."""

from __future__ import annotations

import pytest

from buffer.kafka import dumps
from common import messages
from common.messages import (
    MessageError,
    QueryProgress,
    QueryStarted,
    QueryTerminated,
    Ready,
    ResultsBatch,
    SourceProgress,
    StackStages,
    StageState,
)

HEALTH = [
    SourceProgress(component="input", source="vmstat", topic="vmstat", sent=10, rejected=1,
                   rate=2.5, time="2026-12-07T00:00:00.000Z"),
    QueryProgress(component="processing", app="streamkit", query="vmstat_tumbling@disk",
                  batch_id=3, input_rows=7, batch_ms=812, stages_ms={"addBatch": 640},
                  lag=4, observed={"in": {"rows": 7, "malformed": 0}},
                  totals={"input_rows": 70, "late_rows": 0, "malformed": 0}),
    QueryStarted(component="processing", query="random_stats@disk"),
    QueryTerminated(component="processing", query="random_stats@disk", error="boom"),
    Ready(component="processing", queries=["a", "b"]),
    StackStages(component="stack", stages=[StageState(name="broker", state="running",
                                                      restarts=1, pid=42, up_s=3.5)]),
]


@pytest.mark.parametrize("message", HEALTH, ids=lambda m: type(m).__name__)
def test_a_health_message_reads_back_as_its_own_type(message: messages.HealthMessage) -> None:
    data = dumps(message)
    assert messages.decode_health(data) == message
    assert messages.to_json(message)["kind"] in data.decode()


def test_a_results_batch_reads_back() -> None:
    batch = ResultsBatch(stream="vmstat_tumbling", store="disk", rows=[{"key": "h"}],
                         query="vmstat_tumbling@disk", batch_id=2, timing={"written_at": "t"},
                         stored_records=5)
    assert messages.decode_results(dumps(batch)) == batch


@pytest.mark.parametrize(("data", "says"), [
    (b"{oops", "malformed"),
    (b'{"kind": "gossip", "component": "x"}', "Invalid value 'gossip'"),
    (b'{"component": "input", "source": "x"}', "missing required field `kind`"),
    (b'{"kind": "source_progress", "component": "input", "source": "x", "topic": "t"}',
     "Object missing required field `sent`"),
    (b'{"kind": "query_progress", "component": "p", "query": "q", "lag": "many"}',
     "Expected `int | null`, got `str` - at `$.lag`"),
])
def test_a_health_message_not_of_its_type_says_why(data: bytes, says: str) -> None:
    with pytest.raises(MessageError, match="not a health message") as caught:
        messages.decode_health(data)
    assert says.lower().replace("`", "") in str(caught.value).lower().replace("`", "")


def test_a_results_message_without_rows_is_refused() -> None:
    with pytest.raises(MessageError, match="rows"):
        messages.decode_results(b'{"stream": "s", "store": "disk"}')
