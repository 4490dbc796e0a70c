"""The NGINX demo's site: nginx and its upstreams under a work folder, started and stopped.

:class:`DemoSite` writes the static files and the config (``input/nginx_demo/config.py``)
under its work folder (``DATA_DIR/nginx/demo``), starts the upstreams
(``input/nginx_demo/upstreams.py``) and the nginx process (``daemon off``, its own
process group), waits until nginx answers its readiness probe, and stops everything
in :meth:`DemoSite.stop`. A master left by a killed run is found by its pid file and
stopped at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

from buffer.broker import free_port
from common import processes
from common.waiting import eventually
from input.nginx_demo import NginxError
from input.nginx_demo.config import READY_PATH, render_config
from input.nginx_demo.traffic import request_bytes, send
from input.nginx_demo.upstreams import Upstreams

__all__ = ["DemoSite", "find_nginx"]

log = logging.getLogger(__name__)


def find_nginx(explicit: str | None = None) -> str | None:
    """The nginx binary: ``explicit``, else ``nginx`` on PATH, else /usr/sbin/nginx; or None."""
    for candidate in (explicit, shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


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
        self._upstreams = Upstreams()
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
            self.ports.update(self._upstreams.start(self.rng))
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
        # If the thread that started it dies without stopping it (kill -9 of the source),
        # nginx's master gets SIGTERM.
        self._process = processes.start(args, self.work / "nginx.out", env, die_with_parent=True)
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
            # SIGTERM, a fast shutdown: the master stops its workers; then SIGKILL to the
            # group, for a worker that outlived its master.
            processes.stop(process, timeout_s, what=f"nginx (pid {process.pid})")
            log.info("nginx stopped (pid %d)", process.pid)
        self._upstreams.stop(timeout_s)

    def __enter__(self) -> DemoSite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
