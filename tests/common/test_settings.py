"""Settings: defaults, environment, flags, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import settings


def test_defaults() -> None:
    s = settings.load(environ={})
    assert s.kafka_bootstrap_servers is None and s.embedded_broker
    assert (s.display_host, s.display_port) == ("127.0.0.1", 5000)
    assert s.data_dir == Path("data")
    assert s.trigger_seconds == 1.0
    assert 1 <= s.shuffle_partitions <= 4


def test_environment_then_flags() -> None:
    env = {"DISPLAY_PORT": "8080", "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "DATA_DIR": "/srv/kit"}
    s = settings.load(environ=env)
    assert s.display_port == 8080 and not s.embedded_broker and s.data_dir == Path("/srv/kit")
    parser = settings.argument_parser("test")
    args = parser.parse_args(["--display-port", "9000"])
    assert settings.from_args(args, environ=env).display_port == 9000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DISPLAY_PORT": "http"}, "DISPLAY_PORT"),
        ({"DISPLAY_PORT": "70000"}, "DISPLAY_PORT"),
        ({"TRIGGER_SECONDS": "-1"}, "TRIGGER_SECONDS"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"RANDOM_BINS": "3,2,1"}, "RANDOM_BINS"),
        ({"SINK": "tape"}, "SINK"),
        ({"SLIDING_WINDOW_SECONDS": "65", "SLIDE_SECONDS": "10"}, "SLIDING_WINDOW_SECONDS"),
        ({"WINDOW_SECONDS": "15", "SLIDE_SECONDS": "10"}, "WINDOW_SECONDS=15"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(settings.SettingsError, match=named):
        settings.load(environ=env)


def test_a_bad_flag_names_the_flag() -> None:
    args = settings.argument_parser("test").parse_args(["--display-port", "x"])
    with pytest.raises(settings.SettingsError, match="--display-port"):
        settings.from_args(args, environ={})


def test_help_names_each_environment_variable() -> None:
    text = settings.argument_parser("test").format_help()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DISPLAY_HOST", "DISPLAY_PORT", "DATA_DIR"):
        assert name in text


def test_password_is_redacted() -> None:
    s = settings.load(environ={"CASSANDRA_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(s.redacted())


def test_repeated_client_log_lines_pass_once_per_interval() -> None:
    import logging

    from common.logs import RepeatFilter

    now = [0.0]
    only_once = RepeatFilter(every_s=30, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("librdkafka", logging.ERROR, "", 0, msg, None, None)

    refused = "Connect to ipv4#127.0.0.1:{} failed: Connection refused (after {}ms)"
    assert only_once.filter(record(refused.format(36811, 0)))
    assert not only_once.filter(record(refused.format(36811, 3)))  # same but for numbers
    assert only_once.filter(record("another message"))
    now[0] = 31.0
    assert only_once.filter(record(refused.format(36811, 1)))


def test_the_stack_starts_its_own_cassandra_unless_off_or_pointed_elsewhere() -> None:
    assert settings.load(environ={}).embedded_cassandra
    assert not settings.load(environ={"CASSANDRA": "off"}).embedded_cassandra
    elsewhere = settings.load(environ={"CASSANDRA_HOSTS": "db1,db2"})
    assert not elsewhere.embedded_cassandra and elsewhere.cassandra_configured()
    assert settings.load(environ={"CASSANDRA_PORT": "0"}).cassandra_port == 0  # a free port
    with pytest.raises(settings.SettingsError, match="CASSANDRA_HEAP"):
        settings.load(environ={"CASSANDRA_HEAP": "lots"})
