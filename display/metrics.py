"""``/metrics`` in Prometheus text format, read from the hub at scrape time.

One registry per app (no global state): a collector turns :meth:`Hub.status`
into metric families, so what Prometheus sees is what the index page shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["StatusCollector", "metrics_text"]


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        demo_rate = GaugeMetricFamily("streamkit_demo_rows_per_second",
                                      "Rows or records pushed to a demo per second (10 s)",
                                      labels=["demo"])
        clients = GaugeMetricFamily("streamkit_socketio_clients",
                                    "Socket.IO clients connected to a demo", labels=["demo"])
        latency = GaugeMetricFamily("streamkit_stage_latency_seconds",
                                    "Latency of a pipeline stage over the last minute",
                                    labels=["demo", "stage", "quantile"])
        for d in status["demos"]:
            demo_rate.add_metric([d["route"]], d["rate"])
            clients.add_metric([d["route"]], d["clients"])
            for stage, figures in (d.get("latency") or {}).items():
                latency.add_metric([d["route"], stage, "0.5"], figures["p50"])
                latency.add_metric([d["route"], stage, "0.95"], figures["p95"])
        yield from (demo_rate, clients, latency)

        lag = GaugeMetricFamily("streamkit_query_lag_records",
                                "Records in Kafka a query has not read yet", labels=["query"])
        rate = GaugeMetricFamily("streamkit_query_input_rows_per_second",
                                 "Input rate of a query's last batch", labels=["query"])
        batch = GaugeMetricFamily("streamkit_query_batch_seconds",
                                  "Duration of a query's last micro-batch", labels=["query"])
        rows_in = CounterMetricFamily("streamkit_query_input_rows",
                                      "Rows a query read since its application started",
                                      labels=["query"])
        late = CounterMetricFamily("streamkit_query_late_rows",
                                   "Rows dropped because they arrived after the watermark",
                                   labels=["query"])
        malformed = CounterMetricFamily("streamkit_query_malformed_rows",
                                        "Rows that did not parse as their record type",
                                        labels=["query"])
        for name, q in sorted(status["queries"].items()):
            if q.get("lag") is not None:
                lag.add_metric([name], q["lag"])
            rate.add_metric([name], q.get("input_rate") or 0.0)
            if q.get("batch_ms") is not None:
                batch.add_metric([name], q["batch_ms"] / 1000)
            totals = q.get("totals") or {}
            rows_in.add_metric([name], totals.get("input_rows", 0))
            late.add_metric([name], totals.get("late_rows", 0))
            malformed.add_metric([name], totals.get("malformed", 0))
        yield from (lag, rate, batch, rows_in, late, malformed)

        sent = CounterMetricFamily("streamkit_source_sent_records",
                                   "Records a source published", labels=["source"])
        rejected = CounterMetricFamily("streamkit_source_rejected_records",
                                       "Inputs a source rejected (dead letters)", labels=["source"])
        for name, s in sorted(status["sources"].items()):
            sent.add_metric([name], s.get("sent") or 0)
            rejected.add_metric([name], s.get("rejected") or 0)
        yield from (sent, rejected)

        unaccounted = GaugeMetricFamily(
            "streamkit_unaccounted_records",
            "Read minus (stored + late + malformed) at the same batch; 0 when nothing is lost",
            labels=["stream", "store"])
        unread = GaugeMetricFamily(
            "streamkit_not_read_yet_records",
            "Published by the sources minus read by the query (in flight)", labels=["stream", "store"])
        for row in status.get("accounting") or []:
            if row.get("unaccounted") is not None:
                unaccounted.add_metric([row["stream"], row["store"]], row["unaccounted"])
            if row.get("not_read_yet") is not None:
                unread.add_metric([row["stream"], row["store"]], row["not_read_yet"])
        yield unaccounted
        yield unread
        restarts = CounterMetricFamily("streamkit_stack_stage_restarts",
                                       "Times the stack's supervisor restarted a stage",
                                       labels=["stage"])
        up = GaugeMetricFamily("streamkit_stack_stage_up",
                               "1 while a stage of the stack runs, 0 while it waits for a restart",
                               labels=["stage"])
        for stage in status.get("stages") or []:
            restarts.add_metric([str(stage.get("name"))], int(stage.get("restarts") or 0))
            up.add_metric([str(stage.get("name"))], 1 if stage.get("state") == "running" else 0)
        yield restarts
        yield up
        kafka_up = GaugeMetricFamily("streamkit_kafka_reachable",
                                     "1 while the display server's Kafka feed reaches the broker")
        kafka_up.add_metric([], 0 if status.get("feed_error") else 1)
        yield kafka_up
        dead = CounterMetricFamily("streamkit_dead_letters",
                                   "Messages on the dead-letters topic since the server started")
        dead.add_metric([], status["dead_letters_total"])
        yield dead
        total_clients = GaugeMetricFamily("streamkit_socketio_clients_total",
                                          "Socket.IO clients connected")
        total_clients.add_metric([], status["clients"])
        yield total_clients


def metrics_text(status: Callable[[], dict[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return generate_latest(registry)
