"""Headless Chromium (Debian's package) driven by Playwright, one page at a time."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.messages import ResultsBatch, SourceProgress

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts" / "screenshots"

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/lib/chromium/chromium",
                      shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH")
    from playwright.sync_api import sync_playwright

    # Playwright gives each launch a fresh temporary profile of its own.
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page plus the console errors and failed requests seen while it was open."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []  # alert/confirm/prompt messages: none is expected
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield Page(context.new_page())
    finally:
        context.close()


# -- a real display server in a thread, fed by the tests (no Kafka, no Spark) --------------


class LiveServer:
    """The Flask-SocketIO app on a free port, with a seeded DiskStore and its own Hub.

    ``push_rows`` and ``push_records`` send data the way the Kafka feed does, through
    :func:`display.feed.route` and the server's emit (so /demo9 also gets ``graph``).
    """

    def __init__(self, url: str, app: Any, socketio: Any, display: Any, store: Any) -> None:
        self.url = url
        self.app = app
        self.socketio = socketio
        self.display = display
        self.store = store

    def seed(self, rows: list[dict[str, Any]]) -> None:
        from storage.base import ResultRow

        self.store.upsert([ResultRow.from_json(r) for r in rows])

    def push_rows(self, stream: str, rows: list[dict[str, Any]], store: str = "disk") -> None:
        from display.feed import route

        if store == "disk":
            self.seed(rows)  # what the job does before it pushes
        route(self.display.hub, {"results": [ResultsBatch(stream=stream, store=store, rows=rows,
                                                          batch_id=1)]}, self.display.emit)

    def report_source(self, source: str, topic: str, rate: float) -> None:
        """A source's progress report, as the health topic brings it."""
        self.display.hub.on_health(SourceProgress(component="input", source=source,
                                                  topic=topic, sent=1, rejected=0, rate=rate))

    def push_records(self, topic: str, records: list[dict[str, Any]]) -> None:
        from display.feed import route

        route(self.display.hub, {topic: records}, self.display.emit)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import logging
    import threading

    from werkzeug.serving import make_server

    from common import settings
    from display.hub import Hub
    from display.server import create_app
    from storage.disk import DiskStore

    data_dir = tmp_path_factory.mktemp("display")
    store = DiskStore(data_dir / "store.sqlite3")
    store.setup()
    cfg = settings.load(environ={"DATA_DIR": str(data_dir), "LOG_LEVEL": "warning"})
    app, socketio, display = create_app(cfg, stores={"disk": store}, hub=Hub(), start_feed=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.port}", app, socketio, display, store)
    finally:
        server.shutdown()
        thread.join(5)
        store.close()
