"""Locust traffic: the case templates, the randomised cases, and a headless run against the ingest."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common import settings
from common.records import CaseReport, from_json
from input.ingest.app import create_app, ingest_of, serve
from input.ingest.sink import AckingKafkaSink
from input.ingest.validate import EXTRA_CHECKS, Route
from input.traffic import is_loopback_url, load_cases, make_case
from tests.kafka_topics import read_topic

ROOT = Path(__file__).resolve().parent.parent.parent
T0 = dt.datetime(2026, 11, 22, 6, 0, 1, 500_000, tzinfo=dt.UTC)


def test_the_case_list_is_plausible_and_every_case_is_valid() -> None:
    cases = load_cases()
    assert 40 <= len(cases) <= 80
    assert len({c["state"] for c in cases}) >= 30 and len({c["location"] for c in cases}) >= 40
    assert all(len(c["state"]) == 2 and c["state"].isupper() for c in cases)
    assert len({c["infection"] for c in cases}) >= 5
    rng = random.Random(5)
    for template in cases:
        record = from_json(CaseReport, make_case(template, rng, T0))
        assert EXTRA_CHECKS[CaseReport](record) is None
        assert (record.location, record.state, record.event_time) == (
            template["location"], template["state"], T0)


def test_a_case_is_the_template_with_a_fresh_id_jittered_age_and_now() -> None:
    template = {"name": "Ada", "location": "Boston", "state": "MA", "age": 36, "infection": "rsv"}
    case = make_case(template, random.Random(1), T0,
                     new_id=lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"))
    assert case == {"id": "12345678-1234-5678-1234-567812345678", "name": "Ada",
                    "location": "Boston", "state": "MA", "age": case["age"], "infection": "rsv",
                    "event_time": "2026-11-22T06:00:01.500Z"}
    rng = random.Random(2)
    ages = {make_case(template, rng, T0)["age"] for _ in range(500)}
    assert ages == set(range(31, 42))
    baby = {**template, "age": 1}
    assert min(make_case(baby, rng, T0)["age"] for _ in range(200)) == 0  # clamped, never negative
    assert len({make_case(template, rng, T0)["id"] for _ in range(100)}) == 100


def test_a_broken_case_list_is_refused_naming_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([{"name": "A", "location": "B", "state": "MA", "age": "9",
                                 "infection": "x"}]))
    with pytest.raises(ValueError, match="entry 0 field age must be a non-empty int"):
        load_cases(path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_cases(path)


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:5001", True),
    ("http://127.8.9.10", True),
    ("http://[::1]:5001", True),
    ("http://localhost:5001", True),
    ("http://10.0.0.7:5001", False),
    ("https://192.0.2.1", False),
    ("http://no-such-host.invalid", False),
    ("", False),
])
def test_loopback_hosts_are_recognised(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_importing_the_helpers_does_not_import_locust() -> None:
    code = "import sys, input.traffic; print('locust' in sys.modules, 'gevent' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr


def locust_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    return {**env, **extra}


def test_locust_refuses_a_host_that_is_not_loopback() -> None:
    # .invalid never resolves: even if the check were missing, no packet could leave.
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "input/traffic.py", "--headless",
         "-u", "1", "-r", "1", "-t", "2s", "--host", "http://no-such-host.invalid:5001"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=locust_env())
    assert result.returncode == 2
    assert "refusing to send traffic to 'http://no-such-host.invalid:5001'" in result.stderr


@pytest.fixture
def ingest_server(bootstrap: str, new_topic: Any) -> Iterator[tuple[Any, str, str]]:
    """The ingest on a free loopback port, publishing cases to a fresh topic."""
    topic, dead = new_topic(3), new_topic(1)
    app = create_app(settings.load(environ={}),
                     sink=AckingKafkaSink(bootstrap, dead_letter_topic=dead),
                     routes={"cases": Route(topic, CaseReport)})
    server = serve(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}", topic
    finally:
        server.shutdown()
        thread.join(10)
        ingest_of(app).close()


def test_headless_locust_requests_equal_accepted_equal_records_in_the_topic(
        bootstrap: str, ingest_server: tuple[Any, str, str], tmp_path: Path) -> None:
    app, url, topic = ingest_server
    stats_file = tmp_path / "locust"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "input/traffic.py", "--headless", "-u", "2",
         "-r", "2", "-t", "4s", "--stop-timeout", "10", "--host", url, "--only-summary",
         "--json-file", str(stats_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, env=locust_env(CASES_RATE="10"))
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(stats_file.with_suffix(".json").read_text())
    posts = [s for s in stats if s["name"] == "/ingest/cases" and s["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["num_failures"] == 0
    requests = posts[0]["num_requests"]
    assert 20 <= requests <= 100  # 2 users x 10/s x about 4 s
    ingest = ingest_of(app)
    assert (ingest.accepted, ingest.rejected, ingest.failed) == (requests, 0, 0)
    records = read_topic(bootstrap, topic)
    assert len(records) == requests
    cases = [from_json(CaseReport, r["value"]) for r in records]
    assert len({c.id for c in cases}) == requests  # a fresh id per post
    templates = {(c["name"], c["location"], c["state"]) for c in load_cases()}
    assert all((c.name, c.location, c.state) in templates for c in cases)
