"""A real nginx on loopback with a few upstreams, and light traffic to it: the NGINX demo.

Used by ``python -m input.nginx --demo`` (what ``make run`` starts when
``NGINX_LOG_PATH`` is unset) and by ``input/data/nginx/record.py``, which
recorded the shipped logs with it. Everything listens on 127.0.0.1 only.

:class:`DemoSite` builds it under a work folder (``DATA_DIR/nginx/demo``):

* the config from :data:`CONFIG_TEMPLATE` (free ports, temp paths under the
  folder, the ``upstream`` log format, and ``combined`` too when asked);
* upstream servers in this process (threads): ``api`` (two backends plus a
  port where nothing listens, so some requests are retried on the next server:
  two addresses in ``$upstream_addr``), ``auth``, ``reports`` (sometimes slower
  than ``proxy_read_timeout``: 504) and ``legacy`` (nothing listens: 502);
* static files, and a second virtual host (``admin.local``);
* the nginx process (``daemon off``, its own process group), stopped with
  everything else by :meth:`DemoSite.stop`. A master left by a killed run is
  found by its pid file and stopped at the next start.

:class:`TrafficDriver` sends a weighted mix of requests at a bounded rate (a few
per second by default, at most 200/s), including some that are not HTTP (raw
garbage, a real TLS ClientHello), which nginx answers 400.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import pwd
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from buffer.broker import free_port
from common.waiting import eventually

__all__ = ["CLIENTS", "CONFIG_TEMPLATE", "DemoSite", "NginxError", "TrafficDriver", "client_hello",
           "find_nginx", "mixed_requests", "render_config", "request_bytes", "send"]

log = logging.getLogger(__name__)

MAX_RATE = 200.0
READY_PATH = "/streamkit-ready"  # answered by nginx without logging: the readiness probe

CONFIG_TEMPLATE = r"""# nginx.conf of streamkit's NGINX demo and recording, rendered by input/nginx_demo.py
# (the ports and paths are filled in). Loopback only.
@USER@daemon off;
master_process on;
worker_processes 1;
pid @WORK@/nginx.pid;
error_log @WORK@/error.log warn;

events {
    worker_connections 256;
}

http {
    default_type application/octet-stream;
    types {
        text/html html;
        text/css css;
        application/javascript js;
        image/png png;
        application/json json;
    }
    client_body_temp_path @WORK@/tmp/body;
    proxy_temp_path @WORK@/tmp/proxy;
    fastcgi_temp_path @WORK@/tmp/fastcgi;
    uwsgi_temp_path @WORK@/tmp/uwsgi;
    scgi_temp_path @WORK@/tmp/scgi;
    keepalive_timeout 5s;
    if_modified_since before;

    # "combined" is built into nginx (it cannot be redefined):
    #   log_format combined '$remote_addr - $remote_user [$time_local] '
    #                       '"$request" $status $body_bytes_sent '
    #                       '"$http_referer" "$http_user_agent"';
    log_format upstream '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" '
                        '"$host" "$upstream_addr" $request_time $upstream_response_time';
    access_log @UPSTREAM_LOG@ upstream;
@COMBINED_LOG@
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    proxy_next_upstream error timeout http_502;

    upstream api {
        server 127.0.0.1:@API_A@ weight=5 max_fails=0;
        server 127.0.0.1:@API_B@ weight=3 max_fails=0;
        server 127.0.0.1:@DEAD@ max_fails=0;  # nothing listens: refused, the next one answers
    }
    upstream auth {
        server 127.0.0.1:@AUTH@;
    }
    upstream reports {
        server 127.0.0.1:@REPORTS@;  # sometimes slower than proxy_read_timeout: 504
    }
    upstream legacy {
        server 127.0.0.1:@DEAD@;  # nothing listens on either: 502; once both are marked
        server 127.0.0.1:@DEAD2@;  # down, $upstream_addr is the group's name, "legacy"
    }

    server {
        listen 127.0.0.1:@PORT@ default_server;
        server_name shop.local;
        root @WORK@/www;

        location = @READY@ {
            access_log off;
            return 204;
        }
        location / {
            try_files $uri $uri/ =404;
        }
        location /static/ {
            expires 1h;
        }
        location /api/ {
            proxy_pass http://api;
        }
        location /auth/ {
            proxy_pass http://auth;
        }
        location /reports/ {
            proxy_pass http://reports;
        }
        location /legacy/ {
            proxy_pass http://legacy;
        }
    }

    server {
        listen 127.0.0.1:@PORT@;
        server_name admin.local;
        root @WORK@/www;

        location /api/ {
            proxy_pass http://api;
        }
        location /auth/ {
            proxy_pass http://auth;
        }
        location / {
            return 404;
        }
    }
}
"""


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux: a pre-exec hook so that nginx's master gets SIGTERM if the thread that
    started it dies without stopping it (kill -9 of the source). None elsewhere.

    libc is loaded here, in the parent; the child only makes the one prctl call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return hook


class NginxError(RuntimeError):
    """nginx could not be configured or started; the message has its output."""


def find_nginx(explicit: str | None = None) -> str | None:
    """The nginx binary: ``explicit``, else ``nginx`` on PATH, else /usr/sbin/nginx; or None."""
    for candidate in (explicit, shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def render_config(work: Path, ports: dict[str, int], combined_log: Path | None = None) -> str:
    """The nginx.conf text for a work folder and the ports (keys: port, api_a, api_b, dead,
    auth, reports). ``combined_log``: also write that log in the combined format."""
    user = ""
    if os.geteuid() == 0:  # nginx's workers would run as nobody, who cannot read the folder
        owner = pwd.getpwuid(work.stat().st_uid)
        user = f"user {owner.pw_name};\n"
    values = {
        "USER": user,
        "WORK": str(work),
        "READY": READY_PATH,
        "UPSTREAM_LOG": str(work / "access.log"),
        "COMBINED_LOG": f"    access_log {combined_log} combined;\n" if combined_log else "",
        **{name.upper(): str(port) for name, port in ports.items()},
    }
    text = CONFIG_TEMPLATE
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    missing = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if missing:
        raise NginxError(f"nginx.conf template placeholders without a value: {missing}")
    return text


# -- upstream servers, in this process


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


# -- requests


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


# -- the site


class DemoSite:
    """nginx plus its upstreams under ``work``; use ``with DemoSite(...) as site:`` or
    :meth:`start` and, in a ``finally``, :meth:`stop`.

    Args:
        work: the folder for config, logs, pid file, temp files and static files.
        nginx: the binary (default: :func:`find_nginx`).
        combined_log: also write this log in the combined format (the recording does).
        env: extra environment for nginx (``TZ`` sets the zone of ``$time_local``).
        seed: seeds the upstreams' delays and errors.
    """

    def __init__(self, work: Path, nginx: str | None = None, combined_log: Path | None = None,
                 env: dict[str, str] | None = None, seed: int | None = None) -> None:
        self.work = Path(work).absolute()  # nginx resolves relative paths against its prefix
        self.nginx = nginx or find_nginx()
        self.combined_log = combined_log
        self.env = env or {}
        self.rng = random.Random(seed)
        self.port = 0
        self.ports: dict[str, int] = {}
        self._backends: list[_BackendServer] = []
        self._threads: list[threading.Thread] = []
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def access_log(self) -> Path:
        """The log in the ``upstream`` format."""
        return self.work / "access.log"

    @property
    def config_path(self) -> Path:
        return self.work / "nginx.conf"

    def _prepare(self) -> None:
        for sub in ("tmp", "www/static"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        www = self.work / "www"
        pages = {"index.html": "<!doctype html><title>shop</title><h1>Shop</h1>\n",
                 "about.html": "<!doctype html><title>about</title><p>A demo shop.</p>\n",
                 "static/app.css": "body { font-family: sans-serif; }\n" * 40,
                 "static/app.js": "console.log('shop');\n" * 120}
        for name, text in pages.items():
            (www / name).write_text(text)
        (www / "static/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
        # Rotate the previous run's log aside: its unsent rest is read first (by inode).
        if self.access_log.exists():
            os.replace(self.access_log, self.work / "access.log.1")

    def _stop_stale(self) -> None:
        """Stop an nginx master left running by a killed run of this work folder."""
        pid_file = self.work / "nginx.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() not in cmdline:
            return
        log.warning("stopping nginx (pid %d) left running by an earlier demo", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            eventually(lambda: not Path(f"/proc/{pid}").exists(), 5, f"stale nginx {pid} to exit")

    def start(self, ready_timeout_s: float = 10.0) -> None:
        """Start the upstreams and nginx; wait until nginx answers its readiness probe."""
        if self.nginx is None:
            raise NginxError("no nginx binary (install nginx-light, or put nginx on PATH)")
        self.work.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        self._prepare()
        try:
            for spec in BACKENDS:
                server = _BackendServer(spec, random.Random(self.rng.random()))
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name=f"nginx-demo-{spec.name}", daemon=True)
                thread.start()
                self._backends.append(server)
                self._threads.append(thread)
                self.ports[spec.name] = server.port
            self.port = free_port()
            self.ports.update(port=self.port, dead=free_port(), dead2=free_port())
            self.config_path.write_text(render_config(self.work, self.ports, self.combined_log))
            self._start_nginx(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start_nginx(self, ready_timeout_s: float) -> None:
        assert self.nginx is not None
        args = [self.nginx, "-p", str(self.work), "-c", str(self.config_path)]
        env = {**os.environ, **self.env}
        check = subprocess.run([*args, "-t", "-q"], env=env, capture_output=True, text=True,
                               check=False)
        if check.returncode != 0:
            raise NginxError(f"nginx -t failed for {self.config_path}:\n{check.stderr.strip()}")
        errors = (self.work / "nginx.out").open("wb")
        try:
            self._process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                             stdout=errors, stderr=subprocess.STDOUT,
                                             start_new_session=True,
                                             preexec_fn=_parent_death_signal())
        finally:
            errors.close()
        log.info("nginx started (pid %d) on 127.0.0.1:%d; log %s", self._process.pid, self.port,
                 self.access_log)

        def alive() -> None:
            if self._process is not None and self._process.poll() is not None:
                raise NginxError(f"nginx exited ({self._process.returncode}): "
                                 f"{(self.work / 'nginx.out').read_text(errors='replace')[-2000:]}")

        def ready() -> bool:
            try:
                return send(self.port, request_bytes("GET", READY_PATH), 1.0).startswith(
                    b"HTTP/1.1 204")
            except OSError:
                return False

        eventually(ready, ready_timeout_s, f"nginx on 127.0.0.1:{self.port}", interval_s=0.05,
                   check=alive)

    def reopen_logs(self) -> None:
        """Ask nginx to reopen its logs (what logrotate's postrotate does): SIGUSR1."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGUSR1)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop nginx (and its workers) and the upstreams. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)  # fast shutdown: the master stops its workers
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("nginx (pid %d) did not stop in %.0f s: killing it", process.pid,
                            timeout_s)
                process.kill()
                process.wait(timeout_s)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # a worker that outlived its master
            log.info("nginx stopped (pid %d)", process.pid)
        for server in self._backends:
            server.stopping.set()
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout_s)
        self._backends, self._threads = [], []

    def __enter__(self) -> DemoSite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
