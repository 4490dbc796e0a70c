"""``python -m input.ingest``: serves, stops on SIGTERM, and names its settings in ``--help``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from common.waiting import eventually

ROOT = Path(__file__).resolve().parents[3]


def test_python_m_input_ingest_serves_and_stops_on_sigterm(bootstrap: str, tmp_path: Path) -> None:
    log_path = tmp_path / "ingest.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "INGEST_PORT": "0",
           "LOG_LEVEL": "info", "DATA_DIR": str(tmp_path)}
    with log_path.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "input.ingest"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        def port() -> int | None:
            for line in log_path.read_text().splitlines():
                if "listening on http://127.0.0.1:" in line:
                    return int(line.split("127.0.0.1:")[1].split("/")[0])
            if process.poll() is not None:
                raise AssertionError(log_path.read_text())
            return None

        url = f"http://127.0.0.1:{eventually(port, 30, 'the ingest to listen')}"
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(f"{url}/ingest/stats", timeout=5) as r:
            assert json.loads(r.read())["topics"] == {"cases": "cases"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "ingest: stopped;" in log_path.read_text()


def test_help_names_the_settings() -> None:
    result = subprocess.run([sys.executable, "-m", "input.ingest", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in ("INGEST_HOST", "INGEST_PORT", "INGEST_MAX_BODY_BYTES", "INGEST_TOPICS"):
        assert name in result.stdout
