/* /demo11: cases per city over sliding windows: lines for the top cities, bars for the latest window. */
(function () {
  "use strict";
  const STREAM = "cases_city_sliding";
  const WINDOWS = 90; // sliding windows drawn
  const rows = new Kit.RowStore(4000);
  const topSelect = document.getElementById("top-n");
  const lines = new Kit.LineChart("#chart-cities", { unit: "count", yMin: 0, series: [] });
  const bars = new Kit.BarChart("#chart-latest", { unit: "count", horizontal: true, color: "--s2", labelWidth: 130 });

  function render() {
    const all = rows.rows();
    const ends = [...new Set(all.map((r) => r.window_end))].sort().slice(-WINDOWS);
    const shown = all.filter((r) => ends.includes(r.window_end));
    const latestEnd = ends[ends.length - 1];
    const latest = shown.filter((r) => r.window_end === latestEnd).sort((a, b) => b.values.count - a.values.count || d3.ascending(a.key, b.key));
    // Top cities: by cases over the windows shown (a steadier ranking than the latest window).
    const n = Number(topSelect.value);
    const totals = d3.rollups(shown, (rs) => d3.sum(rs, (r) => r.values.count), (r) => r.key).sort((a, b) => b[1] - a[1] || d3.ascending(a[0], b[0]));
    const cities = totals.slice(0, n).map(([city]) => city);
    const label = (city) => { const r = shown.find((x) => x.key === city); return r && r.values.state ? `${city}, ${r.values.state}` : city; };
    if (cities.join("\u0000") !== lines.options.series.map((s) => s.id).join("\u0000")) {
      lines.setSeries(cities.map((c) => ({ id: c, label: label(c) })));
    }
    const data = {};
    for (const city of cities) {
      data[city] = shown.filter((r) => r.key === city).map((r) => ({ t: Kit.parseTime(r.window_end), v: r.values.count })).sort((a, b) => a.t - b.t);
    }
    lines.update(data);
    bars.update(latest.slice(0, 10).map((r) => ({ key: r.key, label: label(r.key), value: r.values.count, color: cities.includes(r.key) ? Kit.color(cities.indexOf(r.key)) : "--muted" })));
    Kit.setText("window-count", `${ends.length} windows · ${totals.length} cities`);
    if (latest.length) {
      const start = Kit.parseTime(latest[0].window_start), end = Kit.parseTime(latestEnd);
      Kit.setText("bars-caption", `${Kit.fmt.time(start)}–${Kit.fmt.time(end)} UTC, the 10 busiest cities`);
      Kit.setText("stat-window", Kit.fmt.time(end));
      Kit.setText("stat-window-sub", `from ${Kit.fmt.time(start)} UTC (${Math.round((end - start) / 1000)} s)`);
      Kit.setText("stat-cases", Kit.fmt.integer(d3.sum(latest, (r) => r.values.count)));
      Kit.setText("stat-cities", `in ${latest.length} cities`);
      Kit.setText("stat-top", latest[0].key);
      Kit.setText("stat-top-sub", `${Kit.fmt.integer(latest[0].values.count)} cases${latest[0].values.state ? " · " + latest[0].values.state : ""}`);
    }
  }

  topSelect.addEventListener("change", render);
  Kit.connect(document.body.dataset.namespace, {
    history: (data) => { rows.clear(); rows.upsert((data.streams || {})[STREAM]); render(); },
    update: (data) => { if (data.stream === STREAM) { rows.upsert(data.rows); render(); } },
  });
})();
