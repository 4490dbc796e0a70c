"""Run the kit's live sources in one process: ``python -m input [--only vmstat,random]``.

Each source runs in its own thread with its own Kafka sink and publishes a
``source_progress`` message (sent, rejected, rate) to the ``health`` topic
every few seconds, which the index page shows. Ctrl-C or SIGTERM stops every
source, flushes what was published, and logs the final counts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from buffer import topics
from buffer.kafka import JsonPublisher
from common import cli
from common import settings as settings_module
from common.messages import SourceProgress
from common.records import format_time, utc_now
from common.settings import Settings
from input.base import KafkaSink, Source

log = logging.getLogger("input")

HEALTH_INTERVAL_S = 2.0


def _vmstat(settings: Settings) -> Source:
    from input.vmstat import VmstatSource

    return VmstatSource(settings.vmstat_interval_s)


def _random(settings: Settings) -> Source:
    from input.random_numbers import RandomSource

    return RandomSource.from_settings(settings)  # resumes its sequence from Kafka and DATA_DIR


def _census(settings: Settings) -> Source:
    from input.census import CensusSource

    return CensusSource(speed=settings.census_replay_speed)  # one pass, then its thread ends


def _nginx(settings: Settings) -> Source:
    from input.nginx import from_settings

    return from_settings(settings)  # NGINX_LOG_PATH set: follow it; unset: the live demo


#: Source name -> factory. `make run` starts them all.
FACTORIES: dict[str, Callable[[Settings], Source]] = {
    "vmstat": _vmstat,
    "random": _random,
    "census": _census,
    "nginx": _nginx,
}


def report_health(sources: list[Source], publisher: JsonPublisher, stop: threading.Event) -> None:
    """Publish each source's counters every HEALTH_INTERVAL_S until ``stop``."""
    last = {s.name: (time.monotonic(), 0) for s in sources}
    while not stop.wait(HEALTH_INTERVAL_S):
        for source in sources:
            counts = source.counters.snapshot()
            now = time.monotonic()
            then, seen = last[source.name]
            total = counts["sent"] + counts["rejected"]
            rate = (total - seen) / max(now - then, 1e-6)
            last[source.name] = (now, total)
            publisher.publish(topics.HEALTH.name, SourceProgress(
                component="input", source=source.name, topic=source.topic.name,
                sent=counts["sent"], rejected=counts["rejected"], rate=round(rate, 2),
                time=format_time(utc_now())), key=source.name)


def main(argv: list[str] | None = None) -> int:
    parser = settings_module.argument_parser(__doc__ or "")
    parser.add_argument("--only", help=f"comma-separated sources to run (default all: {', '.join(FACTORIES)})")
    args, settings = cli.start(parser, argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(FACTORIES)
    unknown = [n for n in names if n not in FACTORIES]
    if unknown:
        parser.error(f"unknown sources {unknown}; known: {', '.join(FACTORIES)}")
    bootstrap = cli.broker(parser, settings)
    sources = [FACTORIES[n](settings) for n in names]
    stop = threading.Event()

    def on_stop(_signum: int) -> None:
        stop.set()
        for s in sources:
            s.stop()

    cli.on_stop(on_stop)
    failures: list[str] = []

    def run(source: Source) -> None:
        sink = KafkaSink(bootstrap)
        try:
            source.run(sink)
        except Exception:
            log.exception("source %s failed", source.name)
            failures.append(source.name)
            stop.set()
        finally:
            sink.close()

    threads = [threading.Thread(target=run, args=(s,), name=s.name, daemon=True) for s in sources]
    for t in threads:
        t.start()
    log.info("sources running: %s", ", ".join(names))
    health = JsonPublisher(bootstrap)
    reporter = threading.Thread(target=report_health, args=(sources, health, stop), daemon=True)
    reporter.start()
    while not stop.is_set() and any(t.is_alive() for t in threads):
        stop.wait(0.5)
    for s in sources:
        s.stop()
    for t in threads:
        t.join(10)
    stop.set()
    health.close()
    for s in sources:
        log.info("%s: %s", s.name, s.counters.snapshot())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
