"""Starting the JVM engines the kit fetches from Maven Central (``make setup``): what they share.

Kafka's broker (:mod:`common.broker`) and Cassandra's node (:mod:`storage.cassandra_node`)
each run as one ``java -cp jars/<engine>/*`` process on loopback; both need a ``java``, their
jars, free ports and the end of their log for error messages.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

__all__ = ["JvmError", "classpath", "free_port", "java_command", "log_tail", "port_is_taken"]


class JvmError(RuntimeError):
    """A JVM engine cannot start; the message says why and what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now. Whoever binds it next must handle losing a race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_taken(host: str, port: int) -> bool:
    """True when something listens on the port. Connections of a process that just ended
    (TIME_WAIT) do not count: Java binds with SO_REUSEADDR, and so does this check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def java_command() -> str:
    """The ``java`` to run the JVM engines with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if not found:
        raise JvmError("Java 17 or newer is needed for Kafka, Spark and Cassandra and was not "
                       "found (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: "
                       "brew install openjdk@17)")
    return found


def classpath(jars_dir: Path, engine: str) -> str:
    """``jars_dir/engine/*`` as a Java class path; a clear error when the jars are missing."""
    folder = jars_dir / engine
    if not any(folder.glob("*.jar")):
        raise JvmError(f"no {engine} jars in {folder}: run `make setup` (it fetches them from "
                       "Maven Central with `mvn -f queue/pom.xml`, see README)")
    return str(folder / "*")


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
