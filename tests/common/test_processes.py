"""Child processes (common/processes.py): started in a session with a log, stopped with no
process left behind, SIGKILL for one that ignores SIGTERM, SIGTERM when the parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from common import processes
from common.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def logged(path: Path, prefix: str) -> str:
    """The first line of ``path`` that starts with ``prefix``, once there is one."""
    def line() -> str | None:
        for text in path.read_text().splitlines():
            if text.startswith(prefix):
                return text
        return None

    return eventually(line, 20, f"{prefix!r} in {path}")


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_a_child_runs_in_its_own_session_with_its_output_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    log.parent.mkdir()
    log.write_text("an earlier run\n")
    proc = processes.start(python("import sys; print('hello', flush=True); print('oops', file=sys.stderr)"),
                           log, {"PATH": os.environ.get("PATH", "")}, header="--- child starting",
                           append=True)
    assert proc.wait(20) == 0
    assert log.read_text().splitlines() == ["an earlier run", "", "--- child starting", "hello",
                                            "oops"]
    replaced = processes.start(python("print('new')"), log)
    assert replaced.wait(20) == 0
    assert log.read_text() == "new\n"


def test_the_child_leads_a_new_session(tmp_path: Path) -> None:
    proc = processes.start(["sleep", "60"], tmp_path / "sleep.log")
    try:
        assert os.getsid(proc.pid) == proc.pid and os.getpgid(proc.pid) == proc.pid
    finally:
        assert processes.stop(proc, 10) == -signal.SIGTERM


def test_stdout_as_a_pipe_and_stderr_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "err.log"
    proc = processes.start(python("import sys; print('out'); print('err', file=sys.stderr)"),
                           log, pipe_stdout=True)
    out, _ = proc.communicate(timeout=20)
    assert out == "out\n" and log.read_text() == "err\n"


def test_stop_kills_a_child_that_ignores_sigterm_after_the_deadline(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = processes.start(python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('ignoring SIGTERM', flush=True)
        time.sleep(600)
    """), log)
    try:
        logged(log, "ignoring SIGTERM")
        started = time.monotonic()
        assert processes.stop(proc, 0.5, what="stubborn") == -signal.SIGKILL
        assert time.monotonic() - started >= 0.5
        assert processes.stop(proc, 0.5) == -signal.SIGKILL  # idempotent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def with_a_helper(log: Path) -> tuple[subprocess.Popen[Any], int]:
    """A child that starts a helper in its group (``sleep``), then waits; and the helper's pid."""
    proc = processes.start(python("""
        import subprocess, time
        helper = subprocess.Popen(['sleep', '600'])
        print('helper', helper.pid, flush=True)
        time.sleep(600)
    """), log)
    return proc, int(logged(log, "helper ").split()[1])


def test_stop_leaves_nothing_of_the_childs_group(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    # The child starts a helper in its group, and exits on SIGTERM without stopping it.
    proc, helper = with_a_helper(log)
    assert processes.stop(proc, 10) == -signal.SIGTERM
    eventually(lambda: gone(helper), 10, f"the helper (pid {helper}) to end")


def test_a_signal_to_the_group_reaches_every_member(tmp_path: Path) -> None:
    log = tmp_path / "group.log"
    proc, helper = with_a_helper(log)
    processes.send(proc, signal.SIGUSR1, group=True)  # ends both: neither handles it
    assert proc.wait(20) == -signal.SIGUSR1
    eventually(lambda: gone(helper), 10, f"the helper (pid {helper}) to end")
    assert processes.finish(proc, 0) == -signal.SIGUSR1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_die_with_parent_ends_the_child_when_its_parent_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    with log.open("wb") as out:
        parent = subprocess.Popen(python(f"""
            import time
            from pathlib import Path
            from common import processes
            child = processes.start(['sleep', '600'], Path({str(tmp_path / 'sleep.log')!r}),
                                    die_with_parent=True)
            print('child', child.pid, flush=True)
            time.sleep(600)
        """), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    child = 0
    try:
        child = int(logged(log, "child ").split()[1])
        assert not gone(child)
        parent.kill()
        parent.wait(20)
        eventually(lambda: gone(child), 10, f"the child (pid {child}) to end with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(20)
        if child and not gone(child):
            os.kill(child, signal.SIGKILL)
