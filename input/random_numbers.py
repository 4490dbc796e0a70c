"""Random numbers to the ``random`` topic, with a gap-free sequence number per producer.

Run::

    python -m input.random_numbers                          # RANDOM_RATE/s, RANDOM_DISTRIBUTION
    python -m input.random_numbers --random-rate 1000 --random-distribution uniform \\
        --random-params 0,10 --random-seed 7 --count 5000
    python -m input.random_numbers --producer-id sensor-a   # a second producer next to the first

It logs where the sequence resumes, a line per failure, and on exit the counts
of records sent and rejected.

Distributions (``RANDOM_PARAMS``; empty means the defaults in brackets):
``uniform`` low,high [0,1]; ``normal`` mean,stddev [0,1]; ``exponential`` rate [1].

**Sequence guarantee.** Records are keyed by the producer id, so one producer's
records stay in one partition, in order; ``seq`` counts up from 0. When a
producer (re)starts it resumes at one past the highest ``seq`` it has in
Kafka, found by reading the tail of its partition backwards (end offsets via
:func:`buffer.kafka.end_offsets`), or at the
``next_seq`` of its state file ``DATA_DIR/state/random-<producer>.json``,
whichever is higher. The state file is written only after a flush succeeded
(every ``checkpoint_interval_s`` and at a clean stop), so it never claims a
record that Kafka has not acknowledged; it keeps the sequence going when the
topic was emptied (deleted and made again, or its records expired). So a
restart, clean or ``kill -9``, shows neither a gap nor a duplicate, provided
the records Kafka acknowledged are still there or the state file is. Not
covered: a record whose delivery failed for good (after librdkafka's retries,
which Kafka's idempotence keeps from duplicating) is reported (the source stops
with an error), not retried into place; two processes running with the same producer id at once break the
sequence (give each its own ``--producer-id``). Delete the state file to start
a producer again from 0 on an empty topic.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from buffer import topics
from common.records import RandomNumber, format_time, utc_now
from common.settings import Settings
from input.base import Clock, Counters, Pacer, Sink, Source

__all__ = [
    "DEFAULT_PARAMS",
    "RandomSource",
    "RatePacer",
    "ResumeError",
    "StateFile",
    "default_partition",
    "last_seq_in_kafka",
    "make_draw",
]

log = logging.getLogger(__name__)

#: Parameters used when RANDOM_PARAMS is empty.
DEFAULT_PARAMS: dict[str, tuple[float, ...]] = {
    "uniform": (0.0, 1.0),
    "normal": (0.0, 1.0),
    "exponential": (1.0,),
}

#: Shortest pause between two batches: above 1/MIN_TICK_S records/s, each tick emits several.
MIN_TICK_S = 0.01


class ResumeError(RuntimeError):
    """The sequence to resume from could not be established; starting anyway could duplicate."""

    retriable = True


def make_draw(distribution: str, params: tuple[float, ...], rng: random.Random
              ) -> Callable[[], float]:
    """A function drawing one number from ``distribution`` with ``params`` (or the defaults).

    Raises:
        ValueError: unknown distribution or unusable parameters; the message names RANDOM_PARAMS.
    """
    if distribution not in DEFAULT_PARAMS:
        raise ValueError(f"RANDOM_DISTRIBUTION={distribution!r}: must be one of "
                         f"{', '.join(DEFAULT_PARAMS)}")
    values = tuple(params) or DEFAULT_PARAMS[distribution]
    expected = len(DEFAULT_PARAMS[distribution])
    shape = {"uniform": "low,high", "normal": "mean,stddev", "exponential": "rate"}[distribution]
    if len(values) != expected:
        raise ValueError(f"RANDOM_PARAMS for {distribution} must be {shape}, got {values}")
    if distribution == "uniform":
        low, high = values
        if not high > low:
            raise ValueError(f"RANDOM_PARAMS for uniform: high must be greater than low, got {values}")
        return lambda: rng.uniform(low, high)
    if distribution == "normal":
        mean, stddev = values
        if not stddev > 0:
            raise ValueError(f"RANDOM_PARAMS for normal: stddev must be greater than 0, got {values}")
        return lambda: rng.gauss(mean, stddev)
    (lambd,) = values
    if not lambd > 0:
        raise ValueError(f"RANDOM_PARAMS for exponential: rate must be greater than 0, got {values}")
    return lambda: rng.expovariate(lambd)


class RatePacer:
    """Paces ``rate`` events per second in batches: :meth:`wait` sleeps to the next tick and
    says how many events are due.

    Ticks are ``max(1/rate, min_tick)`` apart on :class:`~input.base.Pacer`'s drift-free
    schedule, so high rates (1,000/s and more) cost 100 sleeps a second, not one per event.
    Fractions carry over: 150/s gives 1, 2, 1, 2, ... per 10 ms tick.
    """

    def __init__(self, rate: float, min_tick: float = MIN_TICK_S,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be greater than 0, got {rate}")
        self.rate = rate
        self.tick = max(1.0 / rate, min_tick)
        self.pacer = Pacer(self.tick, sleep=sleep, monotonic=monotonic)
        self._per_tick = rate * self.tick
        self._credit = 0.0

    def wait(self) -> int:
        self.pacer.wait()
        self._credit += self._per_tick
        due = int(self._credit + 1e-9)  # 49 * (1/49) is 0.999...
        self._credit -= due
        return due


def default_partition(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``) gives a key.

    CRC-32 of the key modulo the partition count; the kit's producers
    (:func:`buffer.kafka.producer`) keep that default. A test checks it against the broker.
    """
    return zlib.crc32(key.encode()) % partitions


def last_seq_in_kafka(bootstrap: str, topic: str, producer: str, timeout_s: float = 30.0,
                      window: int = 1000) -> int | None:
    """The highest ``seq`` of ``producer`` in ``topic``, or None if it has no record there.

    Reads the producer's partition backwards from its end in growing windows
    (1,000, 4,000, 16,000 records, ...) until a record with the producer's key
    turns up or the partition's start is reached.

    Raises:
        ResumeError: the topic does not exist, or the read did not finish within ``timeout_s``.
    """
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    from buffer import kafka

    deadline = time.monotonic() + timeout_s
    probe = kafka.offset_probe(bootstrap)
    try:
        parts = kafka.partitions_of(probe, [topic], timeout_s)[topic]
        if not parts:
            raise ResumeError(f"topic {topic} does not exist on {bootstrap}")
        partition = default_partition(producer, len(parts))
        low, end = kafka.end_offsets(probe, [(topic, partition)], timeout_s)[(topic, partition)]
    finally:
        probe.close()
    key = producer.encode()
    reader = kafka.consumer(bootstrap, {"fetch.wait.max.ms": 10})
    try:
        stop, size = end, window
        while stop > low:
            start = max(low, stop - size)
            reader.assign([TopicPartition(topic, partition, start)])
            best: int | None = None
            position = start
            while position < stop:
                if time.monotonic() > deadline:
                    raise ResumeError(
                        f"reading {topic}[{partition}] offsets {start}-{stop} for producer "
                        f"{producer!r} did not finish within {timeout_s} s")
                for msg in reader.consume(num_messages=10_000, timeout=0.2):
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(error)
                    offset = msg.offset() or 0
                    position = max(position, offset + 1)
                    if offset >= stop or msg.key() != key:
                        continue
                    seq = _seq_of(msg.value())
                    if seq is not None and (best is None or seq > best):
                        best = seq
            if best is not None:
                return best
            stop, size = start, size * 4
        return None
    finally:
        reader.close()


def _seq_of(value: bytes | None) -> int | None:
    try:
        seq = json.loads(value or b"").get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class StateFile:
    """``next_seq`` of one producer on one topic, written atomically (temp file + rename)."""

    def __init__(self, directory: Path, producer: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", producer)
        self.path = Path(directory) / f"random-{safe}.json"
        self.producer = producer

    def load(self, topic: str) -> int | None:
        """The saved ``next_seq`` for ``topic``, or None (no file, another topic, unreadable)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("random: ignoring unreadable state file %s: %s", self.path, e)
            return None
        if not isinstance(data, dict) or data.get("topic") != topic \
                or data.get("producer") != self.producer:
            return None
        value = data.get("next_seq")
        return value if isinstance(value, int) and value >= 0 else None

    def save(self, topic: str, next_seq: int, now: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"producer": self.producer, "topic": topic,
                                   "next_seq": next_seq, "saved_at": format_time(now)}))
        os.replace(tmp, self.path)


class RandomSource(Source):
    """``rate`` random numbers per second from one producer id, its ``seq`` continuing on restart.

    Args:
        rate: records per second (emitted in batches per 10 ms tick above 100/s).
        distribution, params: see :func:`make_draw`.
        producer: the producer id and Kafka key (default: this host's name).
        rng: the random generator (inject ``random.Random(seed)`` for repeatable values).
        bootstrap: Kafka to read the last ``seq`` from at start; None: do not look.
        state_dir: where the state file lives; None: no state file.
        start_seq: the lowest ``seq`` to start from (the resume points can only raise it).
        checkpoint_interval_s: how often to flush and save the state file while running.
        count, clock: see :class:`~input.base.Source`; ``sleep``/``monotonic`` pace it.
    """

    name = "random"
    topic = topics.RANDOM

    def __init__(self, rate: float = 20.0, distribution: str = "normal",
                 params: tuple[float, ...] = (), *, producer: str | None = None,
                 rng: random.Random | None = None, bootstrap: str | None = None,
                 state_dir: Path | None = None, start_seq: int = 0,
                 checkpoint_interval_s: float = 1.0, resume_timeout_s: float = 30.0,
                 count: int | None = None, clock: Clock = utc_now,
                 sleep: Callable[[float], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(count=count, clock=clock)
        self.rng = rng if rng is not None else random.Random()
        self.distribution = distribution
        self.draw = make_draw(distribution, params, self.rng)
        self.producer = producer or socket.gethostname()
        self.pacer = RatePacer(rate, sleep=sleep or self._sleep, monotonic=monotonic)
        self.bootstrap = bootstrap
        self.state = StateFile(state_dir, self.producer) if state_dir is not None else None
        self.start_seq = start_seq
        self.next_seq = start_seq
        self.checkpoint_interval_s = checkpoint_interval_s
        self.resume_timeout_s = resume_timeout_s
        self._monotonic = monotonic
        self._sink: Sink | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> RandomSource:
        """The source ``make run`` starts: RANDOM_* settings, resume from Kafka and DATA_DIR/state."""
        kwargs: dict[str, Any] = {
            "rate": settings.random_rate,
            "distribution": settings.random_distribution,
            "params": settings.random_params,
            "rng": random.Random(settings.random_seed),
            "bootstrap": settings.kafka_bootstrap_servers,
            "state_dir": settings.data_dir / "state",
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def _sleep(self, seconds: float) -> None:
        self.wait(seconds)  # wakes early when stopped

    def resume(self) -> int:
        """The ``seq`` to start from: past Kafka's last record of this producer and the state file."""
        in_kafka = (last_seq_in_kafka(self.bootstrap, self.topic.name, self.producer,
                                      self.resume_timeout_s)
                    if self.bootstrap is not None else None)
        in_state = self.state.load(self.topic.name) if self.state is not None else None
        next_seq = max(self.start_seq, 0 if in_kafka is None else in_kafka + 1, in_state or 0)
        log.info("random: producer %r resumes at seq %d on %s (last in Kafka: %s, state file: %s)",
                 self.producer, next_seq, self.topic.name, in_kafka, in_state)
        return next_seq

    def run(self, sink: Sink) -> Counters:
        """Resume the sequence, publish, and save the state after the final flush."""
        self.next_seq = self.resume()
        self._sink = sink
        try:
            counters = super().run(sink)  # raises (and saves nothing) if the loop or flush failed
            self._checkpoint(flush=False)  # the base loop has just flushed successfully
        finally:
            self._sink = None  # hold no client after the run (a live producer delays broker stops)
        return counters

    def _checkpoint(self, flush: bool) -> None:
        if self.state is None:
            return
        if flush and self._sink is not None:
            self._sink.flush()  # raises if a record failed: then no state is written
        self.state.save(self.topic.name, self.next_seq, self.clock())

    def records(self) -> Iterator[RandomNumber]:
        last_checkpoint = self._monotonic()
        while not self.stopping:
            due = self.pacer.wait()
            if self.stopping:
                return
            now = self.clock()
            for _ in range(due):
                seq = self.next_seq
                self.next_seq += 1  # before the yield: the base loop may end right after publishing
                yield RandomNumber(event_time=now, producer=self.producer, seq=seq,
                                   value=self.draw(), distribution=self.distribution)
            # Everything yielded so far has been handed to the sink.
            if self._monotonic() - last_checkpoint >= self.checkpoint_interval_s:
                self._checkpoint(flush=True)
                last_checkpoint = self._monotonic()


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module
    from input.base import KafkaSink

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "random_rate", "random_distribution",
                             "random_params", "random_seed", "data_dir", "log_level"])
    parser.add_argument("--producer-id", help="producer id and Kafka key (default: host name)")
    parser.add_argument("--count", type=int, help="stop after this many records")
    parser.add_argument("--no-state", action="store_true",
                        help="keep no state file (resume from Kafka alone)")
    args, settings = cli.start(parser, argv)
    overrides: dict[str, Any] = {"producer": args.producer_id, "count": args.count}
    if args.no_state:
        overrides["state_dir"] = None
    try:
        source = RandomSource.from_settings(settings, **overrides)
    except ValueError as e:
        parser.error(str(e))
    sink = KafkaSink(cli.broker(parser, settings))
    # Ctrl-C and SIGTERM stop the loop cleanly: the final flush runs and the state is saved.
    cli.on_stop(lambda _signum: source.stop())
    try:
        counters = source.run(sink)
    finally:
        sink.close()
    log.info("random: sent %d, rejected %d, next seq %d", counters.sent, counters.rejected,
             source.next_seq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
