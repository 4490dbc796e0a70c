"""The NGINX demo's traffic: the requests, and a driver that sends them at a bounded rate.

:func:`mixed_requests` is an endless weighted mix of the site's requests (pages,
static files, the API, auth, slow reports, a dead legacy app, missing paths),
some of them not HTTP (raw garbage, a real TLS ClientHello), which nginx answers
400. :class:`TrafficDriver` sends them from a few threads, a few per second by
default and at most :data:`MAX_RATE`, each from one of the loopback addresses
:data:`CLIENTS`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["CLIENTS", "MAX_RATE", "TrafficDriver", "client_hello", "mixed_requests",
           "request_bytes", "send"]

log = logging.getLogger(__name__)

MAX_RATE = 200.0


def request_bytes(method: str, path: str | bytes, host: str | bytes = "shop.local",
                  headers: list[tuple[str, str | bytes]] | None = None, body: bytes = b"",
                  version: str = "HTTP/1.1") -> bytes:
    """An HTTP request as bytes (``Connection: close``); header values may be raw bytes."""
    target = path if isinstance(path, bytes) else path.encode()
    lines = [method.encode() + b" " + target + (b" " + version.encode() if version else b"")]
    if version:
        lines.append(b"Host: " + (host if isinstance(host, bytes) else host.encode()))
        for name, value in headers or []:
            lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
        if body:
            lines.append(b"Content-Length: " + str(len(body)).encode())
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def client_hello(server_name: str = "shop.local") -> bytes:
    """A real TLS ClientHello from Python's ssl module (what an https client sends first)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


AGENTS: tuple[tuple[str | bytes, int], ...] = (
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", 30),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", 30),
    ("curl/7.88.1", 10),
    ('Mozilla/5.0 (compatible; "QuoteBot"/2.1; +http://bot.example/"about")', 3),
    ("Mozilla/5.0 (Käfer; Linux) Fahrrad/1.0".encode(), 2),  # UTF-8 bytes: nginx logs \xC3\xA4
    (b"python-requests/2.31.0\tcustom", 2),  # a tab: logged as \x09
    ("-", 1),
)
REFERERS = ("", "", "", "http://shop.local/", "http://shop.local/static/app.js",
            "https://search.example/?q=%22shop%22")


def _pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def mixed_requests(rng: random.Random, odd_share: float = 0.01) -> Iterator[bytes]:
    """An endless, weighted mix of the site's requests; ``odd_share`` of them not HTTP."""
    def headers(extra: list[tuple[str, str | bytes]] | None = None) -> list[tuple[str, str | bytes]]:
        out: list[tuple[str, str | bytes]] = [("User-Agent", _pick(rng, AGENTS))]
        referer = rng.choice(REFERERS)
        if referer:
            out.append(("Referer", referer))
        return out + (extra or [])

    def page() -> bytes:
        return request_bytes("GET", rng.choice(["/", "/index.html", "/about.html"]),
                             headers=headers())

    def static() -> bytes:
        name = rng.choice(["app.css", "app.js", "logo.png", "app.css", "missing.png"])
        extra: list[tuple[str, str | bytes]] = []
        if rng.random() < 0.2:
            extra.append(("If-Modified-Since", "Sun, 22 Nov 2037 00:00:00 GMT"))  # 304
        return request_bytes("GET", f"/static/{name}", headers=headers(extra))

    def api() -> bytes:
        host = "admin.local" if rng.random() < 0.2 else "shop.local"
        if rng.random() < 0.25:
            body = json.dumps({"item": rng.randint(1, 500), "qty": rng.randint(1, 3)}).encode()
            return request_bytes("POST", "/api/orders", host, headers(
                [("Content-Type", "application/json")]), body)
        path = rng.choice([f"/api/items?page={rng.randint(1, 9)}", f"/api/items/{rng.randint(1, 500)}",
                           "/api/search?q=red%20shoes", "/api/cart"])
        return request_bytes(rng.choice(["GET", "GET", "GET", "HEAD"]), path, host, headers())

    def auth() -> bytes:
        if rng.random() < 0.5:
            return request_bytes("POST", "/auth/token", headers=headers(), body=b"user=demo&pw=demo")
        return request_bytes("GET", "/auth/login", headers=headers())

    def slow() -> bytes:
        return request_bytes("GET", f"/reports/daily?day={rng.randint(1, 28)}", headers=headers())

    def legacy() -> bytes:
        return request_bytes("GET", "/legacy/orders.php", headers=headers())

    def missing() -> bytes:
        return request_bytes("GET", rng.choice(["/wp-login.php", "/.env", "/favicon.ico",
                                                "/products/%E2%82%AC-deal"]), headers=headers())

    def odd() -> bytes:
        return rng.choice([
            b"GARBAGE\r\n\r\n", client_hello(), request_bytes("GET", "/", version=""),
            request_bytes("GET", b'/search?q="quoted"&s=\xc3\xa9', headers=headers()),
            request_bytes("GET", "/", version="HTTP/1.0"),
        ])

    kinds: tuple[tuple[Callable[[], bytes], int], ...] = (
        (page, 15), (static, 25), (api, 35), (auth, 8), (slow, 5), (legacy, 3), (missing, 9))
    while True:
        if rng.random() < odd_share:
            yield odd()
        else:
            yield _pick(rng, kinds)()


#: Loopback addresses the demo's clients send from (Linux routes all of 127/8 to lo).
CLIENTS = ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.10",
           "127.0.1.11", "127.0.2.20")


def send(port: int, payload: bytes, timeout_s: float = 5.0, client: str | None = None) -> bytes:
    """Send one request to 127.0.0.1:port (from loopback address ``client``) and return the
    response's first line (or b"")."""
    source = (client, 0) if client else None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s,
                                  source_address=source) as s:
        s.sendall(payload)  # no half-close: nginx would take it for a client gone (499)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).split(b"\r\n", 1)[0]


class TrafficDriver:
    """Sends ``requests`` to 127.0.0.1:``port``, ``rate`` per second at most, from a thread.

    Requests are started on a fixed schedule by a few worker threads (at most
    ``workers`` in flight, so a slow upstream does not stall the rest).
    ``sleep`` returns True when stopped (default: the driver's stop event's wait).
    """

    def __init__(self, port: int, requests: Iterator[bytes], rate: float = 5.0,
                 workers: int = 4, sleep: Callable[[float], bool] | None = None,
                 rng: random.Random | None = None) -> None:
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"demo traffic rate must be in (0, {MAX_RATE:.0f}] requests/s, got {rate}")
        self.port = port
        self.requests = requests
        self.rate = rate
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._rng = rng or random.Random()
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nginx-demo-request")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    def _send(self, payload: bytes, client: str) -> None:
        try:
            send(self.port, payload, client=client)
            ok = True
        except OSError as e:
            ok = False
            log.debug("demo request failed: %s", e)
        finally:
            self._slots.release()
        with self._lock:
            self.sent += ok
            self.errors += not ok

    def run(self) -> None:
        """Send until stopped (blocking), one request every 1/rate seconds."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        for payload in self.requests:
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                self._slots.release()
                return
            self._pool.submit(self._send, payload, self._rng.choice(CLIENTS))
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            if self._sleep(max(0.0, next_at - time.monotonic())):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="nginx-demo-traffic", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sending; wait for the requests in flight (each has a 5 s timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
