"""The Kafka source's option parsing and offset planning: pure functions, no broker, no Spark."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from processing.kafka_source import (
    KafkaOptionError,
    KafkaStreamReader,
    OffsetRange,
    _arrow_schema,
    _to_batch,
    from_offsets,
    parse_options,
    plan_read_tasks,
    split_limit,
    to_offsets,
)

BASE = {"kafka.bootstrap.servers": "127.0.0.1:9092", "subscribe": "b,a"}


def test_defaults_and_case_insensitive_names() -> None:
    opts = parse_options({**BASE, "STARTINGOFFSETS": "Earliest", "maxOffsetsPerTrigger": "10"})
    assert opts.topics == ("a", "b")
    assert opts.starting == "earliest"
    assert opts.max_offsets_per_trigger == 10
    assert opts.fail_on_data_loss is True


def test_per_partition_starting_offsets() -> None:
    opts = parse_options({**BASE, "startingOffsets": '{"a": {"0": 5, "1": -2}}'})
    assert opts.starting == {"a": {0: 5, 1: -2}}


def test_client_properties_pass_through() -> None:
    opts = parse_options({**BASE, "kafka.security.protocol": "PLAINTEXT"})
    assert opts.client_config == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"maxOffsetsPerTrigger": "ten"}, "maxOffsetsPerTrigger"),
        ({"maxOffsetsPerTrigger": "0"}, "maxOffsetsPerTrigger"),
        ({"failOnDataLoss": "maybe"}, "failOnDataLoss"),
        ({"startingOffsets": "yesterday"}, "startingOffsets"),
        ({"startingOffsets": '{"c": {"0": 1}}'}, "startingOffsets"),
        ({"startingOffsets": '{"a": {"x": 1}}'}, "startingOffsets"),
        ({"startingOffsets": '{"a": {"0": -7}}'}, "startingOffsets"),
        ({"kafkaConsumer.pollTimeoutMs": "-1"}, "kafkaConsumer.pollTimeoutMs"),
        ({"subscribePattern": "a.*"}, "subscribepattern"),
        ({"includeHeaders": "true"}, "includeheaders"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_name_the_option(extra: dict[str, str], named: str) -> None:
    with pytest.raises(KafkaOptionError, match=named):
        parse_options({**BASE, **extra})


def test_required_options() -> None:
    with pytest.raises(KafkaOptionError, match=r"kafka\.bootstrap\.servers"):
        parse_options({"subscribe": "a"})
    with pytest.raises(KafkaOptionError, match="subscribe"):
        parse_options({"kafka.bootstrap.servers": "x:1"})


def test_offsets_json_has_a_stable_order() -> None:
    positions = {("b", 10): 1, ("a", 2): 5, ("a", 10): 7, ("b", 0): 3}
    offsets = to_offsets(positions)
    assert list(offsets) == ["a", "b"]
    assert list(offsets["a"]) == ["2", "10"]  # numeric order, not string order
    assert from_offsets(offsets) == positions


def test_split_limit_shares_in_proportion_and_uses_the_whole_limit() -> None:
    start = {("t", 0): 0, ("t", 1): 100, ("t", 2): 50}
    end = {("t", 0): 300, ("t", 1): 200, ("t", 2): 50}
    limited = split_limit(start, end, 200)
    assert limited == {("t", 0): 150, ("t", 1): 150, ("t", 2): 50}
    assert sum(limited[tp] - start[tp] for tp in start) == 200


def test_split_limit_rounding_remainder_goes_somewhere() -> None:
    start = {("t", p): 0 for p in range(3)}
    end = {("t", p): 10 for p in range(3)}
    limited = split_limit(start, end, 10)
    assert sum(limited.values()) == 10
    assert all(0 < v <= 10 for v in limited.values())


def test_split_limit_below_the_limit_reads_everything() -> None:
    start = {("t", 0): 5}
    end = {("t", 0): 8}
    assert split_limit(start, end, 100) == end


def test_plan_read_tasks_merges_small_batches_into_one_task() -> None:
    ranges = [OffsetRange("t", p, 0, 100) for p in range(3)]
    assert len(plan_read_tasks(ranges, max_tasks=2, rows_per_task=100_000)) == 1


def test_plan_read_tasks_spreads_large_batches_and_keeps_ranges_whole() -> None:
    ranges = [OffsetRange("t", p, 0, n) for p, n in enumerate([300_000, 200_000, 100_000])]
    tasks = plan_read_tasks(ranges, max_tasks=2, rows_per_task=100_000)
    assert len(tasks) == 2
    assert sorted(sum(r.size for r in t) for t in tasks) == [300_000, 300_000]
    assert sorted(r for t in tasks for r in t) == sorted(ranges)


def test_by_default_a_batch_of_a_second_at_20000_records_is_read_by_two_tasks() -> None:
    opts = parse_options({**BASE, "maxReadTasks": "2"})
    one_second = [OffsetRange("t", p, 0, 6_667) for p in range(3)]
    assert len(plan_read_tasks(one_second, opts.max_read_tasks, opts.rows_per_read_task)) == 2
    quiet = [OffsetRange("t", p, 0, 1_000) for p in range(3)]
    assert len(plan_read_tasks(quiet, opts.max_read_tasks, opts.rows_per_read_task)) == 1
    assert parse_options({**BASE, "rowsPerReadTask": "500"}).rows_per_read_task == 500


def test_plan_read_tasks_skips_empty_ranges() -> None:
    assert plan_read_tasks([OffsetRange("t", 0, 5, 5)], 2, 10) == []


class _Reader(KafkaStreamReader):
    """The reader with the broker's answers given, to check planning on its own."""

    def __init__(self, positions: dict[tuple[str, int], tuple[int, int]], **options: str) -> None:
        super().__init__(parse_options({**BASE, **options}))
        self.positions = positions

    def _positions(self) -> dict[tuple[str, int], tuple[int, int]]:
        self._known = dict(self.positions)
        return self.positions


def test_a_partition_that_appears_is_read_from_its_earliest_offset() -> None:
    reader = _Reader({("a", 0): (0, 10), ("a", 1): (4, 9)})
    start = {"a": {"0": 10}}
    end = reader.latestOffset(start, ReadAllAvailable())
    assert end == {"a": {"0": 10, "1": 9}}
    tasks = reader.partitions(start, end)
    assert [r for t in tasks for r in t.ranges] == [OffsetRange("a", 1, 4, 9)]


def test_available_now_never_reads_past_its_target() -> None:
    reader = _Reader({("a", 0): (0, 10)})
    reader.prepareForTriggerAvailableNow()
    reader.positions = {("a", 0): (0, 25), ("a", 1): (0, 5)}  # more data and a new partition
    end = reader.latestOffset({"a": {"0": 3}}, ReadMaxRows(100))
    assert end == {"a": {"0": 10, "1": 0}}


def test_offsets_that_go_backwards_are_data_loss() -> None:
    reader = _Reader({("a", 0): (0, 2)})
    with pytest.raises(RuntimeError, match="data loss"):
        reader.latestOffset({"a": {"0": 10}}, ReadAllAvailable())
    lenient = _Reader({("a", 0): (0, 2)}, failOnDataLoss="false")
    end = lenient.latestOffset({"a": {"0": 10}}, ReadAllAvailable())
    assert end == {"a": {"0": 2}}
    assert lenient.partitions({"a": {"0": 10}}, end) == []


def test_reader_pickles_without_its_client() -> None:
    import pickle

    reader = _Reader({("a", 0): (0, 2)})
    reader._probe = object()  # stands for a live consumer, which cannot be pickled
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._probe is None


class _Message:
    """What the reader uses of a confluent_kafka Message."""

    def __init__(self, key: bytes | None, value: bytes, timestamp: tuple[int, int]) -> None:
        self._key, self._value, self._timestamp = key, value, timestamp

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def test_records_become_an_arrow_batch_of_sparks_kafka_schema() -> None:
    messages = [
        _Message(b"k", b'{"a":1}', (1, 1_700_000_000_123)),  # CreateTime
        _Message(None, b"{}", (0, -1)),  # no timestamp
        _Message(b"z", b"x", (2, 1_700_000_000_456)),  # LogAppendTime
    ]
    batch = _to_batch(messages, [7, 8, 9], OffsetRange("t", 2, 7, 10), _arrow_schema())
    assert batch.schema == _arrow_schema()
    assert batch.to_pylist() == [
        {"key": b"k", "value": b'{"a":1}', "topic": "t", "partition": 2, "offset": 7,
         "timestamp": dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC), "timestampType": 0},
        {"key": None, "value": b"{}", "topic": "t", "partition": 2, "offset": 8,
         "timestamp": None, "timestampType": -1},
        {"key": b"z", "value": b"x", "topic": "t", "partition": 2, "offset": 9,
         "timestamp": dt.datetime(2023, 11, 14, 22, 13, 20, 456000, tzinfo=dt.UTC), "timestampType": 1},
    ]


def test_numpy_and_pandas_are_not_installed() -> None:
    """Each Python worker that imported them cost about 20-55 MiB more (pyarrow imports
    pandas on its first array if it can, to check for pandas objects). The lock file is
    the complete list of what ``make setup`` installs."""
    lock = Path(__file__).resolve().parents[2] / "requirements.lock"
    names = {line.split("==")[0].lower() for line in lock.read_text().splitlines() if "==" in line}
    assert "pyarrow" in names
    assert not names & {"numpy", "pandas"}
