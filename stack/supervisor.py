"""Child processes of the embedded stack: start, watch, stop, with nothing left behind.

Each child runs in its own session (so Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in order) and is asked by the
kernel to receive SIGTERM if the supervisor dies (``PR_SET_PDEATHSIG``), so
even a ``kill -9`` of the supervisor leaves no orphan holding a port. Output
goes to ``DATA_DIR/logs/<name>.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "Supervisor"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux), so none outlives the stack unseen.

    PySpark's worker daemon leaves its parent's process group (``os.setpgid(0, 0)``
    in ``pyspark/daemon.py``), so killing the processing job's group misses it; it
    exits by itself once the JVM is gone, but not at once (CI found three still
    running after the stack had exited). As a subreaper, the stack becomes their
    parent when the JVM exits, and :meth:`Supervisor.stop_all` stops them.
    """
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except OSError:
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the supervisor's own cleanup still stops the children


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"\n--- {self.name} starting at {time.ctime()}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                list(self.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(self.env), start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.started_at = time.monotonic()

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_leader(self, sig: int) -> None:
        """Signal the child itself; it stops its own helpers (Spark stops its JVM) in order."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Starts children and stops them all, newest first: SIGTERM, then SIGKILL after a grace."""

    def __init__(self, grace_s: float = 15.0) -> None:
        self.children: list[Child] = []
        self.grace_s = grace_s

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        log.info("started %s (pid %s), log %s", child.name,
                 child.process.pid if child.process else "?", child.log_path)
        return child

    def failed(self) -> Child | None:
        """The first child that has exited, if any (the stack treats any exit as a failure)."""
        for child in self.children:
            if child.exit_code is not None:
                return child
        return None

    def stop_all(self) -> None:
        import psutil

        own = {p.pid for p in psutil.Process().children()}  # e.g. the embedded broker, kept
        for child in reversed(self.children):
            child.signal_leader(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", child.name, self.grace_s)
            # Kill whatever is left in the group (e.g. Spark's JVM and Python workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        self.stop_adopted(own)

    def stop_adopted(self, own: set[int], grace_s: float = 5.0) -> None:
        """Stop descendants that outlived their parents and were adopted (see
        :func:`become_subreaper`): every process below this one but those in ``own``."""
        import psutil

        adopted = [p for p in psutil.Process().children(recursive=True) if p.pid not in own]
        if not adopted:
            return
        for proc in adopted:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(adopted, timeout=grace_s)
        for proc in alive:
            log.warning("pid %d (%s) did not stop within %.0f s: killing it", proc.pid,
                        " ".join(proc.cmdline()[:3]) if proc.is_running() else "?", grace_s)
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace_s)
