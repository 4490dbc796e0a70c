"""WSGI entry point for gunicorn (settings from the environment only)::

    gunicorn -w 1 --threads 300 --no-control-socket --graceful-timeout 5 \
        -b 0.0.0.0:5000 display.wsgi:app

One worker: the Kafka feed and the Socket.IO clients live in that process. gunicorn loads
this module in the worker after installing its signal handlers, so SIGTERM first drops the
WebSockets and closes the feed and stores (as ``python -m display`` does), then stops.
"""

from common import settings as settings_module
from common.logs import setup_logging
from display.__main__ import stop_gracefully
from display.server import create_app

_settings = settings_module.load()
setup_logging(_settings.log_level)
app, socketio, display = create_app(_settings)
stop_gracefully(socketio, display)
