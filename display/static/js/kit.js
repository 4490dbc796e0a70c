/* streamkit front-end helpers: the Socket.IO connection, formatting, and D3 charts.
 *
 * No build step: plain scripts loaded after d3 and socket.io. Everything that
 * came from data is inserted with textContent / d3's .text(), never as HTML.
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
    bytes: (v) => (v == null ? "–" : si(v).replace("G", "G") + "B"),
    percent: (v) => (v == null ? "–" : d3.format(".1f")(v) + " %"),
    time: d3.utcFormat("%H:%M:%S"),
    dateTime: d3.utcFormat("%Y-%m-%d %H:%M:%S"),
  };
  Kit.unitFormatter = function (unit) {
    if (unit === "bytes") return Kit.fmt.bytes;
    if (unit === "bytes/s") return (v) => (v == null ? "–" : Kit.fmt.bytes(v) + "/s");
    if (unit === "%") return Kit.fmt.percent;
    return Kit.fmt.number;
  };
  Kit.parseTime = (s) => (s ? new Date(s) : null);

  // -- connection -------------------------------------------------------------
  /**
   * Connect to a demo's namespace. handlers: {history(data), update(data), unavailable(data), status(data)}.
   * Socket.IO reconnects by itself; the server sends `history` again on every connect, so a
   * page refills after a server restart.
   */
  Kit.connect = function (namespace, handlers) {
    const conn = document.getElementById("conn");
    const last = document.getElementById("last-update");
    const setState = (state, text) => {
      if (!conn) return;
      conn.dataset.state = state;
      conn.textContent = text || state;
    };
    const touched = () => {
      Kit.lastUpdate = new Date();
      if (last) last.textContent = "updated " + Kit.fmt.time(Kit.lastUpdate) + " UTC";
      document.body.dataset.updates = String((Number(document.body.dataset.updates) || 0) + 1);
    };
    const socket = io(namespace, { transports: ["websocket"], reconnectionDelayMax: 3000 });
    socket.on("connect", () => setState("connected"));
    socket.on("disconnect", () => setState("reconnecting", "reconnecting…"));
    socket.io.on("reconnect_attempt", () => setState("reconnecting", "reconnecting…"));
    socket.on("connect_error", () => setState("disconnected", "server unreachable"));
    for (const event of ["history", "update", "status"]) {
      socket.on(event, (data) => {
        if (event !== "status") touched();
        if (handlers[event]) handlers[event](data);
      });
    }
    socket.on("unavailable", (data) => {
      const box = document.getElementById("unavailable");
      if (box) {
        box.hidden = false;
        box.querySelector("p").textContent = data.reason;
      }
      if (handlers.unavailable) handlers.unavailable(data);
    });
    Kit.socket = socket;
    return socket;
  };

  // -- a time-series line chart with optional min/max bands ---------------------
  /**
   * new Kit.LineChart(element, {unit, yMin, series: [{id, label}]})
   * chart.update({seriesId: [{t: Date, v: number, lo?: number, hi?: number}, ...]})
   */
  Kit.LineChart = class {
    constructor(element, options) {
      this.el = typeof element === "string" ? document.querySelector(element) : element;
      this.options = Object.assign({ unit: "", yMin: null, series: [], band: false }, options);
      this.format = Kit.unitFormatter(this.options.unit);
      this.colors = ["--s1", "--s2", "--s3", "--s4", "--s5", "--s6"].map(
        (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim() || "#4fb3ff");
      this.margin = { top: 8, right: 12, bottom: 22, left: 56 };
      this.svg = d3.select(this.el).append("svg").attr("role", "img");
      this.gGrid = this.svg.append("g").attr("class", "grid-line");
      this.gBands = this.svg.append("g");
      this.gLines = this.svg.append("g");
      this.gX = this.svg.append("g").attr("class", "axis x");
      this.gY = this.svg.append("g").attr("class", "axis y");
      this.empty = this.svg.append("text").attr("class", "empty").text("waiting for data…");
      this.focus = this.svg.append("line").attr("stroke", "currentColor").attr("stroke-opacity", 0.3).style("display", "none");
      this.tooltip = d3.select(this.el).append("div").attr("class", "tooltip").style("display", "none");
      this.legend = d3.select(this.el.parentNode).append("div").attr("class", "legend");
      this.data = {};
      this.setSeries(this.options.series);
      this.svg.on("mousemove", (event) => this.hover(event)).on("mouseleave", () => this.unhover());
      new ResizeObserver(() => this.render(false)).observe(this.el);
    }

    setSeries(series) {
      this.options.series = series;
      this.legend.selectAll("span.item").data(series, (s) => s.id).join((enter) => {
        const item = enter.append("span").attr("class", "item");
        item.append("span").attr("class", "swatch");
        item.append("span").attr("class", "label");
        return item;
      }).call((items) => {
        items.select(".swatch").style("background", (s, i) => this.colors[i % this.colors.length]);
        items.select(".label").text((s) => s.label);
      });
    }

    update(data) {
      this.data = data;
      this.render(true);
    }

    render(animate) {
      const width = this.el.clientWidth, height = this.el.clientHeight;
      if (!width || !height) return;
      const m = this.margin;
      const all = this.options.series.flatMap((s) => this.data[s.id] || []);
      this.empty.attr("x", width / 2).attr("y", height / 2).attr("text-anchor", "middle")
        .style("display", all.length ? "none" : null);
      if (!all.length) return;
      const x = d3.scaleUtc().domain(d3.extent(all, (d) => d.t)).range([m.left, width - m.right]);
      const values = all.flatMap((d) => [d.v, d.lo, d.hi]).filter((v) => v != null);
      let [lo, hi] = d3.extent(values);
      if (this.options.yMin != null) lo = Math.min(lo, this.options.yMin);
      if (lo === hi) { lo -= 1; hi += 1; }
      const y = d3.scaleLinear().domain([lo, hi]).nice().range([height - m.bottom, m.top]);
      this.x = x; this.y = y;
      const t = this.svg.transition().duration(animate ? 300 : 0);
      this.gX.attr("transform", `translate(0,${height - m.bottom})`).transition(t).call(d3.axisBottom(x).ticks(Math.max(2, width / 90)).tickFormat(d3.utcFormat("%H:%M:%S")));
      this.gY.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).ticks(5).tickFormat(this.format));
      this.gGrid.attr("transform", `translate(${m.left},0)`).transition(t).call(d3.axisLeft(y).ticks(5).tickSize(-(width - m.left - m.right)).tickFormat(""));
      this.gGrid.select(".domain").remove();
      const line = d3.line().defined((d) => d.v != null).x((d) => x(d.t)).y((d) => y(d.v));
      const area = d3.area().defined((d) => d.lo != null && d.hi != null).x((d) => x(d.t)).y0((d) => y(d.lo)).y1((d) => y(d.hi));
      const series = this.options.series.map((s, i) => ({ s, i, points: this.data[s.id] || [] }));
      // Paths are set, not tweened: interpolating path strings with different point counts
      // draws shapes that never existed. The axes glide instead.
      this.gBands.selectAll("path").data(series.filter((d) => this.options.band), (d) => d.s.id)
        .join("path").attr("fill", (d) => this.colors[d.i % this.colors.length]).attr("fill-opacity", 0.18)
        .attr("d", (d) => area(d.points));
      this.gLines.selectAll("path").data(series, (d) => d.s.id)
        .join("path").attr("fill", "none").attr("stroke-width", 1.8)
        .attr("stroke", (d) => this.colors[d.i % this.colors.length])
        .attr("d", (d) => line(d.points));
    }

    hover(event) {
      if (!this.x) return;
      const [mx] = d3.pointer(event, this.svg.node());
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
      this.tooltip.style("display", null).style("left", `${Math.min(mx + 12, this.el.clientWidth - 160)}px`).style("top", "4px");
      this.tooltip.selectAll("*").remove();
      this.tooltip.append("div").attr("class", "t").text(Kit.fmt.dateTime(t0) + " UTC");
      for (const { s, d } of rows) {
        let text = `${s.label}: ${this.format(d.v)}`;
        if (d.lo != null) text += ` (${this.format(d.lo)} – ${this.format(d.hi)})`;
        this.tooltip.append("div").text(text);
      }
    }

    unhover() {
      this.focus.style("display", "none");
      this.tooltip.style("display", "none");
    }
  };

  /** Keep an array sorted by t, bounded to `limit` points. */
  Kit.bounded = function (points, limit) {
    points.sort((a, b) => a.t - b.t);
    return points.length > limit ? points.slice(points.length - limit) : points;
  };

  window.Kit = Kit;
})();
