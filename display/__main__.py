"""Run the display server: ``python -m display`` (logs its URL; Ctrl-C or SIGTERM stops it).

It serves with gunicorn, one worker with threads (Flask-SocketIO's threading mode
with simple-websocket), the same server the compose stack runs as::

    gunicorn -w 1 --threads 300 --no-control-socket -b 127.0.0.1:5000 display.wsgi:app

One worker, because the Kafka feed and the Socket.IO clients live in that
process; DISPLAY_THREADS threads, because each WebSocket client holds one. Werkzeug's development server was dropped: it mishandles a closed
WebSocket (measured: a client's disconnect took 3 s, and the closing frames were
logged as bad HTTP requests at ERROR level); gunicorn's threads close at once.
``--dev`` keeps Werkzeug for debugging.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from common import cli
from common import settings as settings_module
from common.settings import Settings

log = logging.getLogger("display")


def stop_gracefully(socketio: Any, display: Any) -> None:
    """On SIGTERM, drop every Socket.IO connection first, then let gunicorn stop the worker.

    gunicorn waits for open requests, and a WebSocket is one; dropping them makes
    the stop quick and clean. They are aborted, not disconnected: a client told
    "server disconnect" would not reconnect, while a dropped connection makes it
    reconnect to the next server by itself (and refill from ``history``).
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        def close_all() -> None:
            display.close()
            for connection in list(socketio.server.eio.sockets.values()):
                connection.close(wait=False, abort=True, reason="server shutting down")

        threading.Thread(target=close_all, name="disconnect-clients", daemon=True).start()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def serve_with_gunicorn(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    class DisplayServer(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": f"{settings.display_host}:{settings.display_port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": settings.display_threads,
                "control_socket_disable": True,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": settings.log_level,
                "graceful_timeout": 5,
                "timeout": 0,  # WebSocket requests last as long as the client stays
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # In the worker, after the fork: the Kafka feed's thread starts here.
            from display.server import create_app

            app, socketio, display = create_app(settings)
            stop_gracefully(socketio, display)
            return app

    DisplayServer().run()


def main(argv: list[str] | None = None) -> int:
    parser = settings_module.argument_parser(__doc__ or "", only=[
        "kafka_bootstrap_servers", "display_host", "display_port", "display_threads", "data_dir",
        "log_level",
        "cors_origins", "cassandra_hosts", "window_seconds", "sliding_window_seconds",
        "slide_seconds", "watermark_seconds"])
    parser.add_argument("--dev", action="store_true",
                        help="Werkzeug's development server instead of gunicorn")
    args, settings = cli.start(parser, argv)
    log.info("display server at http://%s:%d/", settings.display_host, settings.display_port)
    if not args.dev:
        serve_with_gunicorn(settings)
        return 0
    from display.server import create_app

    app, socketio, display = create_app(settings)
    try:
        socketio.run(app, host=settings.display_host, port=settings.display_port,
                     allow_unsafe_werkzeug=True, log_output=False)
    finally:
        display.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
