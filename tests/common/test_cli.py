"""common/cli.py: what every entry point does first."""

from __future__ import annotations

import os
import signal

import pytest

from common import cli
from common import settings as settings_module


def parser() -> settings_module.argparse.ArgumentParser:
    return settings_module.argument_parser("test", only=["kafka_bootstrap_servers", "log_level",
                                                         "display_port"])


def test_start_reads_flags_and_settings() -> None:
    args, cfg = cli.start(parser(), ["--display-port", "8123"])
    assert cfg.display_port == 8123 and args.setting_display_port == "8123"


def test_a_bad_setting_or_check_is_a_usage_error_naming_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.start(parser(), ["--display-port", "99999"])
    assert exit_info.value.code == 2 and "--display-port='99999' is invalid" in \
        capsys.readouterr().err

    def check(_args: object, _cfg: object) -> None:
        raise ValueError("no such topic: x")

    with pytest.raises(SystemExit):
        cli.start(parser(), [], check=check)
    assert "no such topic: x" in capsys.readouterr().err


def test_no_broker_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    _, cfg = cli.start(parser(), [])
    with pytest.raises(SystemExit):
        cli.broker(parser(), cfg)
    assert "KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_on_stop_calls_back_with_the_signal() -> None:
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    seen: list[int] = []
    try:
        cli.on_stop(seen.append)
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this thread before kill returns
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
