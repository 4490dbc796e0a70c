"""Every demo page in headless Chromium, driven by a real display server fed by the test.

No Kafka and no Spark: rows and records in the catalogue's format go through
``display.feed.route`` as the Kafka feed would send them. Each test loads one page, checks that
it shows the stored history, pushes new data, waits for the charts to change, saves a
screenshot in artifacts/screenshots/, and fails on any console error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser import data
from tests.browser.conftest import LiveServer, Page
from tests.browser.pixels import count_unlike

pytestmark = pytest.mark.browser

NOW = dt.datetime.now(dt.UTC)
TIMEOUT_MS = 10_000

#: A fingerprint of everything the charts and tables of a page draw.
SIGNATURE = """() => {
  const parts = [];
  for (const el of document.querySelectorAll('.demo-content svg path, .demo-content svg rect,'
      + ' .demo-content svg circle, .demo-content svg text, .demo-content td, .stat .value')) {
    parts.push(el.getAttribute('d') || '', el.getAttribute('width') || '', el.getAttribute('cy') || '',
               el.textContent || '');
  }
  return parts.join('|');
}"""


@pytest.fixture(scope="module")
def server(live_server: LiveServer) -> LiveServer:
    """The live server with history for every demo (what the jobs would have written)."""
    s = live_server
    s.push_records("random", data.random_records(0, 300, NOW, skip=frozenset({40, 41, 100})))
    s.push_records("vmstat", data.vmstat_records(120, NOW))
    s.seed(data.random_stats_rows(40, NOW))
    s.seed(data.vmstat_rows("vmstat_tumbling", 40, NOW) + data.vmstat_rows("vmstat_sliding", 40, NOW))
    for rows in data.census_rows().values():
        s.seed(rows)
    s.seed([r for w in range(-12, 0) for r in data.nginx_rows(w, NOW)])
    for rows in data.cases_rows(NOW).values():
        s.seed(rows)
    s.seed(data.cases_city_rows(30, NOW))
    return s


def open_page(page: Page, server: LiveServer, route: str) -> Any:
    p = page.page
    p.goto(f"{server.url}{route}")
    p.wait_for_function("() => Number(document.body.dataset.updates) >= 1", timeout=TIMEOUT_MS)
    assert p.text_content("#conn") == "connected"
    return p


def push_and_wait(page: Page, push: Callable[[], None]) -> None:
    """Push data, then wait until what the page draws has changed."""
    p = page.page
    p.wait_for_timeout(500)  # let the first render's transitions settle
    before = p.evaluate(SIGNATURE)
    updates = p.evaluate("() => Number(document.body.dataset.updates)")
    push()
    p.wait_for_function("(n) => Number(document.body.dataset.updates) > n", arg=updates,
                        timeout=TIMEOUT_MS)
    p.wait_for_function(f"(before) => ({SIGNATURE})() !== before", arg=before, timeout=TIMEOUT_MS)
    p.wait_for_timeout(600)  # transitions end before the screenshot


def finish(page: Page, name: str) -> None:
    page.screenshot(name)
    assert page.errors == []
    assert page.dialogs == []


# -- the index ---------------------------------------------------------------------------


def test_index_lists_the_demos_live(server: LiveServer, page: Page) -> None:
    p = page.page
    # No page of the random numbers is open, so the server does not follow their topic:
    # their source's report (from the health topic) says they flow.
    server.report_source("random", "random", 10.0)
    p.goto(server.url + "/")
    p.wait_for_function("() => document.getElementById('sum-live').textContent !== '–'",
                        timeout=TIMEOUT_MS)
    assert p.locator("#demos tbody tr[data-demo]").count() == 11
    assert p.text_content("#demos tr[data-demo='2'] .state") == "live"
    assert p.text_content("#demos tr[data-demo='2'] .rate") == "10"
    assert p.text_content("#demos tr[data-demo='8'] .state") == "not configured"
    finish(page, "index")


# -- one test per page -------------------------------------------------------------------


def test_demo1_host_metrics_raw(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo1")
    push_and_wait(page, lambda: server.push_records(
        "vmstat", data.vmstat_records(5, NOW + dt.timedelta(seconds=5))))
    # Series labels come from the server's VmstatSample.METRIC_LABELS, less the chart's word.
    assert p.locator("figure:has(#chart-cpu) .legend .label").all_text_contents() == ["user", "system", "iowait"]
    assert p.locator("figure:has(#chart-mem) .legend .label").all_text_contents() == ["used", "available", "cache"]
    assert p.locator("figure:has(#chart-net) .legend .label").all_text_contents() == ["in", "out"]
    finish(page, "demo1")


def test_demo2_random_raw_shows_values_histogram_rate_and_gaps(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo2")
    p.wait_for_selector("#chart-values svg circle")
    assert p.locator("#chart-hist svg rect").count() > 5
    assert p.text_content("#stat-gaps") == "3 missing"  # 40, 41 and 100 were never sent
    push_and_wait(page, lambda: server.push_records(
        "random", data.random_records(300, 50, NOW + dt.timedelta(seconds=5))))
    assert p.text_content("#stat-count") == "347"
    finish(page, "demo2")


def test_demo4_census(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo4")
    p.wait_for_function("() => document.querySelectorAll('#chart-pyramid svg rect').length === 38")
    assert p.text_content("#year-label") == "2000"
    assert p.locator("#chart-income g.state").count() == 52
    # Another year: the pyramid redraws in place.
    before = p.evaluate(SIGNATURE)
    p.eval_on_selector("#year", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
    p.wait_for_function(f"(before) => ({SIGNATURE})() !== before", arg=before)
    assert p.text_content("#year-label") == "1850"
    # A changed row (the job ran again) updates the page.
    rows = [r for r in data.census_rows()["census_population"] if r["values"]["year"] == 2000]
    for r in rows:
        r["values"]["population"] = int(r["values"]["population"] * 1.5)
    push_and_wait(page, lambda: server.push_rows("census_population", rows))
    finish(page, "demo4")


def test_demo5_windowed_random_stats(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo5")
    p.wait_for_selector("#chart-hist svg rect", state="attached")
    assert p.text_content("#producer") == "random-1"
    push_and_wait(page, lambda: server.push_rows(
        "random_stats", data.random_stats_rows(1, NOW, shift=1)))
    finish(page, "demo5")


def test_demo7_host_metrics_per_window(server: LiveServer, page: Page) -> None:
    open_page(page, server, "/demo7")
    push_and_wait(page, lambda: server.push_rows(
        "vmstat_tumbling", data.vmstat_rows("vmstat_tumbling", 1, NOW, first=1)))
    finish(page, "demo7-test-server")


def test_demo10_case_reports(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo10")
    p.wait_for_function("() => document.querySelectorAll('#chart-top g.bar').length === 3")
    assert p.locator("#latest tbody tr").count() == 5
    assert p.locator("#chart-ages g.bar").count() == 9
    fresh = data.cases_rows(NOW, extra=30)  # Orlando jumps to the top
    push_and_wait(page, lambda: [server.push_rows(s, rows) for s, rows in fresh.items()])
    p.wait_for_function("() => document.getElementById('stat-top').textContent === 'Orlando'")
    finish(page, "demo10")


def test_demo11_cases_per_city(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo11")
    p.wait_for_selector("#chart-cities svg path[stroke]")
    assert p.locator("#chart-cities + .legend .item").count() == 5
    push_and_wait(page, lambda: server.push_rows(
        "cases_city_sliding", data.cases_city_rows(3, NOW, shift=3)))
    finish(page, "demo11")


@pytest.mark.parametrize("route", ["/demo3", "/demo6", "/demo8"])
def test_a_cassandra_demo_without_cassandra_shows_why_and_no_data(
        server: LiveServer, page: Page, route: str) -> None:
    p = page.page
    p.goto(server.url + route)
    p.wait_for_function("() => document.body.classList.contains('is-unavailable')")
    assert "CASSANDRA_HOSTS" in (p.text_content("#unavailable") or "")
    assert p.locator(".demo-content").is_hidden()
    p.wait_for_timeout(300)  # the socket's `unavailable` event
    assert "CASSANDRA_HOSTS" in (p.text_content("#unavailable p") or "")
    finish(page, route.strip("/"))


# -- /demo9: Vizceral ------------------------------------------------------------------------

VIZ_BACKGROUND = (0x15, 0x19, 0x1E)  # --viz-bg


def canvas_pixels(p: Any) -> int:
    return count_unlike(p.locator("#vizceral").screenshot(), VIZ_BACKGROUND)


def test_demo9_vizceral_draws_updates_and_opens_a_region(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo9")
    p.wait_for_function("() => Number(document.body.dataset.graphs) >= 1", timeout=TIMEOUT_MS)
    p.wait_for_timeout(1500)  # layout and the first frames
    drawn = canvas_pixels(p)
    assert drawn > 5000, f"the Vizceral canvas looks empty ({drawn} pixels drawn)"
    assert p.locator("#viz-waiting").is_hidden()
    # A new window arrives: the page gets a new graph and hands it to Vizceral.
    graphs = p.evaluate("() => Number(document.body.dataset.graphs)")
    push_and_wait(page, lambda: server.push_rows("nginx_edges", data.nginx_rows(0, NOW, scale=3)))
    p.wait_for_function("(n) => Number(document.body.dataset.graphs) > n", arg=graphs)
    graph = p.evaluate("() => window.streamkitVizceral.trafficData")
    assert [n["name"] for n in graph["nodes"]] == ["INTERNET", "blog.example", "shop.example"]
    page.screenshot("demo9")

    # Click the shop.example node: its region view opens; "all hosts" goes back.
    x, y = p.evaluate("""() => {  // the node's world position, through Vizceral's camera
      const viz = window.streamkitVizceral, cam = viz.camera;
      const world = viz.currentGraph.nodes['shop.example'].view.container.matrixWorld.elements;
      const box = document.getElementById('vizceral').getBoundingClientRect();
      return [box.left + (world[12] - cam.left) / (cam.right - cam.left) * box.width,
              box.top + (cam.top - world[13]) / (cam.top - cam.bottom) * box.height];
    }""")
    p.mouse.move(x, y)
    p.mouse.click(x, y)
    p.wait_for_function("() => document.getElementById('viz-crumbs').textContent.includes('shop.example')",
                        timeout=TIMEOUT_MS)
    assert p.is_enabled("#viz-back")
    p.wait_for_timeout(2000)  # the zoom animation and the region layout
    assert canvas_pixels(p) > 5000
    page.screenshot("demo9-region")
    p.click("#viz-back")
    p.wait_for_function("() => document.getElementById('viz-crumbs').textContent === 'all hosts'")
    finish(page, "demo9-back")


def test_demo9_frame_rate_is_capped(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo9")
    p.wait_for_function("() => Number(document.body.dataset.graphs) >= 1", timeout=TIMEOUT_MS)
    frames = p.evaluate("""() => new Promise((done) => {
      const viz = window.streamkitVizceral, render = viz.render.bind(viz);
      let n = 0;
      viz.render = (t) => { n += 1; render(t); };
      setTimeout(() => { viz.render = render; done(n); }, 2000);
    })""")
    assert 6 <= frames <= 16, f"{frames} frames in 2 s; the cap is 6 fps"
    assert page.errors == []


# -- safety and themes -------------------------------------------------------------------------


def test_names_from_the_data_show_as_text_and_never_run(server: LiveServer, page: Page) -> None:
    # The nginx rows name a service "<script>alert(1)</script>"; so does a case report.
    for route, table in (("/demo9", "#edges"), ("/demo10", "#latest")):
        p = open_page(page, server, route)
        p.wait_for_function(
            "([sel, evil]) => [...document.querySelectorAll(sel + ' td')].some((td) => td.textContent === evil)",
            arg=[table, data.XSS], timeout=TIMEOUT_MS)
        assert p.locator(f"{table} script").count() == 0
        assert p.evaluate("() => document.querySelectorAll('main script').length") == 0
    assert page.dialogs == []
    assert page.errors == []


def test_the_light_theme(server: LiveServer, page: Page) -> None:
    p = open_page(page, server, "/demo10")
    p.click("#theme")
    assert p.evaluate("() => document.documentElement.dataset.theme") == "light"
    background = p.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(246, 248, 250)"
    p.wait_for_timeout(300)
    finish(page, "demo10-light")
