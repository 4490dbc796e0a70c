"""Security defaults: loopback binds, no secrets in the repository, same-origin Socket.IO."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from common import settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_server_binds_loopback_by_default() -> None:
    s = settings.load(environ={})
    assert (s.display_host, s.ingest_host, s.broker_host) == ("127.0.0.1",) * 3


def test_socketio_accepts_the_same_origin_only_by_default() -> None:
    assert settings.load(environ={}).cors_origins == ()


def test_secrets_stay_out_of_the_repository() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored
    example = (ROOT / ".env.example").read_text()
    for line in example.splitlines():
        if re.match(r"\s*#?\s*CASSANDRA_PASSWORD\s*=", line):
            assert line.split("=", 1)[1].strip() in ("", "change-me"), line
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    pattern = re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----|AKIA[0-9A-Z]{16}")
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".png", ".jar") or not path.is_file() or path.stat().st_size > 2**20:
            continue
        assert not pattern.search(path.read_text(errors="ignore")), name
