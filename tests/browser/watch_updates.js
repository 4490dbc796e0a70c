/* Injected into every page by test_live_pages.py (before the page's own scripts): records
 * what an update leaves behind in the charts of Kit.charts. `window.streamkitWatch.problems`
 * collects each problem once; `check()` runs the checks that hold at any moment.
 *
 * - When an update has been handled (body[data-updates] changed, so the page has rendered):
 *   a bar chart must draw no label of a bar that is not in its latest data. An old label
 *   fading out where the new ones appear is the "previous window's labels behind the new
 *   ones" of /demo11.
 * - At any moment: an element faded part-way (0 < opacity < 1) must still be in a transition,
 *   and so must a bar, arc or bin that is not in its chart's latest data; each item of a bar
 *   chart has exactly one bar (so no label twice). On /demo9 no Vizceral donut slice may be
 *   too thin to keep its faces (the cause of three.js's "Faceless geometries" error, which
 *   shows only at some angles).
 */
(function () {
  "use strict";
  const problems = [];
  const seen = new Set();
  const report = (text) => {
    if (!seen.has(text)) { seen.add(text); problems.push(text); }
  };
  const name = (chart) => (chart.el.id ? "#" + chart.el.id : chart.el.className);
  const moving = (el) => Boolean(el.__transition);
  const drawn = (chart) => chart.el.clientWidth > 0 && chart.el.clientHeight > 0;
  const charts = (kind) => ((window.Kit && Kit.charts) || []).filter((c) => Kit[kind] && c instanceof Kit[kind] && drawn(c));

  function labelsOfEarlierUpdates() {
    for (const chart of charts("BarChart")) {
      const keys = new Set(chart.items.map((d) => String(d.key)));
      for (const g of chart.el.querySelectorAll("g.bar")) {
        const label = g.querySelector("text.bar-label");
        if (label && g.__data__ && !keys.has(String(g.__data__.key))) {
          report(`${name(chart)}: the label "${label.textContent}" of an earlier update is drawn beside the latest ones`);
        }
      }
    }
  }

  function check() {
    for (const el of document.querySelectorAll("svg, svg *")) {
      const raw = el.getAttribute("opacity") ?? el.style.opacity;
      const opacity = raw === null || raw === "" ? 1 : Number(raw);
      if (opacity > 0 && opacity < 1 && !moving(el)) {
        const chart = el.closest(".chart");
        report(`${chart ? "#" + chart.id : "an svg"}: <${el.tagName} class="${el.getAttribute("class") || ""}"> left at opacity ${raw} ("${(el.textContent || "").slice(0, 40)}")`);
      }
    }
    for (const chart of charts("BarChart")) {
      const want = chart.items.map((d) => String(d.key));
      const bars = [...chart.el.querySelectorAll("g.bar")].filter((g) => g.__data__);
      for (const g of bars) {
        if (!want.includes(String(g.__data__.key)) && !moving(g)) report(`${name(chart)}: the bar "${g.__data__.key}" of an earlier update is left`);
      }
      for (const key of want) {
        const n = bars.filter((g) => String(g.__data__.key) === key && !g.classList.contains("leaving")).length;
        if (n !== 1) report(`${name(chart)}: "${key}" has ${n} bars`);
      }
    }
    for (const chart of charts("Donut")) {
      const want = chart.items.map((d) => String(d.key)).join("|");
      const arcs = [...chart.el.querySelectorAll("svg path")].filter((p) => p.__data__ && p.__data__.data).map((p) => String(p.__data__.data.key)).join("|");
      if (arcs !== want) report(`${name(chart)}: arcs ${arcs} for the items ${want}`);
    }
    for (const chart of charts("Histogram")) {
      const bins = (chart.data.bins || []).length;
      const rects = chart.el.querySelectorAll("svg rect").length;
      if (rects !== bins) report(`${name(chart)}: ${rects} bars for ${bins} bins`);
    }
    // /demo9: a Vizceral donut slice too thin to keep a face once three.js merges its
    // vertices (then it logs "Faceless geometries are not supported", or would at another angle).
    const viz = window.streamkitVizceral;
    for (const node of Object.values((viz && viz.currentGraph && viz.currentGraph.nodes) || {})) {
      for (const slice of (node.view && node.view.donutGraphSegments) || []) {
        const geometry = slice.geometry;
        if (!(geometry.parameters.thetaLength >= 2 * Math.PI * 1e-4) || !geometry.faces.length) {
          report(`#vizceral: ${node.getName()} has a donut slice of ${geometry.parameters.thetaLength} rad (${geometry.faces.length} faces)`);
        }
      }
    }
    return problems;
  }

  // The document itself: at this point (before the page's scripts) it may have no element yet.
  new MutationObserver(labelsOfEarlierUpdates).observe(document, {
    attributes: true, subtree: true, attributeFilter: ["data-updates"],
  });
  window.streamkitWatch = { problems, check };
})();
