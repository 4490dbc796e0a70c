/* /demo5 (disk) and /demo6 (Cassandra): random numbers per tumbling window, from Spark. */
(function () {
  "use strict";
  const STREAM = "random_stats";
  const LIMIT = 120; // windows drawn per producer
  const rows = new Kit.RowStore(LIMIT * 8);
  const producerSelect = document.getElementById("producer");

  const meanChart = new Kit.LineChart("#chart-mean", { series: [
    { id: "mean", label: "mean", color: "--s1", band: true },
    { id: "min", label: "min", color: "--s2", dashed: true }, { id: "max", label: "max", color: "--s5", dashed: true }] });
  const hist = new Kit.Histogram("#chart-hist", { color: "--s4" });
  const countChart = new Kit.LineChart("#chart-count", { unit: "count", yMin: 0, series: [{ id: "count", label: "numbers", color: "--s3" }] });
  const gapChart = new Kit.LineChart("#chart-gaps", { unit: "count", yMin: 0, series: [
    { id: "gaps", label: "gaps (missing sequence numbers)", color: "--bad" }, { id: "duplicates", label: "duplicates", color: "--warn" }] });

  function render() {
    const producers = [...new Set(rows.rows().map((r) => r.key))].sort();
    const producer = Kit.fillSelect(producerSelect, producers.map((p) => [p, p]));
    const windows = rows.rows().filter((r) => r.key === producer)
      .sort((a, b) => d3.ascending(a.window_start, b.window_start)).slice(-LIMIT);
    const at = (r) => Kit.parseTime(r.window_start);
    const v = (r) => r.values;
    meanChart.update({
      mean: windows.map((r) => ({ t: at(r), v: v(r).mean,
        lo: v(r).stddev != null ? v(r).mean - v(r).stddev : null, hi: v(r).stddev != null ? v(r).mean + v(r).stddev : null })),
      min: windows.map((r) => ({ t: at(r), v: v(r).min })),
      max: windows.map((r) => ({ t: at(r), v: v(r).max })),
    });
    countChart.update({ count: windows.map((r) => ({ t: at(r), v: v(r).count })) });
    gapChart.update({ gaps: windows.map((r) => ({ t: at(r), v: v(r).gaps })), duplicates: windows.map((r) => ({ t: at(r), v: v(r).duplicates })) });

    const last = windows[windows.length - 1];
    const h = last && last.values.histogram;
    if (h && Array.isArray(h.edges) && Array.isArray(h.counts) && h.counts.length === h.edges.length + 1) {
      const bins = h.edges.slice(1).map((e, i) => ({ x0: h.edges[i], x1: e, count: h.counts[i + 1] }));
      hist.update({ bins, below: h.counts[0], above: h.counts[h.counts.length - 1] });
      Kit.setText("hist-caption", `${Kit.fmt.time(at(last))}–${Kit.fmt.time(Kit.parseTime(last.window_end))} UTC`);
    } else {
      hist.update({ bins: [] });
    }

    Kit.setText("window-count", `${windows.length} windows of ${producers.length} producer${producers.length === 1 ? "" : "s"}`);
    Kit.setText("stat-window", last ? `${Kit.fmt.time(at(last))}` : "–");
    Kit.setText("stat-count", last ? `${Kit.fmt.integer(last.values.count)} numbers` : "");
    Kit.setText("stat-mean", last ? `${Kit.fmt.number(last.values.mean)} ± ${Kit.fmt.number(last.values.stddev)}` : "–");
    Kit.setText("stat-range", last ? `min ${Kit.fmt.number(last.values.min)} · max ${Kit.fmt.number(last.values.max)}` : "");
    const gaps = d3.sum(windows, (r) => r.values.gaps || 0), dups = d3.sum(windows, (r) => r.values.duplicates || 0);
    const withGaps = windows.filter((r) => r.values.gaps).length;
    Kit.setText("stat-gaps", windows.length ? Kit.fmt.integer(gaps) : "–");
    Kit.setText("stat-gaps-sub", windows.length ? `missing numbers, in ${withGaps} window${withGaps === 1 ? "" : "s"}` : "");
    Kit.setText("stat-dups", windows.length ? Kit.fmt.integer(dups) : "–");
    document.getElementById("tile-gaps").className = "stat " + (!windows.length ? "" : gaps ? "bad" : "good");
    document.getElementById("tile-dups").className = "stat " + (!windows.length ? "" : dups ? "warn" : "good");

    Kit.fillTable("#latest tbody", windows.slice(-8).reverse(), (r) => [
      `${Kit.fmt.dateTime(at(r))} – ${Kit.fmt.time(Kit.parseTime(r.window_end))}`,
      { text: Kit.fmt.integer(v(r).count), cls: "num" }, { text: Kit.fmt.number(v(r).mean), cls: "num" },
      { text: Kit.fmt.number(v(r).stddev), cls: "num" }, { text: Kit.fmt.number(v(r).min), cls: "num" },
      { text: Kit.fmt.number(v(r).max), cls: "num" }, { text: `${v(r).first_seq ?? "–"}–${v(r).last_seq ?? "–"}`, cls: "num" },
      { text: Kit.fmt.integer(v(r).gaps), cls: "num" + (v(r).gaps ? " bad" : "") },
      { text: Kit.fmt.integer(v(r).duplicates), cls: "num" + (v(r).duplicates ? " warn" : "") },
      r.updated_at ? Kit.fmt.time(Kit.parseTime(r.updated_at)) : "–",
    ], "waiting for data…");
  }

  producerSelect.addEventListener("change", render);
  Kit.connect(document.body.dataset.namespace, {
    history: (data) => { rows.clear(); rows.upsert((data.streams || {})[STREAM]); render(); },
    update: (data) => { if (data.stream === STREAM) { rows.upsert(data.rows); render(); } },
  });
})();
