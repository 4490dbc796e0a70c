"""Run the display server: ``python -m display`` (prints its URL; Ctrl-C stops it).

For production use gunicorn with threads instead (the compose stack does)::

    gunicorn -w 1 --threads 50 --no-control-socket -b 0.0.0.0:5000 display.wsgi:app
"""

from __future__ import annotations

import logging
import sys

from common import settings as settings_module
from common.logs import setup_logging

log = logging.getLogger("display")


def main(argv: list[str] | None = None) -> int:
    from display.server import create_app

    parser = settings_module.argument_parser(__doc__ or "", only=[
        "kafka_bootstrap_servers", "display_host", "display_port", "data_dir", "log_level",
        "cors_origins", "cassandra_hosts", "window_seconds", "sliding_window_seconds",
        "slide_seconds", "watermark_seconds"])
    settings = settings_module.from_args(parser.parse_args(argv))
    setup_logging(settings.log_level)
    app, socketio, display = create_app(settings)
    url = f"http://{settings.display_host}:{settings.display_port}/"
    log.info("display server at %s", url)
    try:
        socketio.run(app, host=settings.display_host, port=settings.display_port,
                     allow_unsafe_werkzeug=True, log_output=False)
    finally:
        display.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
