"""``python -m buffer [--kafka-bootstrap-servers HOST:PORT] [--list]``: create the missing topics.

The compose stack's one-shot ``topics`` service runs it; it waits for the broker, creates
every topic of ``queue/topics.toml`` that does not exist yet, logs what it created and exits
0. ``--list`` prints the definitions (name, partitions, description) and exits.
"""

from __future__ import annotations

import logging
import sys

from buffer import kafka, topics
from common import cli
from common import settings as settings_module

log = logging.getLogger("buffer")


def main(argv: list[str] | None = None) -> int:
    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "broker_ready_timeout_s", "log_level",
                             "kafka_replication_factor", "kafka_min_insync_replicas"])
    parser.add_argument("--list", action="store_true", help="print the definitions and exit")
    args, settings = cli.start(parser, argv)
    if args.list:
        for t in topics.ALL:
            print(f"{t.name}\t{t.partitions}\t{t.description}")  # noqa: T201 - the command's output
        return 0
    bootstrap = cli.broker(parser, settings, settings.broker_ready_timeout_s)
    # Replicated as KAFKA_REPLICATION_FACTOR and KAFKA_MIN_INSYNC_REPLICAS say (3 and 2 with
    # docker-compose.cluster.yml's three brokers; 1 on one broker).
    created = kafka.create_topics(bootstrap, topics.ALL,
                                  replication_factor=settings.kafka_replication_factor,
                                  min_insync_replicas=settings.kafka_min_insync_replicas)
    log.info("topics created: %s (the others existed)", ", ".join(created) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
