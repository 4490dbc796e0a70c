"""Benchmark: what Kafka's replication costs a producer on ``--cluster``'s three brokers.

Starts the three KRaft brokers of ``python -m stack --cluster`` (:mod:`stack.cluster`, on
CLUSTER_HOSTS, free ports) and, for replication factor 1 and 3 (``min.insync.replicas`` 1
and 2) in turn, a fresh topic of 3 partitions into which one confluent-kafka producer with the
kit's settings (``acks=all``, idempotent, lz4, ``linger.ms`` 20) sends:

* ``--records`` small records as fast as it can (records/s until the last is acknowledged);
* then 1,000 records/s for 10 s, each timed from ``produce`` to its acknowledgement.

Each pair runs ``--repeat`` times (the first warms the JVMs up). Not part of ``make bench``:
the cluster takes about 1.5 GiB and a minute to start.

Run: ``.venv/bin/python bench/cluster_replication.py [--records 200000] [--repeat 2]``.
Prints a line per run; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import NewTopic

from buffer import kafka
from common.records import RandomNumber
from common.settings import load
from common.stats import percentile
from stack.cluster import Cluster
from stack.supervisor import Supervisor


def run_once(bootstrap: str, replicas: int, min_isr: int, records: int) -> dict[str, float]:
    name = f"bench-rf{replicas}-{time.monotonic_ns()}"
    admin = kafka.admin(bootstrap)  # kept: a client destroyed early fails its futures
    futures = admin.create_topics(
        [NewTopic(name, 3, replicas, config={"min.insync.replicas": str(min_isr)})])
    futures[name].result(30)
    producer = kafka.producer(bootstrap)
    value = RandomNumber(event_time=dt.datetime.now(dt.UTC), producer="p", seq=1,
                         value=1.0).encode()
    started = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(name, value, key=str(i % 6).encode())
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.01)
    producer.flush(60)
    rate = records / (time.perf_counter() - started)
    waits: list[float] = []

    def timed(sent: float) -> Callable[[Any, Any], None]:
        return lambda _err, _msg: waits.append(time.perf_counter() - sent)

    began = time.perf_counter()
    for i in range(10_000):
        due = began + i / 1000
        time.sleep(max(0.0, due - time.perf_counter()))  # pacing the sends, not waiting on them
        producer.produce(name, value, key=str(i % 6).encode(),
                         on_delivery=timed(time.perf_counter()))
        producer.poll(0)
    producer.flush(30)

    def pct(q: float) -> float:
        return round(percentile(waits, q) * 1000, 1)

    return {"replicas": replicas, "min_insync": min_isr, "records_per_s": round(rate),
            "ack_p50_ms": pct(50), "ack_p95_ms": pct(95), "ack_p99_ms": pct(99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        settings = load(environ={"DATA_DIR": tmp, "BROKER_PORT": "0", "CASSANDRA_PORT": "0",
                                 "SPARK_MASTER_PORT": "0"})
        supervisor = Supervisor()
        cluster = Cluster(settings, supervisor)
        results = []
        try:
            cluster.start_kafka()
            for _ in range(args.repeat):
                for replicas, min_isr in ((1, 1), (3, 2)):
                    result = run_once(cluster.bootstrap, replicas, min_isr, args.records)
                    results.append(result)
                    print(f"replication {replicas}, min.insync.replicas {min_isr}: "
                          f"{result['records_per_s']:,} records/s; acknowledgement at 1,000/s "
                          f"p50 {result['ack_p50_ms']} ms, p95 {result['ack_p95_ms']} ms, "
                          f"p99 {result['ack_p99_ms']} ms", flush=True)
        finally:
            supervisor.stop_all()
    print(json.dumps({"runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
