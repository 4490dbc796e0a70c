/* /demo7 (disk) and /demo8 (Cassandra): host metrics per event-time window, from Spark. */
(function () {
  "use strict";
  // metric -> [label, unit], in chart order, from the server (common/records.py VmstatSample)
  const METRICS = Object.fromEntries([...Kit.metricLabels()].map(([id, m]) => [id, [m.label, m.unit]]));
  const STREAMS = ["vmstat_tumbling", "vmstat_sliding"];
  const LIMIT = 180; // windows kept per stream and host
  const rows = new Map(); // stream -> Map(key|window_start -> row)
  for (const s of STREAMS) rows.set(s, new Map());

  const metricSelect = document.getElementById("metric");
  const hostSelect = document.getElementById("host");
  for (const [id, [label]] of Object.entries(METRICS)) {
    const option = document.createElement("option");
    option.value = id; option.textContent = label;
    metricSelect.appendChild(option);
  }
  const charts = {};
  function makeCharts() {
    const [label, unit] = METRICS[metricSelect.value];
    for (const s of STREAMS) {
      const el = document.getElementById("chart-" + s.split("_")[1]);
      el.replaceChildren();
      const legend = el.parentNode.querySelector(".legend");
      if (legend) legend.remove();
      charts[s] = new Kit.LineChart(el, { unit, band: true, series: [{ id: "avg", label: label + " (avg, band: min–max)" }] });
    }
    render();
  }

  function hosts() {
    const seen = new Set();
    for (const m of rows.values()) for (const r of m.values()) seen.add(r.key);
    return [...seen].sort();
  }

  function render() {
    const all = hosts();
    const current = hostSelect.value;
    if (all.join() !== [...hostSelect.options].map((o) => o.value).join()) {
      hostSelect.replaceChildren(...all.map((h) => { const o = document.createElement("option"); o.value = h; o.textContent = h; return o; }));
      if (all.includes(current)) hostSelect.value = current;
    }
    const host = hostSelect.value;
    const metric = metricSelect.value;
    for (const s of STREAMS) {
      const points = [...rows.get(s).values()].filter((r) => r.key === host).map((r) => ({
        t: Kit.parseTime(r.window_start), v: r.values[metric + "_avg"], lo: r.values[metric + "_min"], hi: r.values[metric + "_max"],
      }));
      charts[s].update({ avg: Kit.bounded(points, LIMIT) });
    }
    renderTable(host, metric);
  }

  function renderTable(host, metric) {
    const latest = [...rows.get("vmstat_tumbling").values()].filter((r) => r.key === host)
      .sort((a, b) => (a.window_start < b.window_start ? 1 : -1)).slice(0, 8);
    const format = Kit.unitFormatter(METRICS[metric][1]);
    const body = document.querySelector("#latest tbody");
    body.replaceChildren(...latest.map((r) => {
      const tr = document.createElement("tr");
      const cells = [
        Kit.fmt.dateTime(Kit.parseTime(r.window_start)) + " – " + Kit.fmt.time(Kit.parseTime(r.window_end)),
        r.key, String(r.values.count), format(r.values[metric + "_avg"]), format(r.values[metric + "_min"]),
        format(r.values[metric + "_max"]), r.updated_at ? Kit.fmt.time(Kit.parseTime(r.updated_at)) : "–",
      ];
      for (const [i, text] of cells.entries()) {
        const td = document.createElement("td");
        td.textContent = text;
        if (i >= 2 && i <= 5) td.className = "num";
        tr.appendChild(td);
      }
      return tr;
    }));
    document.getElementById("window-count").textContent = `${rows.get("vmstat_tumbling").size} tumbling and ${rows.get("vmstat_sliding").size} sliding windows`;
  }

  function upsert(stream, list) {
    const m = rows.get(stream);
    if (!m) return;
    for (const r of list) m.set(r.key + "|" + r.window_start, r);
    if (m.size > LIMIT * 4) {
      const keys = [...m.keys()].sort((a, b) => (m.get(a).window_start < m.get(b).window_start ? -1 : 1));
      for (const k of keys.slice(0, m.size - LIMIT * 4)) m.delete(k);
    }
  }

  metricSelect.addEventListener("change", makeCharts);
  hostSelect.addEventListener("change", render);
  makeCharts();
  Kit.connect(document.body.dataset.namespace, {
    history: (data) => {
      for (const s of STREAMS) { rows.get(s).clear(); upsert(s, (data.streams || {})[s] || []); }
      render();
    },
    update: (data) => { upsert(data.stream, data.rows || []); render(); },
  });
})();
