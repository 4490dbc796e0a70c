"""Every page of the running stack (`make run` on free ports) with the stack's own live data.

test_pages.py feeds fixtures to a display server of its own; here the real sources, Spark
jobs and stores of ``running_stack`` feed the pages, with whatever their data holds (a host
named by a garbage request, a sliding window that replaces every bar). The index and every
demo of the catalogue stay open together through several live updates; the test fails on
any console error or uncaught exception, and on anything an update leaves behind in a chart
(an old label beside the new ones, an element faded part-way, a bar of an earlier update)
and on a Vizceral donut slice too thin to draw (tests/browser/watch_updates.js says what is
checked); the failing page's screenshot is saved as artifacts/screenshots/live-*.png.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from common import catalogue
from common.waiting import eventually
from tests.browser.conftest import Page

pytestmark = [pytest.mark.browser, pytest.mark.spark]

WATCH_JS = Path(__file__).with_name("watch_updates.js")
UPDATES = 3  # live updates each streaming page goes through after its history
DATA_S = 240  # until every demo has data (the Cassandra demos wait for the stack's own node)
WATCH_S = 120  # until every page has gone through its updates
ROUTES = ["/", *(d.route for d in catalogue.DEMOS)]


def demos_status(url: str) -> dict[int, dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/demos", timeout=5) as r:
        return {d["number"]: d for d in json.loads(r.read())["demos"]}


def wait_for_every_demo(stack: Any) -> None:
    """Until every demo the stack serves has had data (history to show, updates to follow)."""
    missing: list[int] = []

    def every_demo_has_data() -> bool:
        missing[:] = [n for n, d in demos_status(stack.url).items()
                      if d["available"] and d["last_update"] is None]
        return not missing

    def alive() -> None:
        if stack.process.poll() is not None:
            raise AssertionError(f"the stack exited ({stack.process.returncode}):\n{stack.output()}")

    try:
        eventually(every_demo_has_data, DATA_S, "data on every demo", interval_s=1, check=alive)
    except TimeoutError as e:
        raise AssertionError(f"{e}: no data yet on {[f'/demo{n}' for n in missing]}") from e


def test_every_page_stays_clean_through_live_updates(running_stack: Any, browser: Any) -> None:
    waited = time.monotonic()
    wait_for_every_demo(running_stack)
    print(f"every demo had data after {time.monotonic() - waited:.0f} s", flush=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(WATCH_JS))
    pages: dict[str, Page] = {}
    counted: dict[str, int] = {}  # updates each page has handled, as last read
    try:
        for route in ROUTES:
            pages[route] = Page(context.new_page())
            pages[route].page.goto(running_stack.url + route)
        started = time.monotonic()

        def found() -> None:
            """Stop waiting at the first error or leftover: they fail the test."""
            for route, page in pages.items():
                problems = page.page.evaluate("() => window.streamkitWatch.check()")
                if page.errors or problems:
                    updates = page.page.evaluate("() => document.body.dataset.updates || 0")
                    shot = page.screenshot("live-" + (route.strip("/") or "index"))
                    raise AssertionError(f"{route} after {updates} updates: errors {page.errors}, "
                                         f"leftovers {problems} (screenshot after: {shot})")

        def every_page_updated() -> bool:
            live = {d["route"] for d in demos_status(running_stack.url).values() if d["live"]}
            done = True
            for route, page in pages.items():
                if route == "/":  # the index renders `status` (every second), not updates
                    if page.page.text_content("#sum-live") == "–":
                        done = False
                    continue
                counted[route] = page.page.evaluate("() => Number(document.body.dataset.updates) || 0")
                if counted[route] < (1 + UPDATES if route in live else 1):
                    done = False
            return done

        try:
            eventually(every_page_updated, WATCH_S, f"{UPDATES} live updates on every page",
                       interval_s=0.25, check=found)
        except TimeoutError as e:
            raise AssertionError(f"{e}; updates handled: {counted}") from e
        found()
        print(f"watched {len(pages)} pages for {time.monotonic() - started:.0f} s; "
              f"updates handled: {counted}", flush=True)
    finally:
        context.close()
    assert all(page.dialogs == [] for page in pages.values())
