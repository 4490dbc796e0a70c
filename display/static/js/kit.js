/* streamkit front-end helpers: the Socket.IO connection, formatting, and D3 charts.
 *
 * No build step: plain scripts loaded after d3 and socket.io. Everything that
 * came from data is inserted with textContent / d3's .text(), never as HTML.
 *
 * Charts (each takes an element or a selector, and updates in place with transitions):
 *   Kit.LineChart  time series, optional bands (min-max, ±stddev) and dashed lines
 *   Kit.BarChart   labelled bars, horizontal or vertical
 *   Kit.Histogram  counts in numeric bins
 *   Kit.Donut      shares of a whole, with a legend
 * Colours are CSS variables (var(--s1) ...), so the light/dark switch recolours live charts.
 */
(function () {
  "use strict";

  const Kit = {};

  // -- theme --------------------------------------------------------------
  const savedTheme = localStorage.getItem("streamkit-theme");
  if (savedTheme) document.documentElement.dataset.theme = savedTheme;
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme");
    if (button) button.addEventListener("click", () => {
      const next = document.documentElement.dataset.theme === "light" ? "dark" : "light";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("streamkit-theme", next);
    });
  });

  // -- formatting -----------------------------------------------------------
  const si = d3.format(".3~s");
  Kit.fmt = {
    number: (v) => (v == null || Number.isNaN(v) ? "–" : Math.abs(v) >= 1000 ? si(v) : d3.format(".3~f")(v)),
    integer: (v) => (v == null || Number.isNaN(v) ? "–" : d3.format(",d")(Math.round(v))),
    bytes: (v) => (v == null ? "–" : si(v) + "B"),
    percent: (v) => (v == null ? "–" : d3.format(".1f")(v) + " %"),
    share: (v) => (v == null ? "–" : d3.format(".1f")(v * 100) + " %"), // 0..1 -> "12.3 %"
    seconds: (v) => (v == null ? "–" : v < 1 ? d3.format(".3~r")(v * 1000) + " ms" : d3.format(".3~r")(v) + " s"),
    rate: (v) => (v == null ? "–" : Kit.fmt.number(v) + "/s"),
    time: d3.utcFormat("%H:%M:%S"),
    dateTime: d3.utcFormat("%Y-%m-%d %H:%M:%S"),
  };
  Kit.unitFormatter = function (unit) {
    if (unit === "bytes") return Kit.fmt.bytes;
    if (unit === "bytes/s") return (v) => (v == null ? "–" : Kit.fmt.bytes(v) + "/s");
    if (unit === "%") return Kit.fmt.percent;
    if (unit === "share") return Kit.fmt.share;
    if (unit === "s") return Kit.fmt.seconds;
    if (unit === "/s") return Kit.fmt.rate;
    if (unit === "people" || unit === "count") return (v) => (v == null ? "–" : Math.abs(v) >= 10000 ? si(v) : Kit.fmt.integer(v));
    return Kit.fmt.number;
  };
  Kit.parseTime = (s) => (s ? new Date(s) : null);
  /** Host-metric labels and units the server put in the page (common/records.py
   *  VmstatSample.METRIC_LABELS): Map metric -> {label, unit}, in the server's order. */
  Kit.metricLabels = function () {
    const element = document.getElementById("metric-labels");
    const entries = element ? JSON.parse(element.textContent) : [];
    return new Map(entries.map(([id, label, unit]) => [id, { label, unit }]));
  };
  /** The n-th series colour, as a CSS variable reference (follows the theme). */
  Kit.color = (i) => `var(--s${(i % 8) + 1})`;
  /** The colour a "var(--name)" stands for now. */
  Kit.resolve = (color) => {
    const m = /^var\((--[\w-]+)\)$/.exec(color);
    return m ? getComputedStyle(document.documentElement).getPropertyValue(m[1]).trim() || "#4fb3ff" : color;
  };

  // -- DOM helpers (text only) ------------------------------------------------
  /** Replace a tbody's rows: cells(item) -> [text | {text, cls, title}]. */
  Kit.fillTable = function (tbody, items, cells, empty) {
    if (typeof tbody === "string") tbody = document.querySelector(tbody);
    if (!items.length && empty) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = tbody.parentNode.querySelectorAll("thead th").length || 1;
      td.textContent = empty;
      tr.appendChild(td);
      tbody.replaceChildren(tr);
      return;
    }
    tbody.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      for (const c of cells(item)) {
        const td = document.createElement("td");
        const spec = c !== null && typeof c === "object" ? c : { text: c };
        td.textContent = spec.text == null ? "–" : String(spec.text);
        if (spec.cls) td.className = spec.cls;
        if (spec.title) td.title = spec.title;
        tr.appendChild(td);
      }
      return tr;
    }));
  };
  /** Set an element's text by id (no-op if it is missing). */
  Kit.setText = function (id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  };
  /** Fill a <select> with [value, label] pairs, keeping the current choice if it is still there. */
  Kit.fillSelect = function (select, options, preferred) {
    if (typeof select === "string") select = document.querySelector(select);
    const current = select.value || preferred;
    const values = options.map(([v]) => String(v));
    if (values.join("\u0000") !== [...select.options].map((o) => o.value).join("\u0000")) {
      select.replaceChildren(...options.map(([v, label]) => {
        const o = document.createElement("option");
        o.value = String(v); o.textContent = label;
        return o;
      }));
    }
    if (values.includes(String(current))) select.value = String(current);
    else if (preferred != null && values.includes(String(preferred))) select.value = String(preferred);
    return select.value;
  };

  // -- connection -------------------------------------------------------------
  /**
   * Connect to a demo's namespace. handlers: {history(data), update(data), unavailable(data), status(data), <event>(data)}.
   * Socket.IO reconnects by itself; the server sends `history` again on every connect, so a
   * page refills after a server restart. Other handler names (e.g. `graph`) are subscribed too.
   */
  Kit.connect = function (namespace, handlers) {
    const conn = document.getElementById("conn");
    const last = document.getElementById("last-update");
    const setState = (state, text) => {
      if (!conn) return;
      conn.dataset.state = state;
      conn.textContent = text || state;
    };
    const delays = []; // server -> page, the last stage of the path, measured here
    const touched = (data) => {
      Kit.lastUpdate = new Date();
      const pushed = data && data.pushed_at ? Date.parse(data.pushed_at) : NaN;
      if (!Number.isNaN(pushed)) {
        delays.push(Math.max(0, Kit.lastUpdate - pushed));
        if (delays.length > 60) delays.shift();
      }
      let text = "updated " + Kit.fmt.time(Kit.lastUpdate) + " UTC";
      if (delays.length) text += ` · ${Math.round(d3.median(delays))} ms from the server`;
      if (last) last.textContent = text;
      document.body.dataset.updates = String((Number(document.body.dataset.updates) || 0) + 1);
    };
    const socket = io(namespace, { transports: ["websocket"], reconnectionDelayMax: 3000 });
    socket.on("connect", () => setState("connected"));
    socket.on("disconnect", () => setState("reconnecting", "reconnecting…"));
    socket.io.on("reconnect_attempt", () => setState("reconnecting", "reconnecting…"));
    socket.on("connect_error", () => setState("disconnected", "server unreachable"));
    const events = new Set(["history", "update", "status", ...Object.keys(handlers)]);
    events.delete("unavailable");
    events.delete("waiting");
    const box = document.getElementById("unavailable");
    for (const event of events) {
      socket.on(event, (data) => {
        if (event !== "status") touched(data);
        if (event === "history" && box && box.dataset.waiting) {  // the store opened
          box.hidden = true;
          delete box.dataset.waiting;
        }
        if (handlers[event]) handlers[event](data);
      });
    }
    // The demo's store is still opening (Cassandra starting): say so; history follows.
    socket.on("waiting", (data) => {
      if (!box) return;
      box.hidden = false;
      box.dataset.waiting = "1";
      box.querySelector("h2").textContent = "Starting";
      box.querySelector("p").textContent = data.reason;
      if (handlers.waiting) handlers.waiting(data);
    });
    socket.on("unavailable", (data) => {
      if (box) {
        box.hidden = false;
        box.querySelector("p").textContent = data.reason;
      }
      document.body.classList.add("is-unavailable");
      if (handlers.unavailable) handlers.unavailable(data);
    });
    Kit.socket = socket;
    return socket;
  };

  // -- shared chart plumbing ----------------------------------------------------
  /** Every chart of the page, with the data it was last given (for the browser tests and the curious). */
  Kit.charts = [];

  /** An <svg> in `el` with a tooltip, resize handling and an empty-state message. */
  class Chart {
    constructor(element, options, defaults) {
      Kit.charts.push(this);
      this.el = typeof element === "string" ? document.querySelector(element) : element;
      this.options = Object.assign({ unit: "" }, defaults, options);
      this.format = this.options.format || Kit.unitFormatter(this.options.unit);
      this.svg = d3.select(this.el).append("svg").attr("role", "img");
      if (this.options.label) this.svg.attr("aria-label", this.options.label);
      this.empty = this.svg.append("text").attr("class", "empty").attr("text-anchor", "middle").text(this.options.emptyText || "waiting for data…");
      this.tooltip = d3.select(this.el).append("div").attr("class", "tooltip").style("display", "none");
      new ResizeObserver(() => this.render(false)).observe(this.el);
    }

    size() {
      return [this.el.clientWidth, this.el.clientHeight];
    }

    showEmpty(isEmpty, width, height) {
      this.empty.attr("x", width / 2).attr("y", height / 2).style("display", isEmpty ? null : "none");
    }

    /** Show the tooltip near [x, y] (px in the chart) with lines of text; the first is muted. */
    showTip(x, y, lines) {
      this.tooltip.selectAll("*").remove();
      lines.forEach((line, i) => this.tooltip.append("div").attr("class", i === 0 ? "t" : null).text(line));
      const w = this.el.clientWidth;
      this.tooltip.style("display", null).style("left", `${Math.max(0, Math.min(x + 12, w - 180))}px`).style("top", `${Math.max(0, y - 10)}px`);
    }

    hideTip() {
      this.tooltip.style("display", "none");
    }

    transition(animate) {
      return this.svg.transition().duration(animate ? 400 : 0);
    }
  }
  Kit.Chart = Chart;

  // -- a time-series line chart with optional bands ---------------------------
  /**
   * new Kit.LineChart(element, {unit, yMin, band, points, timeFormat, series: [{id, label, color?, band?, dashed?}]})
   * chart.update({seriesId: [{t: Date, v: number, lo?: number, hi?: number}, ...]})
   * `band: true` on the chart draws every series' lo–hi band (as before); on a series, only its own.
   */
  Kit.LineChart = class extends Chart {
    constructor(element, options) {
      super(element, options, { yMin: null, series: [], band: false, points: false, timeFormat: "%H:%M:%S", tooltipTime: null });
      this.margin = { top: 8, right: 24, bottom: 22, left: 56 };
      this.gGrid = this.svg.insert("g", ".empty").attr("class", "grid-line");
      this.gBands = this.svg.insert("g", ".empty");
      this.gLines = this.svg.insert("g", ".empty");
      this.gPoints = this.svg.insert("g", ".empty");
      this.gX = this.svg.insert("g", ".empty").attr("class", "axis x");
      this.gY = this.svg.insert("g", ".empty").attr("class", "axis y");
      this.focus = this.svg.append("line").attr("class", "focus").style("display", "none");
      this.legend = d3.select(this.el.parentNode).append("div").attr("class", "legend");
      this.data = {};
      this.setSeries(this.options.series);
      this.svg.on("mousemove", (event) => this.hover(event)).on("mouseleave", () => this.unhover());
    }

    colorOf(s, i) {
      return s.color ? (s.color.startsWith("--") ? `var(${s.color})` : s.color) : Kit.color(i);
    }

    setSeries(series) {
      this.options.series = series;
      this.legend.selectAll("span.item").data(series, (s) => s.id).join((enter) => {
        const item = enter.append("span").attr("class", "item");
        item.append("span").attr("class", "swatch");
        item.append("span").attr("class", "label");
        return item;
      }).call((items) => {
        items.select(".swatch").style("background", (s, i) => this.colorOf(s, i)).classed("dashed", (s) => !!s.dashed);
        items.select(".label").text((s) => s.label);
      });
    }

    update(data) {
      this.data = data;
      this.render(true);
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      const m = this.margin;
      const all = this.options.series.flatMap((s) => this.data[s.id] || []);
      this.showEmpty(!all.length, width, height);
      if (!all.length) { // no lines of earlier data under the empty state
        for (const g of [this.gBands, this.gLines, this.gPoints]) g.selectAll("*").remove();
        return;
      }
      let [t0, t1] = d3.extent(all, (d) => d.t);
      if (+t0 === +t1) { t0 = new Date(+t0 - 1000); t1 = new Date(+t1 + 1000); }
      const x = d3.scaleUtc().domain([t0, t1]).range([m.left, width - m.right]);
      const values = all.flatMap((d) => [d.v, d.lo, d.hi]).filter((v) => v != null && !Number.isNaN(v));
      let [lo, hi] = values.length ? d3.extent(values) : [0, 1];
      if (this.options.yMin != null) lo = Math.min(lo, this.options.yMin);
      if (lo === hi) { lo -= 1; hi += 1; }
      const y = d3.scaleLinear().domain([lo, hi]).nice().range([height - m.bottom, m.top]);
      this.x = x; this.y = y;
      const t = this.transition(animate);
      this.gX.attr("transform", `translate(0,${height - m.bottom})`).transition(t).call(d3.axisBottom(x).ticks(Math.max(2, width / 90)).tickFormat(d3.utcFormat(this.options.timeFormat)));
      // Counts get whole-number ticks only (no "1, 1, 2, 2" from rounding 0.5 steps).
      const yTicks = this.options.unit === "count" ? y.ticks(5).filter(Number.isInteger) : y.ticks(5);
      this.gY.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).tickValues(yTicks).tickFormat(this.format));
      this.gGrid.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).tickValues(yTicks).tickSize(-(width - m.left - m.right)).tickFormat(""));
      this.gGrid.select(".domain").remove();
      const line = d3.line().defined((d) => d.v != null).x((d) => x(d.t)).y((d) => y(d.v));
      const area = d3.area().defined((d) => d.lo != null && d.hi != null).x((d) => x(d.t)).y0((d) => y(d.lo)).y1((d) => y(d.hi));
      const series = this.options.series.map((s, i) => ({ s, i, points: this.data[s.id] || [] }));
      const banded = series.filter((d) => (d.s.band != null ? d.s.band : this.options.band));
      // Paths are set, not tweened: interpolating path strings with different point counts
      // draws shapes that never existed. The axes glide instead.
      this.gBands.selectAll("path").data(banded, (d) => d.s.id)
        .join("path").style("fill", (d) => this.colorOf(d.s, d.i)).attr("fill-opacity", banded.length > 1 ? 0.12 : 0.18)
        .attr("d", (d) => area(d.points));
      const lined = this.options.points ? series.filter((d) => d.s.line) : series;
      this.gLines.selectAll("path").data(lined, (d) => d.s.id)
        .join("path").attr("fill", "none").attr("stroke-width", (d) => (d.s.dashed ? 1.2 : 1.8))
        .attr("stroke-dasharray", (d) => (d.s.dashed ? "4 3" : null))
        .attr("stroke", (d) => Kit.resolve(this.colorOf(d.s, d.i))) // for selectors (path[stroke]); the style follows the theme
        .style("stroke", (d) => this.colorOf(d.s, d.i))
        .attr("d", (d) => line(d.points));
      const dotted = this.options.points ? series.filter((d) => !d.s.line) : [];
      this.gPoints.selectAll("g").data(dotted, (d) => d.s.id).join("g")
        .style("fill", (d) => this.colorOf(d.s, d.i))
        .selectAll("circle").data((d) => d.points.filter((p) => p.v != null)).join("circle")
        .attr("r", 2.2).attr("cx", (p) => x(p.t)).attr("cy", (p) => y(p.v));
    }

    hover(event) {
      if (!this.x) return;
      const [mx, my] = d3.pointer(event, this.svg.node());
      const when = this.x.invert(mx);
      const rows = [];
      for (const s of this.options.series) {
        const points = this.data[s.id] || [];
        if (!points.length) continue;
        const i = d3.bisector((d) => d.t).center(points, when);
        rows.push({ s, d: points[i] });
      }
      if (!rows.length) return;
      const t0 = rows[0].d.t;
      this.focus.style("display", null).attr("x1", this.x(t0)).attr("x2", this.x(t0))
        .attr("y1", this.margin.top).attr("y2", this.el.clientHeight - this.margin.bottom);
      const when0 = this.options.tooltipTime ? d3.utcFormat(this.options.tooltipTime)(t0) : Kit.fmt.dateTime(t0) + " UTC";
      const lines = [when0];
      for (const { s, d } of rows) {
        let text = `${s.label}: ${this.format(d.v)}`;
        if (d.lo != null) text += ` (${this.format(d.lo)} – ${this.format(d.hi)})`;
        lines.push(text);
      }
      this.showTip(mx, Math.min(my, 20), lines);
    }

    unhover() {
      this.focus.style("display", "none");
      this.hideTip();
    }
  };

  // -- bars --------------------------------------------------------------------
  /**
   * new Kit.BarChart(element, {unit, horizontal, color, labelWidth})
   * chart.update([{key, label, value, color?, detail?}, ...])   (in the order to draw)
   */
  Kit.BarChart = class extends Chart {
    constructor(element, options) {
      super(element, options, { horizontal: true, color: "--s1", labelWidth: 120 });
      this.gAxis = this.svg.insert("g", ".empty").attr("class", "axis");
      this.gBars = this.svg.insert("g", ".empty");
      this.items = [];
    }

    update(items) {
      this.items = items;
      this.render(true);
    }

    fill(d) {
      const c = d.color || this.options.color; // "--name", "var(--name)" or a colour
      return c.startsWith("--") ? `var(${c})` : c;
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      const items = this.items;
      this.showEmpty(!items.length, width, height);
      const t = this.transition(animate);
      const max = d3.max(items, (d) => d.value) || 1;
      const horizontal = this.options.horizontal;
      const m = horizontal ? { top: 4, right: 64, bottom: 20, left: this.options.labelWidth } : { top: 18, right: 8, bottom: 44, left: 48 };
      const band = d3.scaleBand().domain(items.map((d) => d.key)).padding(0.22)
        .range(horizontal ? [m.top, height - m.bottom] : [m.left, width - m.right]);
      const value = d3.scaleLinear().domain([0, max]).nice()
        .range(horizontal ? [m.left, width - m.right] : [height - m.bottom, m.top]);
      const whole = this.options.unit === "count";
      const ticks = value.ticks(horizontal ? Math.max(2, Math.floor(width / 110)) : 4).filter((v) => !whole || Number.isInteger(v));
      if (horizontal) {
        this.gAxis.attr("transform", `translate(0,${height - m.bottom})`).transition(t).call(d3.axisBottom(value).tickValues(ticks).tickFormat(this.format));
      } else {
        this.gAxis.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(value).tickValues(ticks).tickFormat(this.format));
      }
      const labelOf = new Map(items.map((d) => [d.key, d.label]));
      // A bar whose item is gone drops its labels at once and only its rect fades out: a
      // fading label would sit under the new label of its row (on /demo11 every window
      // replaces all ten bars). It is marked `leaving` and left out of later joins, so an
      // item that comes back gets a new bar instead of one half faded with no labels.
      // A new bar starts in its own row (column), so its label never sweeps across others.
      const bars = this.gBars.selectAll("g.bar:not(.leaving)").data(items, (d) => d.key).join(
        (enter) => {
          const g = enter.append("g").attr("class", "bar").attr("opacity", 0);
          g.append("rect").attr("rx", 2);
          g.append("text").attr("class", "bar-label");
          g.append("text").attr("class", "bar-value");
          if (horizontal) {
            g.select("rect").attr("x", m.left).attr("width", 0).attr("y", (d) => band(d.key)).attr("height", band.bandwidth());
            g.select(".bar-label").attr("x", m.left - 6).attr("y", (d) => band(d.key) + band.bandwidth() / 2);
            g.select(".bar-value").attr("x", m.left + 4).attr("y", (d) => band(d.key) + band.bandwidth() / 2);
          } else {
            g.select("rect").attr("y", height - m.bottom).attr("height", 0).attr("x", (d) => band(d.key)).attr("width", band.bandwidth());
            g.select(".bar-value").attr("x", (d) => band(d.key) + band.bandwidth() / 2).attr("y", height - m.bottom);
          }
          return g;
        },
        (update) => update,
        (exit) => exit.classed("leaving", true).attr("pointer-events", "none")
          .call((g) => g.selectAll("text").remove())
          .transition(t).attr("opacity", 0).remove());
      bars.on("mousemove", (event, d) => {
        const [px, py] = d3.pointer(event, this.el);
        this.showTip(px, py, [labelOf.get(d.key) || d.key, `${this.format(d.value)}${d.detail ? " · " + d.detail : ""}`]);
      }).on("mouseleave", () => this.hideTip());
      bars.transition(t).attr("opacity", 1);
      bars.select("rect").style("fill", (d) => this.fill(d));
      if (horizontal) {
        bars.select("rect").transition(t).attr("x", m.left).attr("y", (d) => band(d.key)).attr("height", band.bandwidth())
          .attr("width", (d) => Math.max(0, value(d.value) - m.left));
        const room = Math.max(4, Math.floor((m.left - 8) / 6.5)); // characters that fit left of the bars
        bars.select(".bar-label").text((d) => (String(d.label).length > room ? String(d.label).slice(0, room - 1) + "…" : d.label)).attr("text-anchor", "end")
          .transition(t).attr("x", m.left - 6).attr("y", (d) => band(d.key) + band.bandwidth() / 2).attr("dy", "0.35em");
        bars.select(".bar-value").text((d) => this.format(d.value))
          .transition(t).attr("x", (d) => value(d.value) + 4).attr("y", (d) => band(d.key) + band.bandwidth() / 2).attr("dy", "0.35em");
      } else {
        bars.select("rect").transition(t).attr("x", (d) => band(d.key)).attr("width", band.bandwidth())
          .attr("y", (d) => value(d.value)).attr("height", (d) => Math.max(0, height - m.bottom - value(d.value)));
        // Labels that do not fit under their bar are turned.
        const longest = d3.max(items, (d) => String(d.label).length) || 1;
        const turn = band.bandwidth() < longest * 6.5;
        bars.select(".bar-label").text((d) => d.label).attr("text-anchor", turn ? "end" : "middle")
          .attr("transform", (d) => (turn ? `rotate(-35 ${band(d.key) + band.bandwidth() / 2} ${height - m.bottom + 10})` : null))
          .attr("x", (d) => band(d.key) + band.bandwidth() / 2).attr("y", height - m.bottom + (turn ? 10 : 14));
        bars.select(".bar-value").text((d) => this.format(d.value)).attr("text-anchor", "middle")
          .transition(t).attr("x", (d) => band(d.key) + band.bandwidth() / 2).attr("y", (d) => value(d.value) - 4);
      }
    }
  };

  // -- histogram -----------------------------------------------------------------
  /**
   * new Kit.Histogram(element, {unit (of x), color})
   * chart.update({bins: [{x0, x1, count}], below?: n, above?: n})
   */
  Kit.Histogram = class extends Chart {
    constructor(element, options) {
      super(element, options, { color: "--s1" });
      this.margin = { top: 10, right: 12, bottom: 22, left: 48 };
      this.gGrid = this.svg.insert("g", ".empty").attr("class", "grid-line");
      this.gBars = this.svg.insert("g", ".empty");
      this.gX = this.svg.insert("g", ".empty").attr("class", "axis x");
      this.gY = this.svg.insert("g", ".empty").attr("class", "axis y");
      this.note = d3.select(this.el.parentNode).append("div").attr("class", "legend");
      this.data = { bins: [] };
    }

    update(data) {
      this.data = data;
      this.render(true);
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      const bins = this.data.bins || [];
      const total = d3.sum(bins, (b) => b.count) + (this.data.below || 0) + (this.data.above || 0);
      this.showEmpty(!bins.length, width, height);
      const outside = [];
      if (this.data.below) outside.push(`${Kit.fmt.integer(this.data.below)} below ${this.format(bins.length ? bins[0].x0 : null)}`);
      if (this.data.above) outside.push(`${Kit.fmt.integer(this.data.above)} at or above ${this.format(bins.length ? bins[bins.length - 1].x1 : null)}`);
      this.note.text(bins.length ? `${Kit.fmt.integer(total)} values` + (outside.length ? ` (${outside.join(", ")})` : "") : "");
      if (!bins.length) { this.gBars.selectAll("rect").remove(); return; } // no bars of earlier data under the empty state
      const m = this.margin;
      const x = d3.scaleLinear().domain([bins[0].x0, bins[bins.length - 1].x1]).range([m.left, width - m.right]);
      const y = d3.scaleLinear().domain([0, d3.max(bins, (b) => b.count) || 1]).nice().range([height - m.bottom, m.top]);
      const t = this.transition(animate);
      this.gX.attr("transform", `translate(0,${height - m.bottom})`).transition(t).call(d3.axisBottom(x).ticks(Math.max(2, width / 80)).tickFormat(this.format));
      const yTicks = y.ticks(4).filter(Number.isInteger);
      this.gY.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).tickValues(yTicks).tickFormat(Kit.unitFormatter("count")));
      this.gGrid.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).tickValues(yTicks).tickSize(-(width - m.left - m.right)).tickFormat(""));
      this.gGrid.select(".domain").remove();
      const color = this.options.color.startsWith("--") ? `var(${this.options.color})` : this.options.color;
      const rects = this.gBars.selectAll("rect").data(bins, (b, i) => i).join(
        (enter) => enter.append("rect").attr("y", height - m.bottom).attr("height", 0),
        (update) => update,
        (exit) => exit.remove());
      rects.style("fill", color)
        .on("mousemove", (event, b) => {
          const [px, py] = d3.pointer(event, this.el);
          this.showTip(px, py, [`[${this.format(b.x0)}, ${this.format(b.x1)})`, `${Kit.fmt.integer(b.count)} values · ${Kit.fmt.share(total ? b.count / total : 0)}`]);
        }).on("mouseleave", () => this.hideTip());
      rects.transition(t).attr("x", (b) => x(b.x0) + 0.5).attr("width", (b) => Math.max(0, x(b.x1) - x(b.x0) - 1))
        .attr("y", (b) => y(b.count)).attr("height", (b) => Math.max(0, height - m.bottom - y(b.count)));
    }
  };

  // -- donut ---------------------------------------------------------------------
  /**
   * new Kit.Donut(element, {unit})
   * chart.update([{key, label, value, color?}, ...])   (legend beside it, largest first)
   */
  Kit.Donut = class extends Chart {
    constructor(element, options) {
      super(element, options, { unit: "count" });
      this.gArcs = this.svg.insert("g", ".empty");
      this.center = this.svg.append("text").attr("class", "donut-total").attr("text-anchor", "middle");
      this.legend = d3.select(this.el.parentNode).append("div").attr("class", "legend");
      this.items = [];
      this.current = new Map(); // key -> last drawn angles, for the tween
    }

    update(items) {
      this.items = items;
      this.render(true);
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      const items = this.items;
      this.showEmpty(!items.length, width, height);
      const total = d3.sum(items, (d) => d.value);
      const r = Math.min(width, height) / 2 - 6;
      const cx = width / 2, cy = height / 2;
      this.gArcs.attr("transform", `translate(${cx},${cy})`);
      this.center.attr("x", cx).attr("y", cy).attr("dy", "0.35em").text(items.length ? Kit.fmt.integer(total) : "");
      const pie = d3.pie().sort(null).value((d) => d.value);
      const arc = d3.arc().innerRadius(r * 0.58).outerRadius(r).padAngle(0.01);
      const arcs = pie(items);
      const colorOf = (d, i) => (d.color ? `var(${d.color})` : Kit.color(i));
      const t = this.transition(animate);
      const current = this.current;
      const paths = this.gArcs.selectAll("path").data(arcs, (a) => a.data.key).join(
        (enter) => enter.append("path").each(function (a) { current.set(a.data.key, { startAngle: a.startAngle, endAngle: a.startAngle }); }),
        (update) => update,
        (exit) => exit.remove());
      paths.style("fill", (a, i) => colorOf(a.data, i))
        .on("mousemove", (event, a) => {
          const [px, py] = d3.pointer(event, this.el);
          this.showTip(px, py, [a.data.label, `${this.format(a.data.value)} · ${Kit.fmt.share(total ? a.data.value / total : 0)}`]);
        }).on("mouseleave", () => this.hideTip());
      paths.transition(t).attrTween("d", function (a) {
        const from = current.get(a.data.key) || { startAngle: a.startAngle, endAngle: a.startAngle };
        const interpolate = d3.interpolate(from, { startAngle: a.startAngle, endAngle: a.endAngle });
        current.set(a.data.key, { startAngle: a.startAngle, endAngle: a.endAngle });
        return (k) => arc(interpolate(k));
      });
      this.legend.selectAll("span.item").data(items, (d) => d.key).join((enter) => {
        const item = enter.append("span").attr("class", "item");
        item.append("span").attr("class", "swatch");
        item.append("span").attr("class", "label");
        return item;
      }).order().call((sel) => {
        sel.select(".swatch").style("background", (d, i) => colorOf(d, i));
        sel.select(".label").text((d) => `${d.label} ${Kit.fmt.share(total ? d.value / total : 0)}`);
      });
    }
  };

  /** Keep an array sorted by t, bounded to `limit` points. */
  Kit.bounded = function (points, limit) {
    points.sort((a, b) => a.t - b.t);
    return points.length > limit ? points.slice(points.length - limit) : points;
  };

  /** Rows kept by key|window_start: upsert(list) replaces, bound keeps the newest windows. */
  Kit.RowStore = class {
    constructor(limit) {
      this.limit = limit || 5000;
      this.map = new Map();
    }
    clear() { this.map.clear(); }
    upsert(rows) {
      for (const r of rows || []) this.map.set(r.key + "|" + r.window_start, r);
      if (this.map.size > this.limit) {
        const keys = [...this.map.keys()].sort((a, b) => (this.map.get(a).window_start < this.map.get(b).window_start ? -1 : 1));
        for (const k of keys.slice(0, this.map.size - this.limit)) this.map.delete(k);
      }
    }
    rows() { return [...this.map.values()]; }
    get size() { return this.map.size; }
  };

  window.Kit = Kit;
})();
