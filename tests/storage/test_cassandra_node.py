"""The local Cassandra node's errors are clear, and what it writes is what Cassandra needs.

No JVM here: the node itself runs in tests/conftest.py's ``cassandra`` fixture (every
Cassandra test uses it) and in the stack's end-to-end test.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common import jvm
from common.jvm import JvmError
from storage import cassandra_node
from storage.cassandra_node import CassandraNode, NodeError


def test_missing_jars_name_the_command_that_fetches_them(tmp_path: Path) -> None:
    node = CassandraNode(tmp_path / "c", jars_dir=tmp_path / "no-jars")
    with pytest.raises(JvmError, match=r"no cassandra jars in .*no-jars/cassandra: run `make setup`"):
        node.prepare()


def test_no_java_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(jvm.shutil, "which", lambda _name: None)
    with pytest.raises(JvmError, match="openjdk-17-jre-headless"):
        CassandraNode(tmp_path / "c").prepare()


def test_a_port_in_use_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NodeError, match=rf"port {port} on 127.0.0.1 is taken.*CASSANDRA_PORT"
                                            rf".*CASSANDRA_HOSTS=127.0.0.1 CASSANDRA_PORT={port}"):
            CassandraNode(tmp_path / "c", port=port).prepare()


def test_too_little_memory_is_refused_naming_cassandra_off(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cassandra_node, "available_memory_mib", lambda: 600)
    with pytest.raises(NodeError, match=r"too little memory.*about 912 MiB.*600 MiB.*CASSANDRA=off"):
        CassandraNode(tmp_path / "c", heap="512m").prepare()


def test_a_node_that_does_not_answer_in_time_fails_with_the_end_of_its_log(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = tmp_path / "cassandra.log"
    log.write_text("starting\nERROR something the node said last\n")
    node = CassandraNode(tmp_path / "c", port=1, log_path=log, ready_timeout_s=0.3)
    monkeypatch.setattr(node, "answers", lambda timeout_s=2.0: False)
    with pytest.raises(NodeError, match=r"(?s)did not answer CQL at 127.0.0.1:1 within 0 s.*"
                                        r"CASSANDRA_READY_TIMEOUT_S.*something the node said last"):
        node.wait_ready(lambda: None)


def test_a_node_that_exits_while_starting_fails_at_once(tmp_path: Path) -> None:
    log = tmp_path / "cassandra.log"
    log.write_text("ERROR Invalid yaml\n")
    node = CassandraNode(tmp_path / "c", port=1, log_path=log, ready_timeout_s=60)
    with pytest.raises(NodeError, match=r"(?s)exited with code 3 while starting.*Invalid yaml"):
        node.wait_ready(lambda: 3)


def test_the_config_keeps_the_node_on_loopback_and_its_data_where_asked(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load(cassandra_node.node_config("127.0.0.1", 19042, 17000, tmp_path))
    assert config["listen_address"] == config["rpc_address"] == "127.0.0.1"
    assert config["native_transport_port"] == 19042 and config["storage_port"] == 17000
    seeds = config["seed_provider"][0]["parameters"][0]["seeds"]
    assert seeds == "127.0.0.1:17000"
    for key in ("data_file_directories", "commitlog_directory", "hints_directory",
                "saved_caches_directory", "cdc_raw_directory"):
        value = config[key][0] if isinstance(config[key], list) else config[key]
        assert str(value).startswith(str(tmp_path.resolve())), key
    assert config["cluster_name"] == "streamkit"
    # No JMX port is configured: Cassandra opens JMX only when one is set (and no flag does).
    assert not [key for key in config if "jmx" in key]
    assert not [flag for flag in cassandra_node.JVM_FLAGS if "jmx" in flag.lower()]


def test_the_shipped_yaml_sets_none_of_the_keys_written_per_start() -> None:
    import yaml

    base = yaml.safe_load(cassandra_node.BASE_YAML.read_text())
    assert not set(base) & set(cassandra_node.PER_START_KEYS)


def test_jvm_sizes_parse() -> None:
    assert cassandra_node.parse_size_mib("512m") == 512
    assert cassandra_node.parse_size_mib("1g") == 1024
    with pytest.raises(ValueError, match="JVM memory size"):
        cassandra_node.parse_size_mib("lots")
