"""HTTP ingest: ``POST /ingest/<topic>`` with a JSON record; valid records go to Kafka.

Run::

    python -m input.ingest                                   # INGEST_HOST:INGEST_PORT (127.0.0.1:5001)
    python -m input.ingest --ingest-port 0                   # a free port (logged)
    curl -H 'Content-Type: application/json' -d @case.json http://127.0.0.1:5001/ingest/cases

It logs the address it listens on, a line per rejected request, the counters
every few seconds (also published to ``health`` as ``source_progress`` of source
``ingest``), and the final counters on Ctrl-C or SIGTERM.

Answers:

* ``202`` ``{"accepted": true, ...}``: the record was valid **and Kafka acknowledged it**
  (acks from all in-sync replicas): the request waits for the delivery report,
  so a 202 means the record is stored in the topic, not merely queued.
* ``400`` invalid JSON, a body that is not UTF-8, or a schema violation (the
  topic's record type, :func:`common.records.from_json`, plus a few range checks);
* ``404`` a topic that is not in ``INGEST_TOPICS``; ``413`` a body larger than
  ``INGEST_MAX_BODY_BYTES``; ``415`` a content type other than JSON (or a charset
  other than UTF-8);
* ``503`` Kafka did not acknowledge the record within the timeout; the record may
  or may not be in the topic (at-least-once: a client retry can duplicate it; its
  ``id`` tells duplicates apart).

Each rejection (4xx) is answered with ``{"error": <code>, "reason": <text>}``,
counted by code, and sent to ``dead-letters`` (source ``ingest``, the reason,
the body truncated to 2,048 characters). Only a whole, validated record is ever
published: it is rebuilt from the record type, so unknown keys are dropped.
``GET /ingest/stats`` shows the counters, ``GET /healthz`` answers ``ok``.
Invariant: requests to ``/ingest/<topic>`` = accepted + rejected + failed.
"""

from __future__ import annotations

import logging
import sys
import threading

from input.ingest.app import create_app, ingest_of, serve
from input.ingest.health import report_health
from input.ingest.validate import routes_for

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "ingest_host", "ingest_port",
                             "ingest_max_body_bytes", "ingest_topics", "log_level"])
    _, settings = cli.start(parser, argv, check=lambda _, cfg: routes_for(cfg.ingest_topics))
    routes = routes_for(settings.ingest_topics)
    bootstrap = cli.broker(parser, settings)
    app = create_app(settings, routes=routes)
    ingest = ingest_of(app)
    server = serve(app, settings.ingest_host, settings.ingest_port)
    stop = threading.Event()
    cli.on_stop(lambda _signum: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True)
    serving.start()
    reporter = threading.Thread(target=report_health, args=(ingest, bootstrap, stop),
                                name="ingest-health", daemon=True)
    reporter.start()
    log.info("ingest: listening on http://%s:%d/ingest/<topic> (topics: %s, max body %d bytes)",
             settings.ingest_host, server.server_port, ", ".join(routes),
             settings.ingest_max_body_bytes)
    while not stop.wait(0.5):
        if not serving.is_alive():
            log.error("ingest: the HTTP server stopped")
            break
    server.shutdown()
    serving.join(10)
    stop.set()
    reporter.join(5)
    ingest.close()
    log.info("ingest: stopped; %s", ingest.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
