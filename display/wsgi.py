"""WSGI entry point for gunicorn (settings from the environment only)::

    gunicorn -w 1 --threads 300 --no-control-socket -b 0.0.0.0:5000 display.wsgi:app

One worker: the Kafka feed and the Socket.IO clients live in that process.
"""

from common import settings as settings_module
from common.logs import setup_logging
from display.server import create_app

_settings = settings_module.load()
setup_logging(_settings.log_level)
app, socketio, display = create_app(_settings)
