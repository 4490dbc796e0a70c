"""The HTTP ingest: ``POST /ingest/<topic>`` with a JSON record; valid records go to Kafka.

Run it with ``python -m input.ingest`` (:mod:`input.ingest.__main__` says what it answers).
Its parts: :mod:`~input.ingest.validate` (what is accepted), :mod:`~input.ingest.handler`
(one request: validate, publish or dead-letter, count), :mod:`~input.ingest.sink` (the
acknowledged Kafka sink), :mod:`~input.ingest.app` (the Flask app and its server) and
:mod:`~input.ingest.health` (the counters published to ``health``).
"""
