"""Census: the loaders on the real files, row rejection, and the replay to Kafka."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from buffer import topics
from buffer.topics import Topic
from common.records import CensusRow, from_json
from input.base import KafkaSink, ListSink, Rejected
from input.census import (
    INCOME_FILE,
    POPULATION_FILE,
    CensusFileError,
    CensusSource,
    IncomeRow,
    load_income,
    load_population,
    main,
    read_population,
)
from tests.input.test_random_numbers import FakeTime
from tests.kafka_topics import read_topic


def test_population_file_loads_exactly() -> None:
    rows = load_population()
    assert len(rows) == 570
    assert rows[0] == CensusRow(event_time=dt.datetime(1850, 1, 1, tzinfo=dt.UTC), year=1850,
                                age=0, sex=1, people=1483789)
    assert rows[-1] == CensusRow(event_time=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), year=2000,
                                 age=90, sex=2, people=1064581)
    years = sorted({r.year for r in rows})
    assert years == [1850, 1860, 1870, 1880, *range(1900, 2001, 10)]  # the 1890 records burned
    assert sorted({r.age for r in rows}) == list(range(0, 91, 5))
    assert Counter(r.sex for r in rows) == {1: 285, 2: 285}
    assert sum(r.people for r in rows) == 1954494178
    assert sum(r.people for r in rows if r.year == 2000) == 281420717
    assert all(r.event_time == dt.datetime(r.year, 1, 1, tzinfo=dt.UTC) for r in rows)
    assert rows[0].to_json()["event_time"] == "1850-01-01T00:00:00Z"


def test_income_file_loads_exactly() -> None:
    rows = load_income(path=INCOME_FILE)
    assert len(rows) == 520
    assert rows[0] == IncomeRow(name="Alabama", region="south", id=1, pct=0.102, total=1837292,
                                group="<10000")
    assert rows[-1] == IncomeRow(name="Puerto Rico", region="other", id=72, pct=0.006,
                                 total=1254274, group="200000+")
    california = [r for r in rows if r.state == "California"]
    assert len(california) == 10 and california[0].pct == 0.061 and california[0].total == 12581722
    assert len({r.name for r in rows}) == 52
    assert Counter(r.region for r in rows) == {"south": 170, "west": 130, "midwest": 120,
                                               "northeast": 90, "other": 10}
    assert len({r.group for r in rows}) == 10
    assert rows[0].to_json() == {"name": "Alabama", "region": "south", "id": 1, "pct": 0.102,
                                 "total": 1837292, "group": "<10000"}


BAD_ROWS: list[Any] = [
    {"year": 1850, "age": 0, "sex": 3, "people": 10},
    {"year": 1850, "age": "five", "sex": 1, "people": 10},
    {"year": 1850, "age": 5, "sex": 1},
    {"year": True, "age": 5, "sex": 1, "people": 1},
    {"year": 1850, "age": 5, "sex": 1, "people": -4},
    ["not", "an", "object"],
]
BAD_REASONS = [
    "row 1: field sex must be between 1 and 2, got 3",
    "row 2: field age must be an integer, got 'five'",
    "row 3: field people must be an integer, got None",
    "row 4: field year must be an integer, got True",
    "row 5: field people must be between 0 and 10000000000, got -4",
    "row 6: expected a JSON object, got list",
]


def mixed_file(directory: Path) -> Path:
    """A population file: the real rows 0 and 1, the bad rows between them, unique name."""
    real = json.loads(POPULATION_FILE.read_text())
    path = directory / f"population-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps([real[0], *BAD_ROWS, real[1]]))
    return path


def test_invalid_rows_are_rejected_with_a_reason_not_raised(tmp_path: Path) -> None:
    path = mixed_file(tmp_path)
    items = list(read_population(path))
    assert [type(i).__name__ for i in items] == ["CensusRow"] + ["Rejected"] * 6 + ["CensusRow"]
    assert [i.reason for i in items if isinstance(i, Rejected)] == [
        f"{path.name} {reason}" for reason in BAD_REASONS]
    rejects: list[Rejected] = []
    rows = load_population(path, rejects=rejects)
    assert [r.people for r in rows] == [1483789, 1450376] and len(rejects) == 6
    assert json.loads(rejects[0].raw) == BAD_ROWS[0]


def test_invalid_income_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "income.json"
    good: dict[str, Any] = {"name": "Ohio", "region": "midwest", "id": 39, "pct": 0.1, "total": 5, "group": "<10000"}
    path.write_text(json.dumps([good, {**good, "pct": 1.5}, {**good, "name": ""}]))
    rejects: list[Rejected] = []
    assert load_income(path, rejects=rejects) == [IncomeRow(**good)]
    assert [r.reason for r in rejects] == [
        "income.json row 1: field pct must be between 0.0 and 1.0, got 1.5",
        "income.json row 2: field name must be a non-empty string, got ''"]


def test_a_file_that_is_not_a_json_array_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(CensusFileError, match="not found"):
        load_population(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"year": 1850,')
    with pytest.raises(CensusFileError, match="broken.json is not readable JSON"):
        load_population(broken)
    broken.write_text('{"year": 1850}')
    with pytest.raises(CensusFileError, match="must hold a JSON array, got dict"):
        load_income(broken)


def test_replay_is_paced_at_the_speed_with_an_injected_clock() -> None:
    fake = FakeTime()
    source = CensusSource(speed=20, count=5, sleep=fake.sleep, monotonic=fake.monotonic)
    sink = ListSink()
    counters = source.run(sink)
    assert counters.sent == 5
    assert fake.slept == [0.05] * 4
    assert [v["age"] for _, _, v in sink.published] == [0, 0, 5, 5, 10]
    assert {(t, k) for t, k, _ in sink.published} == {("census", "1850")}


def test_fast_replays_come_in_batches_and_speed_zero_never_sleeps() -> None:
    fake = FakeTime()
    fast = CensusSource(speed=1000, sleep=fake.sleep, monotonic=fake.monotonic)
    assert fast.run(ListSink()).sent == 570
    assert len(fake.slept) == 56  # 57 ticks of 10 rows, the first without a sleep
    unpaced = CensusSource(speed=0, sleep=fake.sleep)
    sink = ListSink()
    assert unpaced.run(sink).sent == 570 and len(fake.slept) == 56
    assert [from_json(CensusRow, v) for _, _, v in sink.published] == load_population()


def test_replay_ends_after_one_pass_or_loops(tmp_path: Path) -> None:
    once = CensusSource(speed=0)
    assert once.run(ListSink()).sent == 570 and once.passes == 1
    looping = CensusSource(speed=0, loop=True, count=1200)
    sink = ListSink()
    assert looping.run(sink).sent == 1200 and looping.passes == 2
    assert sink.published[570][2] == sink.published[0][2]
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert CensusSource(empty, speed=0, loop=True).run(ListSink()).seen == 0  # no busy loop


def test_replay_to_kafka_counts_in_equal_published_plus_rejected(
        bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    name = new_topic(1)
    bad_file = mixed_file(tmp_path)
    for path, rows, rejected in ((POPULATION_FILE, 570, 0), (bad_file, 2, 6)):
        source = CensusSource(path, speed=0)
        source.topic = Topic("census", name, 1)
        sink = KafkaSink(bootstrap)
        counters = source.run(sink)
        sink.close()
        assert (counters.sent, counters.rejected) == (rows, rejected)
        assert counters.seen == len(json.loads(path.read_text()))
    records = read_topic(bootstrap, name)
    assert len(records) == 572
    assert [r["value"]["year"] for r in records][:2] == [1850, 1850]
    assert from_json(CensusRow, records[569]["value"]) == load_population()[-1]
    # The rejects are in the dead-letters topic, with the file's (unique) name in the reason.
    dead = [r["value"] for r in read_topic(bootstrap, topics.DEAD_LETTERS.name)
            if bad_file.name in r["value"].get("reason", "")]
    assert len(dead) == 6 and {d["source"] for d in dead} == {"census"}
    assert json.loads(dead[0]["raw"]) == BAD_ROWS[0]


def test_help_names_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "CENSUS_REPLAY_SPEED" in out and "--loop" in out
