"""``python -m buffer [--kafka-bootstrap-servers HOST:PORT] [--list]``: create the missing topics.

The compose stack's one-shot ``topics`` service runs it; it waits for the broker, creates
every topic of ``queue/topics.toml`` that does not exist yet, logs what it created and exits
0. ``--list`` prints the definitions (name, partitions, description) and exits.
"""

from __future__ import annotations

import argparse
import logging
import sys

from buffer import kafka, topics
from common import settings as settings_module
from common.logs import setup_logging

log = logging.getLogger("buffer")


def main(argv: list[str] | None = None) -> int:
    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "broker_ready_timeout_s", "log_level"])
    parser.add_argument("--list", action="store_true", help="print the definitions and exit")
    args: argparse.Namespace = parser.parse_args(argv)
    settings = settings_module.from_args(args)
    setup_logging(settings.log_level)
    if args.list:
        for t in topics.ALL:
            print(f"{t.name}\t{t.partitions}\t{t.description}")  # noqa: T201 - the command's output
        return 0
    if settings.kafka_bootstrap_servers is None:
        parser.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
    kafka.wait_until_ready(settings.kafka_bootstrap_servers, settings.broker_ready_timeout_s)
    created = kafka.create_topics(settings.kafka_bootstrap_servers, topics.ALL)
    log.info("topics created: %s (the others existed)", ", ".join(created) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
