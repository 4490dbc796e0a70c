"""The NGINX demo's upstream servers (input/nginx_demo/upstreams.py): they answer, then stop."""

from __future__ import annotations

import json
import random
import socket

import pytest

from input.nginx_demo.traffic import request_bytes
from input.nginx_demo.upstreams import BACKENDS, Upstreams


def answer(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request_bytes("GET", path, host="127.0.0.1"))
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_each_upstream_answers_json_and_stops() -> None:
    upstreams = Upstreams()
    try:
        ports = upstreams.start(random.Random(1))
        assert sorted(ports) == sorted(spec.name for spec in BACKENDS)
        head, _, body = answer(ports["api_b"], "/api/items").partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        assert json.loads(body) == {"service": "api_b", "path": "/api/items", "ok": True}
    finally:
        upstreams.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ports["api_b"]), 1):
        pass
    upstreams.stop()  # idempotent
