"""Kit's charts across updates, driven directly in a page: what an update must not leave behind.

Quick and deterministic, beside test_live_pages.py (which watches the same things on the
running stack's own data): each test makes a chart in a page of the test display server,
gives it data twice, and checks the drawing at once and after the transitions end, with the
checks of tests/browser/watch_updates.js.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveServer, Page

pytestmark = pytest.mark.browser

WATCH_JS = Path(__file__).with_name("watch_updates.js")

#: Make a chart in a new element of the page: window.chart.
MAKE = """([kind, options]) => {
  const el = document.createElement('div');
  el.className = 'chart tall';
  el.id = 'chart-under-test';
  document.querySelector('main').prepend(el);
  window.chart = new Kit[kind](el, options);
}"""

#: The bar labels drawn now, by whether their bar's item is in the latest data.
LABELS = """() => {
  const keys = new Set(chart.items.map((d) => d.key));
  const out = { latest: [], earlier: [] };
  for (const g of chart.el.querySelectorAll('g.bar')) {
    for (const t of g.querySelectorAll('text.bar-label')) {
      out[keys.has(g.__data__.key) ? 'latest' : 'earlier'].push(t.textContent);
    }
  }
  return out;
}"""

#: True once no element of the chart is in a D3 transition.
SETTLED = "() => ![...chart.el.querySelectorAll('svg, svg *')].some((e) => e.__transition)"


def bars(*names: str) -> list[dict[str, Any]]:
    return [{"key": n, "label": n, "value": 10 * (i + 1)} for i, n in enumerate(names)]


@pytest.fixture
def chart_page(live_server: LiveServer, browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(path=str(WATCH_JS))
    page = Page(context.new_page())
    page.page.goto(live_server.url + "/")
    page.page.wait_for_function("() => window.Kit && window.streamkitWatch")
    try:
        yield page
    finally:
        context.close()
    assert page.errors == []


def settle_and_check(p: Any) -> list[str]:
    p.wait_for_function(SETTLED)
    problems: list[str] = p.evaluate("() => window.streamkitWatch.check()")
    return problems


@pytest.mark.parametrize("horizontal", [True, False])
def test_bars_of_a_new_window_show_no_label_of_the_last(chart_page: Page, horizontal: bool) -> None:
    p = chart_page.page
    p.evaluate(MAKE, ["BarChart", {"unit": "count", "horizontal": horizontal}])
    p.evaluate("(items) => chart.update(items)", bars("Austin", "Boston", "Denver"))
    assert settle_and_check(p) == []
    # The next window holds other cities (what /demo11 gets every 10 s), and Boston again.
    p.evaluate("(items) => chart.update(items)", bars("Miami", "Boston", "Tulsa"))
    labels = p.evaluate(LABELS)
    assert labels["earlier"] == [], "labels of the last window are still drawn"
    assert sorted(labels["latest"]) == ["Boston", "Miami", "Tulsa"]
    assert settle_and_check(p) == []
    assert p.locator("#chart-under-test g.bar").count() == 3


def test_an_item_that_comes_back_while_its_bar_leaves_gets_a_whole_bar(chart_page: Page) -> None:
    p = chart_page.page
    p.evaluate(MAKE, ["BarChart", {"unit": "count"}])
    p.evaluate("(items) => chart.update(items)", bars("Austin", "Boston"))
    p.wait_for_function(SETTLED)
    p.evaluate("(items) => chart.update(items)", bars("Boston"))  # Austin's bar starts leaving
    p.evaluate("(items) => chart.update(items)", bars("Austin", "Boston"))  # and Austin is back
    assert sorted(p.evaluate(LABELS)["latest"]) == ["Austin", "Boston"]
    assert settle_and_check(p) == []
    assert p.evaluate("() => [...chart.el.querySelectorAll('g.bar')].map((g) => g.getAttribute('opacity'))") \
        == ["1", "1"]


def test_a_histogram_that_loses_its_bins_draws_no_bar(chart_page: Page) -> None:
    p = chart_page.page
    p.evaluate(MAKE, ["Histogram", {"unit": "count"}])
    p.evaluate("() => chart.update({bins: [{x0: 0, x1: 1, count: 3}, {x0: 1, x1: 2, count: 5}]})")
    assert settle_and_check(p) == []
    p.evaluate("() => chart.update({bins: []})")
    assert settle_and_check(p) == []
    assert p.locator("#chart-under-test svg rect").count() == 0


def test_a_line_chart_that_loses_its_data_draws_no_line(chart_page: Page) -> None:
    p = chart_page.page
    p.evaluate(MAKE, ["LineChart", {"unit": "count", "series": [{"id": "a", "label": "a"}]}])
    p.evaluate("() => chart.update({a: [{t: new Date(0), v: 1}, {t: new Date(10000), v: 2}]})")
    p.wait_for_function(SETTLED)
    assert p.locator("#chart-under-test svg path[stroke]:not(.domain)").count() == 1
    p.evaluate("() => chart.update({a: []})")
    assert p.locator("#chart-under-test svg path[stroke]:not(.domain)").count() == 0
