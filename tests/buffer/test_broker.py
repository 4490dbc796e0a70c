"""The embedded broker's errors are clear, and what it writes is what Kafka needs (no JVM here)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from buffer import broker
from buffer.broker import BrokerError, EmbeddedBroker
from common import jvm
from common.jvm import JvmError


def test_missing_jars_name_the_command_that_fetches_them(tmp_path: Path) -> None:
    embedded = EmbeddedBroker(tmp_path / "kafka", port=0, jars_dir=tmp_path / "no-jars")
    with pytest.raises(JvmError, match=r"no kafka jars in .*no-jars/kafka: run `make setup`"):
        embedded.prepare()


def test_a_port_in_use_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        embedded = EmbeddedBroker(tmp_path / "kafka", port=port)
        with pytest.raises(BrokerError, match=rf"port {port} on 127.0.0.1 is taken.*BROKER_PORT"):
            embedded.prepare()


def test_no_java_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(jvm.shutil, "which", lambda _name: None)
    with pytest.raises(JvmError, match="openjdk-17-jre-headless"):
        broker.java_command()


def test_the_config_listens_on_loopback_and_keeps_data_where_asked(tmp_path: Path) -> None:
    text = broker.server_config("127.0.0.1", 19092, 19093, tmp_path / "logs")
    lines = dict(line.split("=", 1) for line in text.splitlines()
                 if "=" in line and not line.startswith("#"))
    assert lines["process.roles"] == "broker,controller"
    assert lines["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert lines["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert lines["log.dirs"] == str((tmp_path / "logs").resolve())
    assert lines["auto.create.topics.enable"] == "false"


def test_cluster_ids_are_kafka_shaped() -> None:
    ids = {broker.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and "=" not in i for i in ids)  # 16 bytes, URL-safe base64
    # 1 in 64 random ids starts with "-", which the storage tool reads as an option.
    assert not any(i.startswith("-") for i in ids)
