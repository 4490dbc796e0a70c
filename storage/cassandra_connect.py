"""Reaching Cassandra: the driver's ``Cluster`` (balancing, consistency, auth, TLS), the
connect retry, and which driver errors mean an outage.

:class:`Connector` holds where and how to connect and makes sessions for
:class:`storage.cassandra.CassandraStore`; :func:`is_unavailable` and :func:`failure`
turn a driver error into :class:`~storage.base.StoreUnavailable` (retry later) or
:class:`~storage.base.StoreError` (a setting or a request to fix).

Failures: :class:`~storage.base.StoreUnavailable` when the server cannot be reached or
did not answer in time (no host available, timeouts, too few replicas alive, an
overloaded or starting node, the connect retry running out, a schema not created or
agreed yet): retry later. :class:`~storage.base.StoreError` for the rest (refused
credentials or certificate, a missing right, an invalid request).

Connecting retries with backoff for up to ``CASSANDRA_CONNECT_TIMEOUT_S`` (a
server still starting under ``docker compose``), or ``setup(connect_timeout_s=...)``
(0: one attempt, for a caller with its own backoff), then raises StoreUnavailable
naming the hosts and port; refused credentials and certificates are not retried. A
failed attempt, and a failed setup, shuts its driver ``Cluster`` down.

TLS: with ``CASSANDRA_TLS=true`` the connection is TLS 1.2 or later, and the server's
certificate is verified against ``CASSANDRA_TLS_CA_FILE`` (PEM) or the system's CAs,
host name included. The driver resolves contact points to addresses and checks each
certificate against the IP address it connects to (the nodes it discovers too), so every
node's certificate must carry its IP address as a subject alternative name: one naming
only a DNS name fails the check. Verification failures (like refused credentials) are
StoreError at once, not retried. A password sent without TLS to a host that is not
loopback logs a warning. The password is handed to the driver's
``PlainTextAuthProvider`` and appears in no log line or error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from common import backoff
from storage.base import StoreError, StoreUnavailable

__all__ = [
    "Connector",
    "failure",
    "is_loopback",
    "is_unavailable",
    "tls_context",
]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """The client's TLS settings: TLS 1.2 or later, the server's certificate and host name checked.

    Args:
        ca_file: PEM file of the CA certificate(s) that sign the server's; None: the
            system's CAs.

    Raises:
        StoreError: the CA file cannot be read or holds no certificate (naming
            CASSANDRA_TLS_CA_FILE).
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(ca_file) if ca_file else None)
    except (OSError, ValueError) as e:  # FileNotFoundError, ssl.SSLError (not PEM)
        raise StoreError(f"CASSANDRA_TLS_CA_FILE={ca_file}: cannot load CA certificates "
                         f"from it ({e}); it must be a readable PEM file") from e
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context


def _all_errors(error: BaseException) -> list[BaseException]:
    """``error``, or the per-host errors of a NoHostAvailable (which has them in ``errors``)."""
    errors = getattr(error, "errors", None)
    if isinstance(errors, Mapping) and errors:
        return [e for e in errors.values() if isinstance(e, BaseException)] or [error]
    return [error]


def _tls_refused(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLError):
        return not isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    # The driver re-raises a failed TLS handshake as a plain OSError with the text only:
    # "Tried connecting to [...]. Last error: [SSL: CERTIFICATE_VERIFY_FAILED] ...".
    text = str(error)
    return isinstance(error, OSError) and "[SSL: " in text and "EOF" not in text


def is_tls_failure(error: BaseException) -> bool:
    """A refused certificate or a TLS handshake that cannot work (a setting to fix), not a
    connection dropped during the handshake."""
    return all(_tls_refused(e) for e in _all_errors(error))


def is_auth_failure(error: BaseException) -> bool:
    from cassandra import AuthenticationFailed

    return all(isinstance(e, AuthenticationFailed) for e in _all_errors(error))


def is_unavailable(error: BaseException) -> bool:
    """Whether a driver error means "the server cannot be reached or did not answer in time".

    True for no host available (unless every host refused the credentials or the
    certificate), timeouts of the driver and of the replicas, too few replicas alive,
    a node overloaded or still starting, broken connections, and contact points whose
    names do not resolve (yet: a compose service still starting).
    """
    from cassandra import OperationTimedOut, Timeout, Unavailable, UnresolvableContactPoints
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionBusy, ConnectionException
    from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage

    if isinstance(error, NoHostAvailable):
        return not (is_auth_failure(error) or is_tls_failure(error))
    if isinstance(error, OSError) and is_tls_failure(error):
        return False
    return isinstance(error, OperationTimedOut | Timeout | Unavailable | ConnectionException
                      | ConnectionBusy | OverloadedErrorMessage | IsBootstrappingErrorMessage
                      | UnresolvableContactPoints | OSError)



class _DropDriverConnectErrors(logging.Filter):
    """Drops the driver's tracebacks for a failed first connection while :meth:`Connector.connect`
    retries.

    The connector logs one warning line per failed attempt instead, and raises StoreError
    at the end; a retry loop of a minute would otherwise log dozens of tracebacks.
    """

    NOISE = ("Control connection failed to connect", "[control connection] Error connecting to")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


@contextlib.contextmanager
def _retrying_quietly() -> Iterator[None]:
    logger = logging.getLogger("cassandra.cluster")
    quiet = _DropDriverConnectErrors()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def failure(error: BaseException, message: str) -> StoreError:
    """StoreUnavailable(message) for an outage (:func:`is_unavailable`), else StoreError."""
    return StoreUnavailable(message) if is_unavailable(error) else StoreError(message)


@dataclasses.dataclass
class Connector:
    """Where and how to connect: contact points, port, credentials, data centre, TLS.

    :meth:`connect` makes a session, retrying; ``sleep`` and ``monotonic`` are injected so
    tests simulate the waiting. The password appears in no repr, log line or message
    (:meth:`reason`).
    """

    hosts: tuple[str, ...]
    port: int = 9042
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    local_dc: str | None = None
    #: The TLS settings of every connection (None: plain TCP).
    ssl_context: ssl.SSLContext | None = None
    request_timeout_s: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    @property
    def address(self) -> str:
        """``host,host port n``, for messages."""
        return f"{','.join(self.hosts)} port {self.port}"

    def scrub(self, text: str) -> str:
        """``text`` with the password, should it ever appear, replaced (if not trivially short)."""
        if self.password and len(self.password) >= 4:
            text = text.replace(self.password, "***")
        return text

    def reason(self, error: BaseException) -> str:
        """``error`` as text for a message or a log line, without the password."""
        return self.scrub(f"{type(error).__name__}: {error}")

    def new_cluster(self, connect_timeout_s: float, control_timeout_s: float = 10.0) -> Any:
        """A driver ``Cluster`` for the settings (not connected)."""
        from cassandra import ConsistencyLevel, ProtocolVersion
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import tuple_factory

        balancing = (TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc))
                     if self.local_dc else TokenAwarePolicy(DCAwareRoundRobinPolicy()))
        profile = ExecutionProfile(
            load_balancing_policy=balancing,
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            request_timeout=self.request_timeout_s,
            row_factory=tuple_factory,
        )
        auth = (PlainTextAuthProvider(username=self.username, password=self.password or "")
                if self.username else None)
        return Cluster(
            contact_points=list(self.hosts),
            port=self.port,
            auth_provider=auth,
            ssl_context=self.ssl_context,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=connect_timeout_s,
            control_connection_timeout=control_timeout_s,
            # Protocol v5, what Cassandra 4.0 and later speak: without it the driver offers
            # newer versions first and logs two warnings on every connection as it steps down.
            protocol_version=ProtocolVersion.V5,
        )

    def connect(self, timeout_s: float) -> tuple[Any, Any]:
        """A connected ``(Cluster, Session)``, retrying with backoff for ``timeout_s`` (0: one
        attempt). A failed attempt shuts its Cluster down.

        Raises:
            StoreUnavailable: no attempt succeeded in time.
            StoreError: the server refused the credentials or the certificate failed
                (not retried: the same settings fail the same way).
        """
        started = self.monotonic()
        deadline = started + max(0.0, timeout_s)
        delays = backoff.delays(first_s=0.2, cap_s=5.0)  # between connection attempts
        attempt = 0
        with _retrying_quietly():
            while True:
                attempt += 1
                remaining = deadline - self.monotonic()
                cluster = None
                try:
                    cluster = self.new_cluster(
                        connect_timeout_s=min(5.0, max(1.0, remaining)),
                        control_timeout_s=min(10.0, max(2.0, remaining)))
                    return cluster, cluster.connect()
                except Exception as e:  # every driver failure: retried, then StoreUnavailable
                    if cluster is not None:
                        cluster.shutdown()
                    self._raise_if_refused(e)
                    left = deadline - self.monotonic()
                    if left <= 0:
                        raise StoreUnavailable(
                            f"cannot connect to Cassandra at {self.address}: {attempt} "
                            f"attempt{'s' if attempt > 1 else ''} in "
                            f"{self.monotonic() - started:.1f} s failed; last error: "
                            f"{self.reason(e)}. Check that the server is running and reachable "
                            "from here and that CASSANDRA_HOSTS and CASSANDRA_PORT point at it; "
                            "raise CASSANDRA_CONNECT_TIMEOUT_S if it is still starting, or unset "
                            "CASSANDRA_HOSTS to run without Cassandra") from e
                    pause = min(next(delays), left)
                    log.warning("Cassandra at %s port %d: attempt %d failed (%s); retrying in "
                                "%.1f s", ",".join(self.hosts), self.port, attempt,
                                self.reason(e), pause)
                    self.sleep(pause)

    def _raise_if_refused(self, error: BaseException) -> None:
        """StoreError for a failure no retry can mend: credentials or the certificate."""
        at = f"Cassandra at {self.address}"
        if is_auth_failure(error):
            who = (f"refused the credentials of user {self.username!r}: check"
                   if self.username else "requires authentication: set")
            raise StoreError(f"{at} {who} CASSANDRA_USERNAME and CASSANDRA_PASSWORD "
                             f"({self.reason(error)})") from error
        if is_tls_failure(error):
            hint = ("check CASSANDRA_TLS_CA_FILE (the CA that signed the server's certificate) "
                    "and that the certificate names the address connected to"
                    if self.ssl_context else "does the server require TLS? set CASSANDRA_TLS")
            raise StoreError(f"TLS with {at} failed: {self.reason(error)}; {hint}") from error
