/* /demo9: NGINX traffic. The server sends `graph` (a Vizceral graph of the newest complete
 * window, built by common/vizceral.py) after `history` and after each update; the page hands
 * it whole to Vizceral's updateData(). The D3 charts and the table use the nginx_edges rows.
 */
(function () {
  "use strict";
  // Vizceral's frame rate cap: it draws at the display's rate otherwise. Measured on 2 cores
  // (headless Chromium, SwiftShader): 5 fps 22 %, 8 fps 38 %, 30 fps 117 % of a core.
  // ?fps=N overrides it (1-60). Scrolled out of sight, it draws once a second.
  const asked = Number(new URLSearchParams(window.location.search).get("fps"));
  const FPS = asked >= 1 && asked <= 60 ? asked : 6;
  const WINDOWS = 60;        // windows kept for the charts
  const STREAM = "nginx_edges";
  const rows = new Kit.RowStore(4000);
  let shown = null;          // the last `graph` payload
  let shownJson = "";
  let view = [];             // Vizceral's current view: [] or [host]

  // -- Vizceral -------------------------------------------------------------------------
  // A host's donut has one slice per traffic class, each a THREE.RingGeometry whose
  // mergeVertices() merges points closer than 1e-4: a slice far thinner than that loses every
  // face, and three.js logs "THREE.DirectGeometry: Faceless geometries are not supported."
  // Vizceral 4.9 floors a class with no requests at 5e-8 of the circle (node.js, updateData),
  // thin enough for that to happen at some start angles; a quiet host beside busy ones (one
  // request in a window) does the same with a real share. Such slices cannot be seen (a
  // 1e-4 share is 0.04°), so they are left out: a missing class draws no slice at all.
  const MIN_DONUT_SHARE = 1e-4;
  if (window.Vizceral && !Vizceral.Node.prototype.updateData.streamkit) {
    const updateData = Vizceral.Node.prototype.updateData;
    Vizceral.Node.prototype.updateData = function (totalVolume) {
      const updated = updateData.call(this, totalVolume);
      const shares = this.data.globalClassPercents || {};
      for (const key of Object.keys(shares)) {
        if (!(shares[key] >= MIN_DONUT_SHARE)) delete shares[key]; // NaN too (no traffic at all)
      }
      return updated;
    };
    Vizceral.Node.prototype.updateData.streamkit = true;
  }
  const canvas = document.getElementById("vizceral");
  const wrap = document.getElementById("viz-wrap");
  const back = document.getElementById("viz-back");
  const details = document.getElementById("viz-details");
  let viz = null;
  if (window.Vizceral && !document.body.classList.contains("is-unavailable")) {
    viz = new Vizceral.default(canvas, FPS);
    viz.on("viewChanged", (e) => { view = e.view || []; showView(); });
    viz.on("objectHighlighted", (object) => showDetails(object));
    viz.setView([]);
    viz.animate();
    const refreshRect = () => viz.updateBoundingRectCache();
    new ResizeObserver(refreshRect).observe(wrap);
    window.addEventListener("resize", refreshRect);
    refreshRect();
    back.addEventListener("click", () => viz.setView([]));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") viz.zoomOutViewLevel(); });
    new IntersectionObserver(([entry]) => {
      viz.targetFrameLength = entry.isIntersecting ? 1000 / FPS : 1000;
    }).observe(wrap);
    window.streamkitVizceral = viz; // for the browser tests and the curious
  }

  function showView() {
    back.disabled = view.length === 0;
    const crumbs = document.getElementById("viz-crumbs");
    crumbs.replaceChildren();
    const root = document.createElement("span");
    root.textContent = "all hosts";
    crumbs.appendChild(root);
    for (const name of view) {
      const sep = document.createElement("span"); sep.className = "sep"; sep.textContent = "/";
      const part = document.createElement("span"); part.textContent = name;
      crumbs.append(sep, part);
    }
    showDetails(null);
  }

  /** The graph data of the current view (the global graph, or one host's region). */
  function currentView() {
    if (!shown) return null;
    if (!view.length) return shown.graph;
    return shown.graph.nodes.find((n) => n.name === view[0]) || null;
  }

  function showDetails(object) {
    const g = currentView();
    if (!object || !g) { details.hidden = true; return; }
    const rateOf = (c) => d3.sum(Object.values(c.metrics || {}));
    const add = (dl, term, value) => {
      const dt = document.createElement("dt"); dt.textContent = term;
      const dd = document.createElement("dd"); dd.textContent = value;
      dl.append(dt, dd);
    };
    const title = document.createElement("h3");
    const dl = document.createElement("dl");
    let notices = [];
    if (object.type === "connection") {
      const source = object.source.getName(), target = object.target.getName();
      const c = (g.connections || []).find((x) => x.source === source && x.target === target);
      title.textContent = `${source} → ${target}`;
      if (c) {
        add(dl, "requests/s", Kit.fmt.number(rateOf(c)));
        add(dl, "2xx/3xx", Kit.fmt.number(c.metrics.normal));
        add(dl, "4xx", Kit.fmt.number(c.metrics.warning));
        add(dl, "5xx", Kit.fmt.number(c.metrics.danger));
        notices = c.notices || [];
      }
    } else {
      const name = object.getName();
      title.textContent = name;
      const node = (g.nodes || []).find((n) => n.name === name) || {};
      const incoming = (g.connections || []).filter((c) => c.target === name);
      const outgoing = (g.connections || []).filter((c) => c.source === name);
      const inRate = d3.sum(incoming, rateOf);
      add(dl, "state", node.class || "normal");
      add(dl, "requests in/s", Kit.fmt.number(inRate));
      add(dl, "requests out/s", Kit.fmt.number(d3.sum(outgoing, rateOf)));
      add(dl, "5xx share", Kit.fmt.share(inRate ? d3.sum(incoming, (c) => c.metrics.danger) / inRate : 0));
      if (node.maxVolume != null) add(dl, "recent peak/s", Kit.fmt.number(node.maxVolume));
      notices = node.notices || [];
    }
    const parts = [title, dl];
    if (notices.length) {
      const ul = document.createElement("ul");
      for (const n of notices) { const li = document.createElement("li"); li.textContent = n.title; ul.appendChild(li); }
      parts.push(ul);
    }
    details.replaceChildren(...parts);
    details.hidden = false;
  }

  function onGraph(payload) {
    shown = payload;
    document.getElementById("viz-waiting").hidden = true;
    const json = JSON.stringify(payload.graph);
    if (viz && json !== shownJson) {
      shownJson = json;
      viz.updateData(JSON.parse(json)); // Vizceral keeps and mutates what it is given
    }
    const start = Kit.parseTime(payload.window_start), end = Kit.parseTime(payload.window_end);
    Kit.setText("stat-window", `${Kit.fmt.time(start)}–${Kit.fmt.time(end)}`);
    Kit.setText("stat-hosts", `${payload.hosts} host${payload.hosts === 1 ? "" : "s"}` +
      (payload.hidden_hosts ? ` (${payload.hidden_hosts} quieter ones not drawn)` : "") +
      (payload.complete ? "" : " · window still open"));
    Kit.setText("viz-overlay", `window ${Kit.fmt.dateTime(start)}–${Kit.fmt.time(end)} UTC · ${payload.edges} edges`);
    document.body.dataset.graphs = String((Number(document.body.dataset.graphs) || 0) + 1);
    renderTable();
    renderCharts();
  }

  // -- D3 charts from the rows -------------------------------------------------------------
  const statusChart = new Kit.LineChart("#chart-status", { unit: "/s", yMin: 0, series: [
    { id: "s2xx", label: "2xx", color: "--good" }, { id: "s3xx", label: "3xx", color: "--s1" },
    { id: "s4xx", label: "4xx", color: "--warn" }, { id: "s5xx", label: "5xx", color: "--bad" }] });
  const latencyChart = new Kit.LineChart("#chart-latency", { unit: "s", yMin: 0, series: [
    { id: "p50", label: "p50", color: "--s1" }, { id: "p95", label: "p95", color: "--s4" }] });

  /** Per window: rates by status class and request-weighted p50/p95 of the edges from INTERNET. */
  function perWindow() {
    const windows = d3.group(rows.rows().filter((r) => r.values && r.values.source === "INTERNET"), (r) => r.window_start);
    return [...windows].map(([start, list]) => {
      const secs = (Kit.parseTime(list[0].window_end) - Kit.parseTime(start)) / 1000 || 1;
      const sum = (f) => d3.sum(list, (r) => r.values[f] || 0);
      const timed = list.filter((r) => r.values.p95_request_time != null);
      const weight = d3.sum(timed, (r) => r.values.requests);
      const weighted = (f) => (weight ? d3.sum(timed, (r) => r.values[f] * r.values.requests) / weight : null);
      return { start, t: Kit.parseTime(start), secs, requests: sum("requests"), s2xx: sum("status_2xx") / secs,
        s3xx: sum("status_3xx") / secs, s4xx: sum("status_4xx") / secs, s5xx: sum("status_5xx") / secs,
        p50: weighted("p50_request_time"), p95: weighted("p95_request_time") };
    }).sort((a, b) => a.t - b.t);
  }

  function renderCharts() {
    let windows = perWindow();
    // The newest window is still filling until the server's graph moves past it: leave it out.
    if (shown && shown.complete) windows = windows.filter((w) => w.start <= shown.window_start);
    windows = windows.slice(-WINDOWS);
    const series = (f) => windows.map((w) => ({ t: w.t, v: w[f] }));
    statusChart.update({ s2xx: series("s2xx"), s3xx: series("s3xx"), s4xx: series("s4xx"), s5xx: series("s5xx") });
    latencyChart.update({ p50: series("p50"), p95: series("p95") });
    const last = windows[windows.length - 1];
    if (!last) return;
    const total = last.requests / last.secs;
    Kit.setText("stat-rps", Kit.fmt.number(total));
    const errorShare = total ? last.s5xx / total : 0;
    Kit.setText("stat-errors", Kit.fmt.share(errorShare));
    document.getElementById("tile-errors").className = "stat " + (errorShare >= 0.05 ? "bad" : errorShare >= 0.01 ? "warn" : "good");
    Kit.setText("stat-4xx", `4xx: ${Kit.fmt.share(total ? last.s4xx / total : 0)}`);
    Kit.setText("stat-p95", "p95 " + Kit.fmt.seconds(last.p95));
    Kit.setText("stat-p50", "p50 " + Kit.fmt.seconds(last.p50));
  }

  function renderTable() {
    const list = shown ? rows.rows().filter((r) => r.window_start === shown.window_start) : [];
    const secs = shown ? shown.window_seconds : 1;
    list.sort((a, b) => d3.ascending(a.values.host, b.values.host) || d3.descending(a.values.requests, b.values.requests));
    Kit.fillTable("#edges tbody", list, (r) => {
      const v = r.values;
      const share = (n) => (v.requests ? n / v.requests : 0);
      return [v.host, v.source, v.target, { text: Kit.fmt.number(v.requests / secs), cls: "num" },
        { text: Kit.fmt.share(share(v.status_4xx)), cls: "num" },
        { text: Kit.fmt.share(share(v.status_5xx)), cls: "num" + (share(v.status_5xx) >= 0.05 ? " bad" : share(v.status_5xx) >= 0.01 ? " warn" : "") },
        { text: Kit.fmt.seconds(v.p50_request_time), cls: "num" }, { text: Kit.fmt.seconds(v.p95_request_time), cls: "num" },
        { text: Kit.fmt.bytes(v.bytes / secs) + "/s", cls: "num" }];
    }, "no edges in the shown window");
    if (shown) Kit.setText("edges-caption", `${Kit.fmt.dateTime(Kit.parseTime(shown.window_start))} UTC, ${shown.window_seconds} s`);
  }

  Kit.connect(document.body.dataset.namespace, {
    history: (data) => {
      rows.clear();
      rows.upsert((data.streams || {})[STREAM]);
      renderCharts();
      renderTable();
    },
    update: (data) => {
      if (data.stream !== STREAM) return;
      rows.upsert(data.rows);
      renderCharts();
    },
    graph: onGraph,
  });
})();
