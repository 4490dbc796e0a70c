"""Locust traffic for the HTTP ingest: users posting randomised case reports to ``/ingest/cases``.

Run (the ingest must be up: ``python -m input.ingest``)::

    locust -f input/traffic.py --headless -u 2 -r 1 -t 10s --host http://127.0.0.1:5001
    CASES_RATE=20 locust -f input/traffic.py --headless -u 5 -r 5 -t 1m --stop-timeout 5
    locust -f input/traffic.py --host http://127.0.0.1:5001     # Locust's web UI on :8089

Users, spawn rate, run time and host are Locust's own options (``--host``
defaults to ``http://127.0.0.1:INGEST_PORT``). Each user posts ``CASES_RATE``
cases per second (``constant_throughput``). A case is a random entry of
``input/traffic.json`` with a fresh uuid ``id``, its age moved by up to 5
years, and ``event_time`` = now in UTC (ISO 8601, ``Z``). Anything but a 202
counts as a failure in Locust's statistics (and makes Locust exit with 1).
Use ``--stop-timeout`` so that requests in flight at the end are counted.

**Loopback only by default**: Locust refuses a host that is not a loopback
address (127.0.0.0/8, ::1, or a name resolving only to those) unless
``--allow-remote`` (env ``LOCUST_ALLOW_REMOTE=true``) is given.

The helpers (:func:`load_cases`, :func:`make_case`, :func:`is_loopback_url`)
import without Locust: Locust itself, which monkey-patches the standard
library with gevent on import, is imported only when Locust loads this file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.records import format_time, utc_now

__all__ = ["CASES_FILE", "CASES_PATH", "FIELDS", "is_loopback_url", "load_cases", "make_case"]

CASES_FILE = Path(__file__).resolve().parent / "traffic.json"
#: Where the cases are posted.
CASES_PATH = "/ingest/cases"
#: The fields of an entry of traffic.json, and their types.
FIELDS: dict[str, type] = {"name": str, "location": str, "state": str, "age": int, "infection": str}
#: The age of a posted case is the entry's age plus or minus up to this many years.
AGE_JITTER = 5


def load_cases(path: Path = CASES_FILE) -> list[dict[str, Any]]:
    """The case templates of ``path``: a non-empty JSON list of objects with :data:`FIELDS`.

    Raises:
        ValueError: the file is not such a list; the message names the entry and field.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON list of cases")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {index} is not an object")
        for name, kind in FIELDS.items():
            value = entry.get(name)
            if not isinstance(value, kind) or isinstance(value, bool) or value == "":
                raise ValueError(f"{path}: entry {index} field {name} must be a non-empty "
                                 f"{kind.__name__}, got {value!r}")
    return data


def make_case(template: dict[str, Any], rng: random.Random, now: dt.datetime,
              new_id: Callable[[], uuid.UUID] = uuid.uuid4) -> dict[str, Any]:
    """A case report to post: ``template`` with a fresh id, a jittered age and ``event_time`` now."""
    age = int(template["age"]) + rng.randint(-AGE_JITTER, AGE_JITTER)
    return {
        "id": str(new_id()),
        "name": template["name"],
        "location": template["location"],
        "state": template["state"],
        "age": min(110, max(0, age)),
        "infection": template["infection"],
        "event_time": format_time(now),
    }


def is_loopback_url(url: str) -> bool:
    """True if ``url``'s host is a loopback address or a name that resolves only to those."""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


if __name__ != "input.traffic":  # loaded by Locust as a locustfile (module name "traffic")
    import logging

    from locust import HttpUser, constant_throughput, events, task
    from locust.env import Environment

    from common import settings as settings_module

    _settings = settings_module.load()
    _log = logging.getLogger("traffic")

    @events.init_command_line_parser.add_listener
    def _add_options(parser: Any) -> None:
        parser.add_argument("--allow-remote", action="store_true", default=False,
                            env_var="LOCUST_ALLOW_REMOTE",
                            help="allow a --host that is not a loopback address")

    @events.init.add_listener
    def _refuse_remote_hosts(environment: Environment, **_kwargs: Any) -> None:
        host = environment.host or CaseReporter.host or ""
        options = environment.parsed_options
        allowed = bool(getattr(options, "allow_remote", False)) if options is not None else False
        if not allowed and not is_loopback_url(host):
            _log.error("refusing to send traffic to %r: not a loopback address "
                       "(pass --allow-remote to allow it)", host)
            raise SystemExit(2)
        _log.info("posting cases to %s%s at %s/s per user", host, CASES_PATH, _settings.cases_rate)

    class CaseReporter(HttpUser):
        """Posts a randomised case from traffic.json to ``/ingest/cases``, CASES_RATE times a second."""

        host = f"http://127.0.0.1:{_settings.ingest_port}"
        wait_time = constant_throughput(_settings.cases_rate)
        cases = load_cases()

        def on_start(self) -> None:
            self.rng = random.Random()

        @task
        def post_case(self) -> None:
            case = make_case(self.rng.choice(self.cases), self.rng, utc_now())
            with self.client.post(CASES_PATH, json=case, name=CASES_PATH,
                                  catch_response=True) as response:
                if response.status_code == 202:
                    response.success()
                else:
                    response.failure(f"{response.status_code}: {response.text[:200]}")
