"""The stack's supervisor leaves no process behind, even one that left its parent's group."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent

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


def test_children_get_two_malloc_arenas_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from common import settings as settings_module
    from stack.__main__ import child_env

    settings = settings_module.load({})
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert child_env(settings, "127.0.0.1:9092")["MALLOC_ARENA_MAX"] == "2"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert child_env(settings, "127.0.0.1:9092")["MALLOC_ARENA_MAX"] == "8"
