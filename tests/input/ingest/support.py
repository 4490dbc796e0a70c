"""What the ingest's tests share: an app on a list sink, a case, a POST."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from common import settings
from input.base import ListSink
from input.ingest.app import create_app

T0 = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.UTC)
CASE = {"id": "c-1", "name": "Ada", "location": "Boston", "state": "MA", "age": 36,
        "infection": "influenza", "event_time": "2026-11-22T05:59:58.250Z"}


def make_app(sink: Any = None, max_body: int = 1024, **kw: Any) -> tuple[Flask, Any]:
    sink = sink if sink is not None else ListSink()
    config = settings.load(environ={"INGEST_MAX_BODY_BYTES": str(max_body)})
    return create_app(config, sink=sink, clock=lambda: T0, **kw), sink


def post(client: FlaskClient, body: Any, path: str = "/ingest/cases",
         content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type)
