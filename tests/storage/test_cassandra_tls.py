"""The Cassandra store over TLS, against a second real node that accepts only TLS clients.

The node is the kit's own (storage.cassandra_node.CassandraNode) with
``client_encryption_options`` added to the config it writes, and a self-signed
certificate made by the JDK's ``keytool`` naming 127.0.0.1 (an IP subject alternative
name). That certificate, exported as PEM, is the clients' CA file. Starting the node
costs about 10 s; the module's tests share it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.base import ResultRow, StoreError, StoreUnavailable
from storage.cassandra import CassandraStore
from storage.cassandra_connect import tls_context
from storage.cassandra_node import CassandraNode

T0 = dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.UTC)
STOREPASS = "streamkit-test"


def keytool() -> str:
    found = shutil.which("keytool")
    if found is None:
        java = shutil.which("java")
        candidate = Path(java).resolve().parent / "keytool" if java else None
        found = str(candidate) if candidate and candidate.exists() else None
    if found is None:
        pytest.fail("keytool (from the JDK) is needed to make the node's certificate")
    return found


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A PKCS12 keystore with a self-signed key pair for 127.0.0.1, and its certificate as PEM."""
    keystore, pem = folder / f"{name}.p12", folder / f"{name}.pem"
    tool = keytool()
    subprocess.run([tool, "-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname",
                    "secp256r1", "-dname", f"CN={name}", "-ext", "SAN=ip:127.0.0.1",
                    "-validity", "2", "-keystore", str(keystore), "-storetype", "PKCS12",
                    "-storepass", STOREPASS, "-keypass", STOREPASS],
                   check=True, capture_output=True)
    subprocess.run([tool, "-exportcert", "-rfc", "-alias", name, "-keystore", str(keystore),
                    "-storetype", "PKCS12", "-storepass", STOREPASS, "-file", str(pem)],
                   check=True, capture_output=True)
    return keystore, pem


class TlsNode(CassandraNode):
    """The kit's node with client-to-node encryption required (no plain CQL)."""

    def __init__(self, *args: Any, keystore: Path, ca_file: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keystore = keystore
        self.ca_file = ca_file

    def prepare(self) -> list[str]:
        argv = super().prepare()
        with self.config_path.open("a") as config:
            config.write("\n".join([
                "# Added by tests/storage/test_cassandra_tls.py: TLS only for CQL clients.",
                "client_encryption_options:",
                "  enabled: true",
                "  optional: false",
                f"  keystore: {self.keystore}",
                f"  keystore_password: {STOREPASS}",
                "  store_type: PKCS12",
                "  require_client_auth: false",
                "  accepted_protocols: [TLSv1.2, TLSv1.3]",
                "",
            ]))
        return argv

    def answers(self, timeout_s: float = 2.0) -> bool:
        """CQL over TLS answers (the base class's plain probe never would)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=min(timeout_s, 1.0)):
                pass
        except OSError:
            return False
        from cassandra.cluster import Cluster

        cluster = Cluster([self.host], port=self.port, protocol_version=5,
                          ssl_context=tls_context(self.ca_file), connect_timeout=timeout_s)
        try:
            return cluster.connect().execute("SELECT release_version FROM system.local",
                                             timeout=timeout_s).one() is not None
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        finally:
            cluster.shutdown()


@pytest.fixture(scope="module")
def tls_node(cassandra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsNode]:
    """A second node, TLS only (the session's node first: without jars both skip alike)."""
    folder = tmp_path_factory.mktemp("cassandra-tls")
    keystore, pem = make_certificate(folder, "node")
    node = TlsNode(folder / "node", port=0, log_path=folder / "cassandra.log",
                   unsafe_system=True, heap="384m", keystore=keystore, ca_file=pem)
    node.start()
    try:
        yield node
    finally:
        node.kill()  # its data is thrown away: no need to wait for a drain


def store_on(node: TlsNode, **options: Any) -> CassandraStore:
    options.setdefault("connect_timeout_s", 20.0)
    return CassandraStore([node.host], node.port, keyspace="tls_test", **options)


def test_a_store_talks_tls_to_a_node_that_requires_it(tls_node: TlsNode) -> None:
    import ssl

    store = store_on(tls_node, tls=True, tls_ca_file=tls_node.ca_file)
    try:
        store.setup()
        store.upsert([ResultRow("s", "a", T0, T0 + dt.timedelta(seconds=10), {"n": 1})])
        assert [r.values for r in store.latest("s", 5)] == [{"n": 1}]
        sock = store._cluster.control_connection._connection._socket
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        store.drop_keyspace()
    finally:
        store.close()


def test_a_certificate_of_another_ca_is_refused_at_once(
        tls_node: TlsNode, tmp_path: Path) -> None:
    """A verification failure is a setting to fix: StoreError, no retries, not an outage."""
    _, other = make_certificate(tmp_path, "other")
    store = store_on(tls_node, tls=True, tls_ca_file=other)
    started = time.monotonic()
    with pytest.raises(StoreError, match="CASSANDRA_TLS_CA_FILE") as failure:
        store.setup()
    assert time.monotonic() - started < 10  # well within connect_timeout_s=20: not retried
    assert not isinstance(failure.value, StoreUnavailable)
    assert "certificate verify failed" in str(failure.value)
    assert store._cluster is None


def test_the_host_name_is_checked_against_the_certificate(tls_node: TlsNode) -> None:
    """The certificate names 127.0.0.1 only: a handshake naming another host fails.

    (The driver names the address it connects to, resolved: "localhost" is checked as
    127.0.0.1. So this is shown at the handshake itself, with the store's context.)
    """
    import ssl

    context = tls_context(tls_node.ca_file)
    with socket.create_connection((tls_node.host, tls_node.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection((tls_node.host, tls_node.port), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        context.wrap_socket(raw, server_hostname="cassandra.example")
