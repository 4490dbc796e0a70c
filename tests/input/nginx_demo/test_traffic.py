"""The NGINX demo's requests and their driver (input/nginx_demo/traffic.py)."""

from __future__ import annotations

import pytest

from input.nginx_demo.traffic import TrafficDriver, client_hello, request_bytes


def test_requests_and_traffic_bounds() -> None:
    assert request_bytes("GET", "/x", headers=[("User-Agent", b"a\tb")]) == (
        b"GET /x HTTP/1.1\r\nHost: shop.local\r\nUser-Agent: a\tb\r\nConnection: close\r\n\r\n")
    assert request_bytes("GET", "/", version="") == b"GET /\r\n\r\n"
    hello = client_hello()
    assert hello[:2] == b"\x16\x03" and len(hello) > 100
    with pytest.raises(ValueError, match="rate"):
        TrafficDriver(1, iter([]), rate=1000)
