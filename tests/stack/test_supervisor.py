"""The stack's supervisor leaves no process behind, even one that left its parent's group."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run in a process of its own: becoming a subreaper must not change pytest's own process.
SCRIPT = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from stack.supervisor import Child, Supervisor, become_subreaper

    assert become_subreaper()
    log = Path(sys.argv[1])
    # The child starts a grandchild that leaves the child's process group (as pyspark.daemon
    # does), so killing the child's group misses it; then the child waits.
    child_code = (
        "import os, subprocess, sys, time\\n"
        "p = subprocess.Popen([sys.executable, '-c', "
        "'import os, time; os.setpgid(0, 0); time.sleep(600)'])\\n"
        "print(p.pid, flush=True)\\n"
        "time.sleep(600)\\n"
    )
    supervisor = Supervisor(grace_s=5)
    child = supervisor.start(Child("c", [sys.executable, "-c", child_code], log, {}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = [l for l in log.read_text().splitlines() if l.strip().isdigit()]
        if lines:
            break
        time.sleep(0.05)
    print(lines[0], flush=True)
    supervisor.stop_all()
""")


def test_stop_all_stops_a_grandchild_outside_the_childs_group(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "child.log")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    grandchild = int(out.stdout.split()[-1])
    assert not psutil.pid_exists(grandchild) or \
        psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def _poll_until(supervisor: Any, wanted: Callable[[list[str]], bool], timeout_s: float = 30
                ) -> list[str]:
    """Poll the supervisor until the events seen so far satisfy ``wanted``; returns them."""
    from common.waiting import eventually

    seen: list[str] = []

    def done() -> bool:
        seen.extend(supervisor.poll())
        return wanted(seen)

    eventually(done, timeout_s, "the supervisor's events", interval_s=0.02)
    return seen


def test_a_killed_child_is_started_again(tmp_path: Path) -> None:
    from stack.supervisor import Child, RestartPolicy, Supervisor

    supervisor = Supervisor(grace_s=5, policy=RestartPolicy(first_backoff_s=0.0))
    child = supervisor.start(Child("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"],
                                   tmp_path / "sleeper.log", {}))
    try:
        first = child.process.pid if child.process else None
        psutil.Process(first).kill()
        events = _poll_until(supervisor, lambda e: any("restarted" in x for x in e))
        assert events[0].startswith("sleeper exited with code -9; restarting it in 0 s"), events
        assert child.process is not None and child.process.pid != first
        assert child.exit_code is None and len(child.restarts) == 1
        assert supervisor.states()[0]["state"] == "running"
        assert supervisor.states()[0]["restarts"] == 1
        assert supervisor.states()[0]["last_exit"] == -9
    finally:
        supervisor.stop_all()


def test_a_child_that_keeps_failing_makes_the_supervisor_give_up(tmp_path: Path) -> None:
    from stack.supervisor import Child, GaveUp, RestartPolicy, Supervisor

    supervisor = Supervisor(grace_s=5, policy=RestartPolicy(max_restarts=2, window_s=60,
                                                            first_backoff_s=0.0))
    child = supervisor.start(Child("crasher", [sys.executable, "-c", "print('boom'); exit(3)"],
                                   tmp_path / "crasher.log", {}))
    try:
        with pytest.raises(GaveUp, match=r"crasher exited with code 3 and had already been "
                                         r"restarted 2 times within 60 s") as failure:
            _poll_until(supervisor, lambda e: False)
        assert "boom" in str(failure.value)  # the end of its log
        assert len(child.restarts) == 2
    finally:
        supervisor.stop_all()


def test_restarts_back_off_and_old_ones_age_out_of_the_window() -> None:
    from stack.supervisor import RestartPolicy

    policy = RestartPolicy(first_backoff_s=1.0, max_backoff_s=4.0)
    assert [policy.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_services_stop_after_the_stages_that_use_them(tmp_path: Path) -> None:
    """The broker (a service) gets SIGTERM only once every stage has exited."""
    from stack.supervisor import Child, Supervisor

    marker = tmp_path / "stage-ended"
    service_code = textwrap.dedent(f"""
        import signal, sys, time, pathlib
        def on_term(*_):
            print("stage had ended" if pathlib.Path({str(marker)!r}).exists() else "too early",
                  flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(600)
    """)
    stage_code = textwrap.dedent(f"""
        import signal, sys, time, pathlib
        def on_term(*_):
            time.sleep(0.5)
            pathlib.Path({str(marker)!r}).write_text("x")
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", flush=True)
        time.sleep(600)
    """)
    supervisor = Supervisor(grace_s=10)
    service = supervisor.start(Child("svc", [sys.executable, "-c", service_code],
                                     tmp_path / "svc.log", {}, service=True))
    stage = supervisor.start(Child("stage", [sys.executable, "-c", stage_code],
                                   tmp_path / "stage.log", {}))
    from common.waiting import eventually

    eventually(lambda: all("ready" in c.log_path.read_text() for c in (service, stage)), 30,
               "both children's signal handlers")
    supervisor.stop_all()
    assert "stage had ended" in service.log_path.read_text()
