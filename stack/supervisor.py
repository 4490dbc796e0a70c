"""Child processes of the embedded stack: start, watch, restart, stop, with nothing left behind.

A child that exits is started again after a backoff (1, 2, 4, ... 30 s), as systemd's
``Restart=on-failure`` or Docker's restart policies would; a child that exits
:attr:`RestartPolicy.max_restarts` times within :attr:`RestartPolicy.window_s` has
failed for good and :meth:`Supervisor.poll` reports it, so the stack stops.

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
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import backoff, processes

__all__ = ["Child", "GaveUp", "RestartPolicy", "Supervisor"]

log = logging.getLogger(__name__)

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


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)
    #: When each restart happened (monotonic seconds), oldest first.
    restarts: list[float] = field(default_factory=list)
    #: Exit code of the run that ended last, while the child waits for its restart.
    last_exit: int | None = None
    #: When the waiting child is due to start again; None while it runs.
    restart_at: float | None = None
    #: A service the other children use (the broker): stopped after them.
    service: bool = False
    #: True for a child that is "starting" after each start until someone sets ``ready``
    #: (the Cassandra node: its process runs seconds before CQL answers).
    needs_ready: bool = False
    ready: bool = True
    #: Where a node of a cluster answers (``host:port``), shown with its state; None for a stage.
    address: str | None = None

    def start(self) -> None:
        self.process = processes.start(
            self.argv, self.log_path, self.env, append=True, die_with_parent=True,
            header=f"--- {self.name} starting at {time.ctime()}: {' '.join(self.argv)}")
        self.started_at = time.monotonic()
        self.ready = not self.needs_ready

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_leader(self, sig: int) -> None:
        """Signal the child itself; it stops its own helpers (Spark stops its JVM) in order."""
        if self.process is not None:
            processes.send(self.process, sig)

    def kill_group(self) -> None:
        """SIGKILL what is left of the child's session (its process group) after it exited."""
        if self.process is not None:
            processes.kill_group(self.process)

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            processes.send(self.process, sig, group=True)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass(frozen=True)
class RestartPolicy:
    """How often a child that exits is started again before the stack gives up."""

    max_restarts: int = 5
    window_s: float = 300.0
    first_backoff_s: float = 1.0  # then doubling, up to max_backoff_s
    max_backoff_s: float = 30.0

    def delay(self, recent_restarts: int) -> float:
        return backoff.delay(recent_restarts, self.first_backoff_s, cap_s=self.max_backoff_s)


class GaveUp(RuntimeError):
    """A child kept failing: it exited more often than its restart policy allows."""

    def __init__(self, child: Child, policy: RestartPolicy) -> None:
        super().__init__(
            f"{child.name} exited with code {child.last_exit} and had already been restarted "
            f"{policy.max_restarts} times within {policy.window_s:.0f} s: giving up; the end "
            f"of {child.log_path}:\n{child.log_tail()}")
        self.child = child


class Supervisor:
    """Starts children, restarts those that exit, stops them all newest first.

    Call :meth:`poll` regularly (the stack does, twice a second): it notices exits,
    schedules and performs restarts, and raises :class:`GaveUp` for a child that keeps
    failing. Stopping: SIGTERM, then SIGKILL after a grace.
    """

    def __init__(self, grace_s: float = 15.0, policy: RestartPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children: list[Child] = []
        self.grace_s = grace_s
        self.policy = policy or RestartPolicy()
        self._clock = clock

    def poll(self) -> list[str]:
        """Handle exited children; returns one line per event (exit noticed, restart done)."""
        events = []
        now = self._clock()
        for child in self.children:
            if child.restart_at is None:
                code = child.exit_code
                if code is None:
                    continue
                child.last_exit = code
                # What the child started in its session (e.g. Spark's JVM) goes with it.
                child.kill_group()
                recent = [t for t in child.restarts if now - t < self.policy.window_s]
                if len(recent) >= self.policy.max_restarts:
                    raise GaveUp(child, self.policy)
                delay = self.policy.delay(len(recent))
                child.restart_at = now + delay
                events.append(f"{child.name} exited with code {code}; restarting it in "
                              f"{delay:.0f} s (restart {len(recent) + 1} of at most "
                              f"{self.policy.max_restarts} in {self.policy.window_s / 60:.0f} min)")
            elif now >= child.restart_at:
                child.restart_at = None
                child.restarts.append(now)
                child.start()
                events.append(f"{child.name} restarted (pid "
                              f"{child.process.pid if child.process else '?'})")
        for event in events:
            log.warning("%s", event)
        return events

    def states(self) -> list[dict[str, object]]:
        """Each child's state for health reports: name, running, starting (not ready yet) or
        restarting, restarts, and how long it has been up."""
        now = time.monotonic()  # Child.started_at's clock

        def state(c: Child) -> str:
            if c.restart_at is not None or c.exit_code is not None:
                return "restarting"
            return "running" if c.ready else "starting"

        return [{"name": c.name, "state": state(c),
                 "restarts": len(c.restarts), "last_exit": c.last_exit,
                 "pid": c.process.pid if c.process else None, "address": c.address,
                 "up_s": round(now - c.started_at, 1) if c.process else None}
                for c in self.children]

    def start(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        log.info("started %s (pid %s), log %s", child.name,
                 child.process.pid if child.process else "?", child.log_path)
        return child

    def stop_all(self) -> None:
        """Stop every child: first the stages, newest first, then the services they use
        (children started with ``service=True``, e.g. the broker: a stopping Spark job still
        writes its last batch's results to Kafka)."""
        import psutil

        own = {p.pid for p in psutil.Process().children()}  # processes not started as children
        own -= {c.process.pid for c in self.children if c.process is not None}
        for child in self.children:
            child.restart_at = None  # no restart while stopping
        stages = [c for c in reversed(self.children) if not c.service]
        services = [c for c in reversed(self.children) if c.service]
        for group in (stages, services):
            for child in group:
                child.signal_leader(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            for child in group:
                if child.process is not None:
                    # Then whatever is left in its group (e.g. Spark's JVM and Python workers).
                    processes.finish(child.process, max(0.1, deadline - time.monotonic()),
                                     child.name)
        self.stop_adopted(own)

    def stop_adopted(self, own: set[int], grace_s: float = 5.0) -> None:
        """Stop descendants that outlived their parents and were adopted (see
        :func:`become_subreaper`): this process's direct children other than those in
        ``own`` (orphans are re-parented to it), with everything below them. Descendants
        of ``own`` (e.g. a browser a test started) are not touched."""
        import psutil

        orphans = [p for p in psutil.Process().children() if p.pid not in own and _running(p)]
        adopted = []
        for orphan in orphans:
            adopted.append(orphan)
            with contextlib.suppress(psutil.Error):
                adopted.extend(p for p in orphan.children(recursive=True) if _running(p))
        if not adopted:
            return
        for proc in adopted:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(adopted, timeout=grace_s)
        for proc in alive:
            try:
                name = " ".join(proc.cmdline()[:3])
            except psutil.Error:
                name = "?"
            log.warning("pid %d (%s) did not stop within %.0f s: killing it", proc.pid, name,
                        grace_s)
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace_s)


def _running(proc: object) -> bool:
    """True for a live process; False for one gone or a zombie (dead, its parent not told)."""
    import psutil

    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)  # type: ignore[attr-defined]
    except psutil.Error:
        return False
