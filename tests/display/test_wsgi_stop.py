"""The compose stack's display (gunicorn + display.wsgi) stops on SIGTERM within Docker's 10 s,
with a Socket.IO client connected: the WebSockets are dropped first, and gunicorn does not wait
30 s (its default) for them."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import socketio
import yaml

from common.jvm import free_port
from common.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent.parent


def compose_display_command() -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return list(compose["services"]["display"]["command"])


def test_the_compose_display_command_stops_within_dockers_grace_with_a_client_connected(
        tmp_path: Path) -> None:
    port = free_port()
    argv = [a.replace("0.0.0.0:5000", f"127.0.0.1:{port}") for a in compose_display_command()]
    assert argv[0] == "gunicorn"
    env = {"DATA_DIR": str(tmp_path), "DISPLAY_PORT": str(port), "CASSANDRA": "off",
           "PATH": str(Path(sys.executable).parent)}
    log = tmp_path / "display.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), *argv[1:]],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = socketio.Client(reconnection=False)
    try:
        def connected() -> bool:
            try:
                client.connect(f"http://127.0.0.1:{port}", namespaces=["/demo7"],
                               transports=["websocket"], wait_timeout=2)
                return True
            except socketio.exceptions.ConnectionError:
                assert server.poll() is None, log.read_text()
                return False
        eventually(connected, 30, f"the display ({shlex.join(argv)}) to accept a client")
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(20)
        took = time.monotonic() - started
    finally:
        client.disconnect()
        if server.poll() is None:
            server.kill()
    assert code == 0, log.read_text()
    assert took < 10, f"stopping took {took:.1f} s: Docker kills after 10 s\n{log.read_text()}"
