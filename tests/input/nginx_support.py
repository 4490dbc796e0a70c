"""Shared by the NGINX source's tests: the shipped recording, log writing, Kafka checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from input.nginx import SHIPPED_RECORDING
from input.nginx_demo.site import find_nginx
from tests.kafka_topics import read_topic

RECORDED = SHIPPED_RECORDING.read_bytes().splitlines()
SERVICES = "/api/=api,/static/=static,/auth/=auth,/=web"
NGINX = find_nginx()
needs_nginx = pytest.mark.skipif(NGINX is None, reason="no nginx binary (apt-get install nginx-light)")


def write(path: Path, *lines: bytes, end: bytes = b"\n") -> None:
    with path.open("ab") as f:
        f.write(b"".join(line + end for line in lines))




def canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True)


def dead_letters_with(bootstrap: str, marker: str) -> list[dict[str, Any]]:
    values = [r["value"] for r in read_topic(bootstrap, "dead-letters")]
    return [v for v in values if marker in v.get("raw", "")]


def check_kafka(bootstrap: str, topic: str, marker: str, lines_in: int, sent: int,
                rejected: int) -> list[dict[str, Any]]:
    published = [r["value"] for r in read_topic(bootstrap, topic)]
    dead = dead_letters_with(bootstrap, marker)
    assert lines_in == sent + rejected
    assert (len(published), len(dead)) == (sent, rejected)
    assert all(d["source"] == "nginx" and d["reason"] for d in dead)
    return published


def mixed_log(path: Path, marker: str) -> int:
    """The recording with three bad lines carrying ``marker``; returns the number of lines."""
    bad = [f"garbage {marker} {i}".encode() for i in range(3)]
    write(path, *RECORDED[:500], bad[0], *RECORDED[500:], bad[1], bad[2])
    return len(RECORDED) + 3
