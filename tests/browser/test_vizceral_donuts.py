"""/demo9's Vizceral donuts: every slice it builds can be drawn (no faceless geometry).

Vizceral draws a host's traffic classes as slices of a THREE.RingGeometry, which merges
vertices closer than 1e-4: a slice much thinner than that has no face left, and three.js
logs "THREE.DirectGeometry: Faceless geometries are not supported." when it draws it. Whether
a thin slice loses its faces depends on its start angle (the layout), so the test checks the
cause, which does not: no slice thinner than 1e-4 of the circle, and every slice with faces.
The graph is built by common.vizceral from edges such as the live NGINX demo's: busy hosts
with no 5xx on one of them, and a quiet host (one request in the window, like the "\\xff" host
of a garbage request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from common.vizceral import Edge, build_graph
from tests.browser.conftest import LiveServer, Page

pytestmark = pytest.mark.browser

MIN_SHARE = 1e-4  # demo9.js: MIN_DONUT_SHARE

#: A Vizceral of its own on /demo9 (so no `graph` event from the server replaces the test's).
SHOW = """(graph) => {
  const box = document.createElement('div');
  box.className = 'viz-wrap';
  box.appendChild(document.createElement('canvas'));
  document.querySelector('main').prepend(box);
  const viz = new Vizceral.default(box.firstChild, 30);
  viz.setView([]);
  viz.animate();
  viz.updateBoundingRectCache();
  viz.updateData(graph);
  window.testViz = viz;
}"""

#: Once every node has its donut: [node, thetaLength, faces] of every slice.
SLICES = """() => {
  const nodes = Object.values(testViz.currentGraph ? testViz.currentGraph.nodes : {});
  if (!nodes.length || !nodes.every((n) => n.view && n.view.donutGraphSegments.length)) return null;
  return nodes.flatMap((n) => n.view.donutGraphSegments.map((s) =>
    [n.getName(), s.geometry.parameters.thetaLength, s.geometry.faces.length]));
}"""

#: Resolves once Vizceral has drawn n more frames.
FRAMES = """(n) => new Promise((done) => {
  const render = testViz.render.bind(testViz);
  testViz.render = (t) => { render(t); if (--n === 0) { testViz.render = render; done(); } };
})"""


def edge(host: str, source: str, target: str, requests: int, status_4xx: int = 0,
         status_5xx: int = 0) -> Edge:
    return Edge(host, source, target, requests, status_2xx=requests - status_4xx - status_5xx,
                status_4xx=status_4xx, status_5xx=status_5xx)


EDGES = [
    edge("shop.example", "INTERNET", "web", 300, 9, 3),
    edge("shop.example", "web", "10.0.0.5:8080", 220, 7, 1),
    edge("shop.example", "INTERNET", "api", 90, 3, 7),
    edge("shop.example", "api", "10.0.0.7:9000", 90, 3, 7),
    edge("blog.example", "INTERNET", "blog", 45, 1),  # no 5xx
    edge("blog.example", "blog", "local", 45, 1),
    edge("\xff", "INTERNET", "unknown", 1, 1),  # one garbage request, answered 400
]


@pytest.fixture
def demo9(live_server: LiveServer, browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = Page(context.new_page())
    page.page.goto(live_server.url + "/demo9")
    page.page.wait_for_function("() => window.Vizceral && window.streamkitVizceral")
    try:
        yield page
    finally:
        context.close()


def test_no_donut_slice_is_too_thin_to_draw(demo9: Page) -> None:
    p = demo9.page
    p.evaluate(SHOW, build_graph(EDGES, window_seconds=10))
    slices = p.wait_for_function(SLICES, timeout=15_000).json_value()
    by_node: dict[str, list[float]] = {}
    for node, theta, faces in slices:
        by_node.setdefault(node, []).append(theta)
        assert faces > 0, f"{node}: a slice of {theta:.2g} rad has no face"
    too_thin = {n: t for n, ts in by_node.items() for t in ts if t < 2 * 3.141592653589793 * MIN_SHARE}
    assert too_thin == {}, f"slices too thin to draw: {too_thin}"
    assert set(by_node) == {"INTERNET", "shop.example", "blog.example", "\xff"}
    p.evaluate(FRAMES, 5)  # three.js turns the slices into buffers when it draws them
    assert demo9.errors == []
