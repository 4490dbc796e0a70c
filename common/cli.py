"""What every entry point does first: flags and settings, logging, the broker, stop signals.

Usage, in a ``main(argv)``::

    parser = settings.argument_parser(__doc__ or "", only=[...])
    args, cfg = cli.start(parser, argv)          # a bad setting is a usage error naming it
    bootstrap = cli.broker(parser, cfg)          # KAFKA_BOOTSTRAP_SERVERS, waited for
    cli.on_stop(lambda signum: source.stop())    # SIGTERM and Ctrl-C, logged
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable, Sequence

from common import settings as settings_module
from common.logs import setup_logging

__all__ = ["broker", "on_stop", "start"]

log = logging.getLogger(__name__)


def start(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
          check: Callable[[argparse.Namespace, settings_module.Settings], object] | None = None,
          ) -> tuple[argparse.Namespace, settings_module.Settings]:
    """Parse ``argv``, load the settings and set up logging.

    ``check(args, settings)`` may validate more before anything starts; a
    :class:`ValueError` from it or from the settings exits with a usage error (code 2)
    whose message names what is wrong.
    """
    args = parser.parse_args(argv)
    try:
        cfg = settings_module.from_args(args)
        if check is not None:
            check(args, cfg)
    except ValueError as e:  # SettingsError and the checks' errors are ValueErrors
        parser.error(str(e))
    setup_logging(cfg.log_level)
    return args, cfg


def broker(parser: argparse.ArgumentParser, cfg: settings_module.Settings,
           timeout_s: float = 30.0) -> str:
    """KAFKA_BOOTSTRAP_SERVERS once a client sees the broker; a usage error when unset."""
    from buffer.kafka import wait_until_ready  # common must not need Kafka's client to load

    if cfg.kafka_bootstrap_servers is None:
        parser.error("KAFKA_BOOTSTRAP_SERVERS (or --kafka-bootstrap-servers) is required")
    wait_until_ready(cfg.kafka_bootstrap_servers, timeout_s)
    return cfg.kafka_bootstrap_servers


def on_stop(stop: Callable[[int], object]) -> None:
    """Call ``stop(signum)`` on SIGTERM and SIGINT (Ctrl-C), logging the signal."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
