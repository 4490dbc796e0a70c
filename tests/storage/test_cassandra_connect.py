"""Reaching Cassandra without a server (:mod:`storage.cassandra_connect`): the driver's
settings, TLS, the connect retry against real refused and silent ports, and which driver
errors are outages.

Nothing here fakes a server. The connection tests run the real driver against a
real closed port on 127.0.0.1 (a socket bound but not listening: the kernel
refuses the connection), or a real port that accepts connections and never answers.
Against a real node: TLS (``test_cassandra_tls.py``).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import pytest

from storage.base import Store, StoreError
from storage.cassandra import CassandraStore
from storage.cassandra_connect import is_unavailable, tls_context
from tests.storage.support import PASSWORD, RecordingStore, all_log_text, store_at


def test_from_settings_configures_the_driver(closed_port: int) -> None:
    store = store_at(closed_port, CASSANDRA_KEYSPACE="Kit_Test", CASSANDRA_LOCAL_DC="dc1",
                     CASSANDRA_HOSTS="127.0.0.1,127.0.0.2")
    assert isinstance(store, Store) and store.kind == "cassandra"
    assert store.keyspace == "kit_test" and store.hosts == ("127.0.0.1", "127.0.0.2")
    assert PASSWORD not in repr(store)
    cluster = store.connector.new_cluster(connect_timeout_s=2.0)
    try:
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        assert cluster.port == closed_port
        assert cluster.contact_points == ["127.0.0.1", "127.0.0.2"]
        assert isinstance(cluster.auth_provider, PlainTextAuthProvider)
        assert cluster.auth_provider.username == "kit"
        profile = cluster.profile_manager.default
        assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
        child = profile.load_balancing_policy._child_policy
        assert isinstance(child, DCAwareRoundRobinPolicy) and child.local_dc == "dc1"
        assert profile.consistency_level == ConsistencyLevel.LOCAL_QUORUM
    finally:
        cluster.shutdown()


def test_without_credentials_no_auth_provider_is_sent() -> None:
    store = CassandraStore(["127.0.0.1"])
    cluster = store.connector.new_cluster(connect_timeout_s=2.0)
    try:
        assert cluster.auth_provider is None
    finally:
        cluster.shutdown()


# -- a real failed connection --------------------------------------------------------------


def test_an_unreachable_server_fails_within_the_deadline_naming_host_and_port(
        closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the driver's debug lines too: none may hold the password
    store = store_at(closed_port, timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(StoreError) as failure:
        store.setup()
    elapsed = time.monotonic() - started
    store.close()
    message = str(failure.value)
    assert 1.5 <= elapsed < 1.5 + 5, elapsed  # retried until the deadline, then gave up
    assert "127.0.0.1" in message and str(closed_port) in message
    assert "CASSANDRA_HOSTS" in message and "CASSANDRA_CONNECT_TIMEOUT_S" in message
    assert "Connection refused" in message
    # the password is nowhere: not in the error, its causes, the store, or any log record
    cause: BaseException | None = failure.value
    while cause is not None:
        assert PASSWORD not in str(cause) and PASSWORD not in repr(cause)
        cause = cause.__cause__ or cause.__context__
    assert caplog.records, "the driver and the store should have logged the attempts"
    assert PASSWORD not in all_log_text(caplog.records)
    retries = [r for r in caplog.records if r.name == "storage.cassandra_connect" and "retrying" in r.message]
    assert len(retries) >= 2


def test_retries_back_off_until_the_deadline(closed_port: int,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Real refused connections; only time is simulated (a 3 s deadline on a fake clock)."""
    caplog.set_level(logging.DEBUG)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    store = CassandraStore(["127.0.0.1"], closed_port, username="kit", password=PASSWORD,
                           connect_timeout_s=3.0, sleep=sleep, monotonic=lambda: now[0])
    with pytest.raises(StoreError, match="5 attempts"):
        store.setup()
    store.close()
    assert sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6])
    # one line per failed attempt from the store; the driver's per-attempt tracebacks are dropped
    noisy = [r for r in caplog.records if r.getMessage().startswith(
        ("Control connection failed to connect", "[control connection] Error connecting"))]
    assert noisy == []
    assert not logging.getLogger("cassandra.cluster").filters  # the filter is gone afterwards
    assert PASSWORD not in all_log_text(caplog.records)


# -- TLS -----------------------------------------------------------------------------------


def test_the_tls_context_verifies_the_server_with_tls_1_2_or_later(ca_pem: Any) -> None:
    import ssl

    context = tls_context(ca_pem)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(pair[0] for pair in c["subject"]) for c in context.get_ca_certs()] == [
        {"commonName": "streamkit-test-ca"}]
    system = tls_context(None)  # the system's CAs
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    assert system.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_unusable_ca_file_names_the_setting(tmp_path: Any) -> None:
    with pytest.raises(StoreError, match="CASSANDRA_TLS_CA_FILE=.*missing.pem"):
        tls_context(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(StoreError, match="CASSANDRA_TLS_CA_FILE"):
        tls_context(garbage)


def test_from_settings_passes_tls_to_the_driver(closed_port: int, ca_pem: Any) -> None:
    import ssl

    store = store_at(closed_port, CASSANDRA_TLS="true", CASSANDRA_TLS_CA_FILE=str(ca_pem))
    cluster = store.connector.new_cluster(connect_timeout_s=2.0)
    try:
        assert isinstance(cluster.ssl_context, ssl.SSLContext)
        assert cluster.ssl_context is store.connector.ssl_context
        assert len(cluster.ssl_context.get_ca_certs()) == 1
    finally:
        cluster.shutdown()
    assert "tls=True" in repr(store)
    plain = store_at(closed_port)
    assert plain.connector.ssl_context is None


# -- outage or broken request --------------------------------------------------------------


def test_driver_errors_are_told_apart_outage_or_not() -> None:
    import ssl

    from cassandra import (
        AuthenticationFailed,
        ConsistencyLevel,
        InvalidRequest,
        OperationTimedOut,
        ReadTimeout,
        Unauthorized,
        Unavailable,
        UnresolvableContactPoints,
        WriteTimeout,
        WriteType,
    )
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionShutdown

    outages = [
        NoHostAvailable("down", {"127.0.0.1:9042": ConnectionRefusedError(111, "refused")}),
        OperationTimedOut("no answer"),
        ReadTimeout("slow", consistency=ConsistencyLevel.ONE, required_responses=1,
                    received_responses=0),
        WriteTimeout("slow", consistency=ConsistencyLevel.ONE, required_responses=1,
                     received_responses=0, write_type=WriteType.BATCH),
        Unavailable("replicas", consistency=ConsistencyLevel.LOCAL_QUORUM, required_replicas=2,
                    alive_replicas=1),
        ConnectionShutdown("closed"), ConnectionRefusedError(111, "refused"), TimeoutError(),
        UnresolvableContactPoints("cassandra"),
        OSError(8, "Last error: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation"),
    ]
    broken = [
        InvalidRequest("no such table"), Unauthorized("no CREATE right"),
        AuthenticationFailed("bad password"),
        NoHostAvailable("auth", {"h": AuthenticationFailed("bad password")}),
        NoHostAvailable("tls", {"h": ssl.SSLCertVerificationError(1, "certificate verify failed")}),
        # how the driver re-raises a failed handshake: the type is lost, the text stays
        NoHostAvailable("tls", {"h": PermissionError(1, "Tried connecting to [('10.0.0.1', 9042)]."
                                     " Last error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                     "verify failed: self-signed certificate (_ssl.c:1006)")}),
        OSError(1, "Last error: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
        ValueError("a bug"),
    ]
    assert [e for e in outages if not is_unavailable(e)] == []
    assert [e for e in broken if is_unavailable(e)] == []


# -- one quick attempt ---------------------------------------------------------------------


def test_one_quick_attempt_fails_fast_as_unavailable(closed_port: int) -> None:
    from storage.base import StoreUnavailable

    sleeps: list[float] = []
    store = RecordingStore(["127.0.0.1"], closed_port, connect_timeout_s=60.0,
                           sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="1 attempt in") as failure:
        store.setup(create_schema=False, connect_timeout_s=0)
    assert time.monotonic() - started < 3
    assert sleeps == [] and len(store.clusters) == 1
    assert "CASSANDRA_CONNECT_TIMEOUT_S" in str(failure.value)
    assert all(c.is_shutdown for c in store.clusters) and store._cluster is None


def test_a_server_that_never_answers_fails_one_attempt_within_seconds() -> None:
    """A port that accepts TCP connections (the kernel's backlog) but never speaks CQL."""
    from storage.base import StoreUnavailable

    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        store = RecordingStore(["127.0.0.1"], silent.getsockname()[1], sleep=lambda _: None)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.setup(connect_timeout_s=0)
        assert time.monotonic() - started < 8
        assert all(c.is_shutdown for c in store.clusters) and store._cluster is None
    finally:
        silent.close()


def test_every_failed_attempt_shuts_its_cluster_down(closed_port: int) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    store = RecordingStore(["127.0.0.1"], closed_port, connect_timeout_s=1.0, sleep=sleep,
                           monotonic=lambda: now[0])
    with pytest.raises(StoreError):
        store.setup()
    assert len(store.clusters) >= 3
    assert all(c.is_shutdown for c in store.clusters)
