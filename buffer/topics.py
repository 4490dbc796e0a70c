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
