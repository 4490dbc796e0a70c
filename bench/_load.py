"""Load generator for the benchmarks: host-metric records to a topic at a fixed rate.

Two modes, both writing the records the kit's host-metrics source writes
(``VmstatSample`` JSON with ``produced_at``, keyed by host):

* ``kit``: the kit's own producer path, ``input.base.Source`` publishing through
  ``KafkaSink`` (which stamps ``produced_at``); about 38,000 records/s at most on
  one core, used for the latency runs (1,000/s);
* ``fast``: the same bytes built from pre-encoded templates (only the two times
  change), for the throughput steps, so that the generator takes as little of the
  2 cores as it can (about a sixth of a core at 80,000/s).

Run by the benchmarks (``bench/_loadgen.Load``), or alone::

    .venv/bin/python bench/_load.py --bootstrap 127.0.0.1:9092 --rate 1000 --seconds 10

It prints a JSON line every ``--report-every`` seconds (``{"elapsed", "sent", "acked", "failed"}``)
and a last one with ``"done": true``; ``--times-out FILE`` saves every record's
``produced_at`` (kit mode) as float seconds, one per line, for per-event latency.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from buffer import kafka, topics
from common.records import VmstatSample, format_time, utc_now
from input.base import KafkaSink, Source

HOST_PREFIX = "bench-"


def sample(host: str, rng: random.Random, event_time: dt.datetime) -> VmstatSample:
    """A plausible host-metrics sample (values vary; the benchmarks count, not chart)."""
    user = rng.uniform(0, 60)
    system = rng.uniform(0, 20)
    return VmstatSample(
        event_time=event_time, host=host,
        cpu_user=round(user, 1), cpu_system=round(system, 1),
        cpu_idle=round(100 - user - system, 1), cpu_iowait=round(rng.uniform(0, 2), 1),
        mem_used=float(rng.randrange(2_000_000_000, 8_000_000_000)),
        mem_available=float(rng.randrange(8_000_000_000, 16_000_000_000)),
        mem_cached=float(rng.randrange(1_000_000_000, 4_000_000_000)), swap_used=0.0,
        disk_read_bps=round(rng.uniform(0, 5e6), 1), disk_write_bps=round(rng.uniform(0, 5e6), 1),
        net_in_bps=round(rng.uniform(0, 1e6), 1), net_out_bps=round(rng.uniform(0, 1e6), 1),
        load_1m=round(rng.uniform(0, 4), 2), load_5m=round(rng.uniform(0, 4), 2),
        load_15m=round(rng.uniform(0, 4), 2),
    )


class Paced(Source):
    """Host-metric samples at ``rate`` per second, in 10 ms bursts, for ``seconds``."""

    name = "bench-load"
    topic = topics.VMSTAT

    def __init__(self, rate: float, seconds: float, hosts: list[str], seed: int = 1) -> None:
        super().__init__()
        self.rate = rate
        self.seconds = seconds
        self.hosts = hosts
        self.rng = random.Random(seed)

    def records(self) -> Iterator[VmstatSample]:
        started = time.monotonic()
        made = 0
        while not self.stopping:
            elapsed = time.monotonic() - started
            if elapsed >= self.seconds:
                return
            due = int(self.rate * elapsed) - made
            if due <= 0:
                self.wait(0.002)
                continue
            now = utc_now()
            for _ in range(min(due, 10_000)):
                yield sample(self.hosts[made % len(self.hosts)], self.rng, now)
                made += 1


def host_names(args: argparse.Namespace) -> list[str]:
    return [f"{args.host_prefix}{i:02d}" for i in range(args.hosts)]


def run_kit(args: argparse.Namespace, report: Report) -> None:
    times: list[float] = []
    keep = bool(args.times_out)  # not kept otherwise: a long run (bench/soak.py) would grow

    def clock() -> dt.datetime:
        now = utc_now()
        if keep:
            times.append(now.timestamp())
        return now

    sink = KafkaSink(args.bootstrap, clock=clock)
    source = Paced(args.rate, args.seconds, host_names(args))
    report.source = source
    report.publisher = sink._publisher
    if report.stopping.is_set():
        source.stop()
    try:
        source.run(sink)
    finally:
        # Saved even when the broker did not acknowledge everything: the latency
        # benchmark then reports what arrived, and the records that did not as uncovered.
        if args.times_out:
            Path(args.times_out).write_text("".join(f"{t:.6f}\n" for t in times))
        sink.close()


def run_fast(args: argparse.Namespace, report: Report) -> None:
    rng = random.Random(1)
    hosts = host_names(args)
    marker = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    mark = format_time(marker).encode()
    # Pre-encoded records: 16 variants per host; only event_time and produced_at change.
    variants: list[tuple[bytes, list[bytes]]] = []
    for i in range(len(hosts) * 16):
        host = hosts[i % len(hosts)]
        value = sample(host, rng, marker).to_json() | {"produced_at": format_time(marker)}
        variants.append((host.encode(), kafka.dumps(value).split(mark)))
    config: dict[str, object] = {"delivery.report.only.error": True, "on_delivery": report.on_error}
    if args.linger_ms is not None:
        config["linger.ms"] = args.linger_ms
    producer = kafka.producer(args.bootstrap, **config)
    report.producer = producer
    started = time.monotonic()
    made = 0
    while not report.stopping.is_set():
        elapsed = time.monotonic() - started
        if elapsed >= args.seconds:
            break
        due = int(args.rate * elapsed) - made
        if due <= 0:
            producer.poll(0.001)
            continue
        stamp = format_time(utc_now()).encode()
        for _ in range(min(due, 5_000)):
            key, parts = variants[made % len(variants)]
            while True:
                try:
                    producer.produce(args.topic, stamp.join(parts), key)
                    break
                except BufferError:
                    producer.poll(0.01)
            made += 1
        report.sent = made
        producer.poll(0)
    report.sent = made
    left = producer.flush(60)
    report.unacked = left


class Report:
    """Counts for the progress lines, from whichever mode runs."""

    def __init__(self) -> None:
        self.source: Source | None = None
        self.publisher: kafka.JsonPublisher | None = None
        self.producer: object | None = None
        self.sent = 0
        self.failed = 0
        self.unacked = 0
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        if self.source is not None:
            self.source.stop()

    def on_error(self, err: object, _msg: object) -> None:
        if err is not None:
            self.failed += 1

    def counts(self) -> dict[str, int]:
        if self.source is not None and self.publisher is not None:
            sent = self.source.counters.sent
            return {"sent": sent, "acked": self.publisher.delivered,
                    "failed": self.publisher.failed}
        queued = len(self.producer) if self.producer is not None else 0  # type: ignore[arg-type]
        return {"sent": self.sent, "acked": self.sent - queued - self.failed,
                "failed": self.failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default=topics.VMSTAT.name)
    parser.add_argument("--rate", type=float, required=True, help="records per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--hosts", type=int, default=24, help="distinct hosts (Kafka keys)")
    parser.add_argument("--host-prefix", default=HOST_PREFIX)
    parser.add_argument("--mode", choices=("kit", "fast"), default="kit")
    parser.add_argument("--report-every", type=float, default=0.25, help="seconds between lines")
    parser.add_argument("--linger-ms", type=float, help="producer linger.ms (default: the kit's)")
    parser.add_argument("--times-out", help="file for every record's produce time (kit mode)")
    args = parser.parse_args()
    if args.mode == "kit" and args.topic != topics.VMSTAT.name:
        parser.error("kit mode publishes to the vmstat topic")
    report = Report()
    signal.signal(signal.SIGTERM, lambda *_: report.stop())
    worker = threading.Thread(target=run_kit if args.mode == "kit" else run_fast,
                              args=(args, report), daemon=True)
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        worker.join(args.report_every)
        print(json.dumps({"elapsed": round(time.monotonic() - started, 2), **report.counts()}),
              flush=True)
    counts = report.counts()
    if report.unacked:
        counts["acked"] = counts["sent"] - report.unacked - counts["failed"]
    print(json.dumps({"done": True, "elapsed": round(time.monotonic() - started, 2), **counts,
                      "cpu_s": round(time.process_time(), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
