"""The load generator (``bench/_load.py``) as a child process, its progress read as it comes."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from bench._processes import PY, ROOT, Workspace, base_env
from common import processes

LOAD_SCRIPT = ROOT / "bench" / "_load.py"


class Load:
    """``bench/_load.py`` in a child process; its progress lines are parsed as they come."""

    def __init__(self, ws: Workspace, bootstrap: str, rate: float, seconds: float,
                 mode: str = "kit", name: str = "load", hosts: int = 24,
                 host_prefix: str | None = None, times_out: Path | None = None) -> None:
        argv = [PY, str(LOAD_SCRIPT), "--bootstrap", bootstrap, "--rate", str(rate),
                "--seconds", str(seconds), "--mode", mode, "--hosts", str(hosts)]
        if host_prefix:
            argv += ["--host-prefix", host_prefix]
        if times_out:
            argv += ["--times-out", str(times_out)]
        self.started = time.monotonic()
        self.proc = ws.start(argv, f"{name}.err", env=base_env(ws.path(name)), stdout_pipe=True)
        self.last: dict[str, Any] = {"sent": 0, "acked": 0, "failed": 0}
        self.done: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                self.last = value
                if value.get("done"):
                    self.done = value

    @property
    def acked(self) -> int:
        return int(self.last.get("acked", 0))

    def wait(self, timeout_s: float) -> dict[str, Any]:
        self.proc.wait(timeout_s)
        self._thread.join(5)
        if self.done is None:
            raise RuntimeError(f"load generator ended without its final counts ({self.last})")
        return self.done

    def stop(self) -> None:
        processes.stop(self.proc, 30, group=True)
