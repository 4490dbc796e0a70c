"""The kit's topics, read from ``queue/topics.toml`` (the one place they are defined).

Code refers to a topic by its constant here (``topics.VMSTAT.name``); the
constants fail at import if the definition file lacks a role the code needs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ALL", "DEFINITION_FILE", "Topic", "by_name"]

DEFINITION_FILE = Path(__file__).resolve().parent.parent / "queue" / "topics.toml"


@dataclass(frozen=True)
class Topic:
    role: str
    name: str
    partitions: int
    description: str = ""
    retention_hours: float = 24.0
    retention_mib: int = 256

    def config(self) -> dict[str, str]:
        """The topic-level Kafka configs the kit creates the topic with.

        Segments are a quarter of the size limit (at most 64 MiB): Kafka deletes whole
        segments, never the one being written, so a partition stays within 1.25x its limit.
        """
        size = self.retention_mib * 1024 * 1024
        return {
            "retention.ms": str(int(self.retention_hours * 3_600_000)),
            "retention.bytes": str(size),
            "segment.bytes": str(max(1024 * 1024, min(64 * 1024 * 1024, size // 4))),
        }


def _load(path: Path) -> dict[str, Topic]:
    with path.open("rb") as f:
        raw = tomllib.load(f)
    topics = {}
    for role, entry in raw.items():
        partitions = int(entry["partitions"])
        if partitions < 1:
            raise ValueError(f"{path}: topic {role} needs at least one partition")
        topics[role] = Topic(role, str(entry["name"]), partitions, str(entry.get("description", "")),
                             float(entry.get("retention_hours", 24)),
                             int(entry.get("retention_mib", 256)))
    names = [t.name for t in topics.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two roles share a topic name: {sorted(names)}")
    return topics


_TOPICS = _load(DEFINITION_FILE)

VMSTAT = _TOPICS["vmstat"]
NGINX = _TOPICS["nginx"]
RANDOM = _TOPICS["random"]
CENSUS = _TOPICS["census"]
CASES = _TOPICS["cases"]
RESULTS = _TOPICS["results"]
HEALTH = _TOPICS["health"]
DEAD_LETTERS = _TOPICS["dead_letters"]

ALL: tuple[Topic, ...] = tuple(_TOPICS.values())


def by_name(name: str) -> Topic:
    """The topic called ``name`` in Kafka; KeyError naming the known ones otherwise."""
    for topic in ALL:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {', '.join(t.name for t in ALL)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m common.topics [--bootstrap HOST:PORT]``: create every topic that is missing.

    Used by the compose stack's one-shot ``topics`` service; prints what it created.
    """
    import argparse
    import logging

    from common import kafka
    from common import settings as settings_module
    from common.logs import setup_logging

    parser = settings_module.argument_parser(
        main.__doc__ or "", only=["kafka_bootstrap_servers", "broker_ready_timeout_s", "log_level"])
    parser.add_argument("--list", action="store_true", help="print the definitions and exit")
    args: argparse.Namespace = parser.parse_args(argv)
    settings = settings_module.from_args(args)
    setup_logging(settings.log_level)
    log = logging.getLogger("common.topics")
    if args.list:
        for t in ALL:
            print(f"{t.name}\t{t.partitions}\t{t.description}")  # noqa: T201 - the command's output
        return 0
    if settings.kafka_bootstrap_servers is None:
        parser.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
    kafka.wait_until_ready(settings.kafka_bootstrap_servers, settings.broker_ready_timeout_s)
    created = kafka.create_topics(settings.kafka_bootstrap_servers, ALL)
    log.info("topics created: %s (the others existed)", ", ".join(created) or "none")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
