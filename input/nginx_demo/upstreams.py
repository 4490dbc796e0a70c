"""The NGINX demo's upstream servers: HTTP servers on loopback, threads in this process.

Each answers JSON after a random delay, some answers errors (:class:`Backend` says
how much of each); :data:`BACKENDS` are the demo's four (``api_a``, ``api_b``,
``auth``, ``reports``), which ``input/nginx_demo/config.py`` puts in nginx's upstream
groups. :class:`Upstreams` starts them on free ports and stops them.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BACKENDS", "Backend", "Upstreams"]

log = logging.getLogger(__name__)


class _Backend(BaseHTTPRequestHandler):
    """Answers JSON after a random delay; some answers are errors (see :class:`Backend`)."""

    server: _BackendServer
    protocol_version = "HTTP/1.0"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        spec = self.server.spec
        with self.server.lock:
            delay = self.server.rng.uniform(*spec.delay_s)
            failed = self.server.rng.random() < spec.error_rate
        if self.server.stopping.wait(delay):
            return
        status = spec.error_status if failed else 200
        body = json.dumps({"service": spec.name, "path": self.path, "ok": not failed}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("backend %s: nginx closed the connection (timed out)", spec.name)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("backend %s: " + format, self.server.spec.name, *args)


class Backend:
    """An upstream server's behaviour: delay range, share of errors and their status."""

    def __init__(self, name: str, delay_s: tuple[float, float], error_rate: float = 0.0,
                 error_status: int = 500) -> None:
        self.name = name
        self.delay_s = delay_s
        self.error_rate = error_rate
        self.error_status = error_status


class _BackendServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, spec: Backend, rng: random.Random) -> None:
        super().__init__(("127.0.0.1", 0), _Backend)
        self.spec = spec
        self.rng = rng
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


BACKENDS = (
    Backend("api_a", (0.002, 0.040), error_rate=0.02),
    Backend("api_b", (0.010, 0.150)),
    Backend("auth", (0.001, 0.010), error_rate=0.2, error_status=401),
    Backend("reports", (0.200, 1.600)),
)


class Upstreams:
    """The :data:`BACKENDS`, each on a free loopback port, served from a thread of its own."""

    def __init__(self) -> None:
        self._servers: list[_BackendServer] = []
        self._threads: list[threading.Thread] = []

    def start(self, rng: random.Random) -> dict[str, int]:
        """Start every backend (each seeded from ``rng``); returns their ports by name."""
        ports = {}
        for spec in BACKENDS:
            server = _BackendServer(spec, random.Random(rng.random()))
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"nginx-demo-{spec.name}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
            ports[spec.name] = server.port
        return ports

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every backend started (answers being delayed are dropped). Idempotent."""
        for server in self._servers:
            server.stopping.set()
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout_s)
        self._servers, self._threads = [], []
