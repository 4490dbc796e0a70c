"""Child processes started and stopped the one way the kit does it.

:func:`start` runs a child in its own session (its own process group, so Ctrl-C in a
terminal reaches only the parent, which then stops its children in order), stdin from
/dev/null, stdout and stderr to a log file. With ``die_with_parent`` the kernel sends the
child SIGTERM if the parent thread that started it dies first (Linux ``PR_SET_PDEATHSIG``),
so even a ``kill -9`` of the parent leaves no orphan holding a port.

:func:`stop` sends a signal (SIGTERM unless told otherwise) to the child, or to its whole
group, waits until a deadline, then SIGKILLs whatever is left of the group and reaps the
child. :func:`finish` is that second half, for a caller that signalled several children
first and waits on them against one deadline.

Used by the stack's supervisor, the JVM engines (:mod:`common.jvm`), the NGINX demo's
nginx and the benchmarks' workspaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["finish", "kill_group", "send", "start", "stop"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: After SIGKILL, how long to wait for the child to be reaped (a process in
#: uninterruptible sleep dies only when its I/O returns).
_REAP_S = 10.0


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux: a pre-exec hook asking the kernel for SIGTERM when the parent dies. None
    elsewhere. libc is loaded here, in the parent; the child only makes the one prctl call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


def start(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None, *,
          cwd: Path | None = None, header: str | None = None, append: bool = False,
          die_with_parent: bool = False, pipe_stdout: bool = False) -> subprocess.Popen[Any]:
    """Start ``argv`` in a session of its own, output to ``log_path``.

    Args:
        env: the child's whole environment (default: this process's).
        cwd: its working directory (default: this process's).
        header: a line written to the log before the child's output (a restart's marker).
        append: add to the log instead of replacing it.
        die_with_parent: the child gets SIGTERM when the thread that started it dies.
        pipe_stdout: stdout as a text pipe (``proc.stdout``) for the caller to read; only
            stderr goes to the log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab" if append else "wb") as out:
        if header is not None:
            out.write(f"\n{header}\n".encode())
            out.flush()
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else out,
            stderr=out if pipe_stdout else subprocess.STDOUT,
            env=None if env is None else dict(env), cwd=cwd, text=pipe_stdout,
            start_new_session=True,
            preexec_fn=_parent_death_signal() if die_with_parent else None,
        )


def send(proc: subprocess.Popen[Any], sig: int, *, group: bool = False) -> None:
    """Send ``sig`` to a running child (or, with ``group``, to its whole process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL what is left of the child's process group (e.g. helpers it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def finish(proc: subprocess.Popen[Any], timeout_s: float, what: str | None = None) -> int | None:
    """Wait up to ``timeout_s`` for a signalled child, then SIGKILL its group and reap it.

    Returns its exit code (negative: the signal that ended it), None if it could not be
    reaped even after SIGKILL.
    """
    name = what or f"pid {proc.pid}"
    try:
        proc.wait(max(0.0, timeout_s))
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0f s: killing it", name, timeout_s)
    kill_group(proc)  # whatever is left in its group, even once the child itself is gone
    try:
        proc.wait(_REAP_S)
    except subprocess.TimeoutExpired:
        log.warning("%s is still there %.0f s after SIGKILL", name, _REAP_S)
    return proc.returncode


def stop(proc: subprocess.Popen[Any], timeout_s: float, sig: int = signal.SIGTERM, *,
         group: bool = False, what: str | None = None) -> int | None:
    """Stop a child: ``sig`` to it (or its whole group), then :func:`finish`. Idempotent."""
    send(proc, sig, group=group)
    return finish(proc, timeout_s, what)
