"""The README's screenshots, taken from a real `make run`: never edited by hand.

Starts ``python -m stack`` (Cassandra off: the pictures show the disk demos) on free ports
in a temporary data directory, waits until the index and the pages it photographs have live
data, opens each in headless Chromium at 1280x800 and saves ``docs/images/<name>.png``, then
stops the stack with Ctrl-C as a user would. Run it with ``make screenshots`` (about two
minutes on 2 cores); it needs Chromium, as the browser tests do.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import say  # noqa: E402 - after the path that finds it
from buffer.broker import free_port  # noqa: E402
from common import processes  # noqa: E402
from common.waiting import eventually  # noqa: E402
from tests.browser.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402

OUT = ROOT / "docs" / "images"
#: (file name, route, the demo whose live updates the page must have received first)
SHOTS = [("index", "/", 7), ("demo9", "/demo9", 9), ("demo10", "/demo10", 10)]
UPDATES = 2  # live updates each page receives before its picture
TRANSITION_MS = 1500  # D3's transitions of the last update end well within this
DATA_S = 300


def demos(url: str) -> dict[int, dict[str, object]]:
    with urllib.request.urlopen(f"{url}/api/demos", timeout=5) as r:
        return {d["number"]: d for d in json.loads(r.read())["demos"]}


def main() -> int:
    chromium = chromium_path()
    if chromium is None:
        say("no Chromium: install Debian's chromium or set CHROMIUM_PATH")
        return 2
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="streamkit-screenshots-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DATA_DIR": tmp, "DISPLAY_PORT": str(port),
               "BROKER_PORT": str(free_port()), "INGEST_PORT": str(free_port()),
               "CASSANDRA": "off"}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        log = Path(tmp) / "stack.out"
        stack = processes.start([sys.executable, "-m", "stack"], log, env, cwd=ROOT)

        def alive() -> None:
            if stack.poll() is not None:
                raise RuntimeError(f"the stack exited:\n{log.read_text(errors='replace')[-3000:]}")

        try:
            say(f"python -m stack on {url}, data in {tmp}")
            wanted = {number for _, _, number in SHOTS}
            eventually(lambda: all(demos(url)[n]["last_update"] for n in wanted)
                       if _up(url) else False, DATA_S, "live data on the pages to photograph",
                       interval_s=1, check=alive)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    for name, route, number in SHOTS:
                        page = browser.new_page(viewport={"width": 1280, "height": 800})
                        page.goto(url + route)
                        for _ in range(UPDATES):
                            before = demos(url)[number]["last_update"]

                            def updated(n: int = number, b: object = before) -> bool:
                                return demos(url)[n]["last_update"] != b

                            eventually(updated, 120, f"a live update of /demo{number}",
                                       interval_s=0.5, check=alive)
                        page.wait_for_timeout(TRANSITION_MS)
                        page.screenshot(path=str(OUT / f"{name}.png"))
                        say(f"docs/images/{name}.png ({route})")
                        page.close()
                finally:
                    browser.close()
        finally:
            processes.stop(stack, 60, signal.SIGINT, what="the stack")  # as Ctrl-C stops it
    return 0


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
