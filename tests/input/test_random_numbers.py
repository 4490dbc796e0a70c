"""Random numbers: distributions, batch pacing, and a gap-free sequence across restarts."""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from buffer.topics import Topic
from common.records import RandomNumber, from_json
from input.base import KafkaSink, ListSink
from input.random_numbers import (
    RandomSource,
    RatePacer,
    StateFile,
    default_partition,
    last_seq_in_kafka,
    main,
    make_draw,
)
from tests.kafka_topics import read_topic

T0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


class FakeTime:
    """A monotonic clock that only moves when slept on; records the sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds

    def monotonic(self) -> float:
        return self.now




# -- distributions


@pytest.mark.parametrize(("distribution", "params", "mean", "stdev"), [
    ("uniform", (2.0, 5.0), 3.5, 3 / 12 ** 0.5),
    ("normal", (10.0, 2.0), 10.0, 2.0),
    ("exponential", (4.0,), 0.25, 0.25),
    ("normal", (), 0.0, 1.0),  # RANDOM_PARAMS empty: the defaults
    ("uniform", (), 0.5, 1 / 12 ** 0.5),
    ("exponential", (), 1.0, 1.0),
])
def test_distributions_have_their_shape_with_a_fixed_seed(
        distribution: str, params: tuple[float, ...], mean: float, stdev: float) -> None:
    draw = make_draw(distribution, params, random.Random(42))
    values = [draw() for _ in range(50_000)]
    assert statistics.fmean(values) == pytest.approx(mean, abs=0.02 * max(stdev, 1))
    assert statistics.pstdev(values) == pytest.approx(stdev, rel=0.03)
    if distribution == "uniform":
        low, high = params or (0.0, 1.0)
        assert low <= min(values) and max(values) <= high
    if distribution == "exponential":
        assert min(values) >= 0


def test_the_same_seed_gives_the_same_numbers() -> None:
    first = RandomSource(rate=1000, rng=random.Random(7), producer="p", count=5, sleep=lambda s: None)
    second = RandomSource(rate=1000, rng=random.Random(7), producer="p", count=5, sleep=lambda s: None)
    a, b = ListSink(), ListSink()
    first.run(a)
    second.run(b)
    assert [v["value"] for _, _, v in a.published] == [v["value"] for _, _, v in b.published]


@pytest.mark.parametrize(("distribution", "params", "message"), [
    ("normal", (1.0,), "RANDOM_PARAMS for normal must be mean,stddev"),
    ("normal", (0.0, 0.0), "stddev must be greater than 0"),
    ("uniform", (3.0, 1.0), "high must be greater than low"),
    ("exponential", (-1.0,), "rate must be greater than 0"),
    ("poisson", (), "RANDOM_DISTRIBUTION='poisson'"),
])
def test_unusable_parameters_are_refused_naming_the_setting(
        distribution: str, params: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_draw(distribution, params, random.Random(1))


# -- pacing


def test_high_rates_are_paced_in_batches_per_tick() -> None:
    fake = FakeTime()
    pacer = RatePacer(1000, sleep=fake.sleep, monotonic=fake.monotonic)
    batches = [pacer.wait() for _ in range(100)]
    assert batches == [10] * 100
    assert fake.slept == [0.01] * 99  # the first tick is immediate


def test_fractions_carry_over_between_ticks() -> None:
    fake = FakeTime()
    pacer = RatePacer(150, sleep=fake.sleep, monotonic=fake.monotonic)
    assert [pacer.wait() for _ in range(6)] == [1, 2, 1, 2, 1, 2]
    slow = RatePacer(49, sleep=fake.sleep, monotonic=fake.monotonic)
    assert [slow.wait() for _ in range(49)] == [1] * 49  # 49 * (1/49) < 1 in floating point


def test_fractional_rate_totals_are_exact() -> None:
    fake = FakeTime()
    pacer = RatePacer(150, sleep=fake.sleep, monotonic=fake.monotonic)
    assert sum(pacer.wait() for _ in range(100)) == 150


def test_the_source_reaches_1000_per_second_on_a_simulated_clock() -> None:
    fake = FakeTime()
    source = RandomSource(rate=1000, rng=random.Random(3), producer="p1", count=1000,
                          clock=lambda: T0, sleep=fake.sleep, monotonic=fake.monotonic)
    sink = ListSink()
    counters = source.run(sink)
    assert (counters.sent, counters.rejected) == (1000, 0)
    assert fake.now == pytest.approx(0.99)  # 100 ticks of 10 records, 99 sleeps of 10 ms
    assert [v["seq"] for _, _, v in sink.published] == list(range(1000))
    assert {(topic, key) for topic, key, _ in sink.published} == {("random", "p1")}
    record = from_json(RandomNumber, sink.published[0][2])
    assert (record.producer, record.distribution, record.event_time) == ("p1", "normal", T0)


def test_a_low_rate_sleeps_one_interval_per_record() -> None:
    fake = FakeTime()
    source = RandomSource(rate=4, producer="p", count=3, sleep=fake.sleep, monotonic=fake.monotonic)
    source.run(ListSink())
    assert fake.slept == [0.25, 0.25]


# -- restarts


def test_state_file_is_written_after_the_final_flush_and_resumed(tmp_path: Path) -> None:
    fake = FakeTime()
    kw: dict[str, Any] = {"rate": 1000, "producer": "p/1", "state_dir": tmp_path,
                          "sleep": fake.sleep, "monotonic": fake.monotonic}
    first, sink = RandomSource(count=25, **kw), ListSink()
    first.run(sink)
    state = json.loads((tmp_path / "random-p_1.json").read_text())
    assert (state["producer"], state["topic"], state["next_seq"]) == ("p/1", "random", 25)
    second, sink2 = RandomSource(count=5, **kw), ListSink()
    second.run(sink2)
    assert [v["seq"] for _, _, v in sink2.published] == [25, 26, 27, 28, 29]
    # A state file of another topic does not count.
    other = RandomSource(count=1, **kw)
    other.topic = Topic("random", "another-topic", 3)
    sink3 = ListSink()
    other.run(sink3)
    assert sink3.published[0][2]["seq"] == 0


def test_state_is_checkpointed_after_flushes_while_running(tmp_path: Path) -> None:
    fake = FakeTime()
    source = RandomSource(rate=1000, producer="p", state_dir=tmp_path, count=500,
                          checkpoint_interval_s=0.1, sleep=fake.sleep, monotonic=fake.monotonic)
    seen: list[tuple[int, int | None]] = []
    sink = ListSink()
    original = sink.flush

    def flush() -> None:
        original()
        seen.append((len(sink.published), StateFile(tmp_path, "p").load("random")))

    sink.flush = flush  # type: ignore[method-assign]
    source.run(sink)
    # About every 0.1 s of (simulated) time a flush, then a state file holding exactly what
    # had been published at that flush: the file seen at each flush is the previous flush's count.
    assert 5 <= len(seen) <= 6 and seen[0][1] is None
    assert [state for _, state in seen[1:]] == [published for published, _ in seen[:-1]]
    assert seen[-1][0] == 500 and StateFile(tmp_path, "p").load("random") == 500


def test_a_failed_flush_writes_no_state(tmp_path: Path) -> None:
    class FailingSink(ListSink):
        def flush(self) -> None:
            raise RuntimeError("broker gone")

    source = RandomSource(rate=1000, producer="p", state_dir=tmp_path, count=20,
                          sleep=lambda s: None)
    with pytest.raises(RuntimeError, match="broker gone"):
        source.run(FailingSink())
    assert not (tmp_path / "random-p.json").exists()


def test_default_partition_matches_the_kits_producer(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic(3)
    keys = [f"producer-{i}" for i in range(30)]
    sink = KafkaSink(bootstrap)
    for key in keys:
        sink.publish(topic, key, RandomNumber(event_time=T0, producer=key, seq=0, value=0.5))
    sink.close()
    records = read_topic(bootstrap, topic)
    assert len(records) == 30
    assert all(r["partition"] == default_partition(r["key"], 3) for r in records)
    assert len({r["partition"] for r in records}) == 3


def test_restarts_continue_the_sequence_without_gap_or_duplicate(
        bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    name = new_topic(3)
    topic = Topic("random", name, 3)
    # Another producer writing to the same partition, so the resume has to skip its records.
    noise_id = next(f"noise-{i}" for i in range(1000)
                    if default_partition(f"noise-{i}", 3) == default_partition("p-a", 3))

    def run(producer: str, count: int, state_dir: Path | None = None) -> RandomSource:
        source = RandomSource(rate=5000, producer=producer, bootstrap=bootstrap,
                              state_dir=state_dir, count=count, rng=random.Random(count))
        source.topic = topic
        sink = KafkaSink(bootstrap)
        try:
            counters = source.run(sink)
        finally:
            sink.close()
        assert (counters.sent, counters.rejected) == (count, 0)
        return source

    assert run("p-a", 300, tmp_path).next_seq == 300
    run(noise_id, 2500)
    # A crash after Kafka acknowledged more than the state file says: Kafka wins.
    StateFile(tmp_path, "p-a").save(name, 120, T0)
    assert last_seq_in_kafka(bootstrap, name, "p-a", window=100) == 299  # scans back 2,500+
    assert run("p-a", 200, tmp_path).next_seq == 500
    assert run("p-a", 100).next_seq == 600  # no state file: Kafka alone
    records = read_topic(bootstrap, name)
    assert len(records) == 600 + 2500  # count in = count published (nothing rejected)
    mine = [r for r in records if r["key"] == "p-a"]
    assert len({r["partition"] for r in mine}) == 1
    assert [r["value"]["seq"] for r in sorted(mine, key=lambda r: r["offset"])] == list(range(600))
    noise = [r["value"]["seq"] for r in records if r["key"] == noise_id]
    assert noise == list(range(2500))


def test_the_state_file_keeps_the_sequence_when_the_topic_was_emptied(
        bootstrap: str, new_topic: Any, tmp_path: Path) -> None:
    name = new_topic(3)
    StateFile(tmp_path, "p").save(name, 42, T0)  # as left by a run before a broker restart
    source = RandomSource(rate=1000, producer="p", bootstrap=bootstrap, state_dir=tmp_path, count=3)
    source.topic = Topic("random", name, 3)
    sink = KafkaSink(bootstrap)
    source.run(sink)
    sink.close()
    assert [r["value"]["seq"] for r in read_topic(bootstrap, name)] == [42, 43, 44]


def test_1000_per_second_is_reachable_against_the_broker(bootstrap: str, new_topic: Any) -> None:
    name = new_topic(3)
    source = RandomSource(rate=2000, producer="fast", bootstrap=bootstrap, count=2000)
    source.topic = Topic("random", name, 3)
    sink = KafkaSink(bootstrap)
    started = time.monotonic()
    counters = source.run(sink)
    elapsed = time.monotonic() - started
    sink.close()
    assert counters.sent == 2000
    assert counters.sent / elapsed >= 1000, f"{counters.sent / elapsed:.0f} records/s"
    assert len(read_topic(bootstrap, name)) == 2000


def test_help_names_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("RANDOM_RATE", "RANDOM_DISTRIBUTION", "RANDOM_PARAMS", "RANDOM_SEED", "--producer-id"):
        assert name in out
