/* /demo2: raw random numbers from the random topic: values, histogram, rate, sequence gaps. */
(function () {
  "use strict";
  const KEEP = 1000;      // draws kept for the histogram
  const SHOWN = 300;      // draws drawn as points
  const SEQ_WINDOW = 5000; // sequence numbers checked for gaps, per producer
  let draws = [];          // {t, v, producer, seq}, sorted by t
  const producers = new Map(); // producer -> {seen: Set, first, last, repeated}

  const values = new Kit.LineChart("#chart-values", { points: true, series: [] });
  const hist = new Kit.Histogram("#chart-hist", { color: "--s1" });
  const rate = new Kit.LineChart("#chart-rate", { unit: "/s", yMin: 0, series: [{ id: "rate", label: "records per second", color: "--s3" }] });

  function track(r) {
    let p = producers.get(r.producer);
    if (!p) { p = { seen: new Set(), first: r.seq, last: r.seq, repeated: 0 }; producers.set(r.producer, p); }
    if (p.seen.has(r.seq)) p.repeated += 1;
    p.seen.add(r.seq);
    p.first = Math.min(p.first, r.seq);
    p.last = Math.max(p.last, r.seq);
    if (p.seen.size > SEQ_WINDOW * 2) {
      const low = p.last - SEQ_WINDOW + 1;
      for (const s of p.seen) if (s < low) p.seen.delete(s);
      p.first = Math.max(p.first, low);
    }
  }

  /** Missing numbers and the recent gaps over the producer's last SEQ_WINDOW numbers. */
  function gapsOf(p) {
    const low = Math.max(p.first, p.last - SEQ_WINDOW + 1);
    const seen = [...p.seen].filter((s) => s >= low).sort((a, b) => a - b);
    let missing = 0;
    const ranges = [];
    for (let i = 1; i < seen.length; i++) {
      const gap = seen[i] - seen[i - 1] - 1;
      if (gap > 0) { missing += gap; ranges.push(gap === 1 ? String(seen[i - 1] + 1) : `${seen[i - 1] + 1}–${seen[i] - 1}`); }
    }
    return { missing, received: seen.length, ranges: ranges.slice(-3).reverse() };
  }

  function add(records) {
    for (const r of records) {
      if (typeof r.value !== "number" || r.seq == null) continue;
      draws.push({ t: Kit.parseTime(r.event_time), v: r.value, producer: String(r.producer), seq: r.seq });
      track(r);
    }
    draws = Kit.bounded(draws, KEEP);
    render();
  }

  function render() {
    const names = [...producers.keys()].sort();
    if (names.join() !== values.options.series.map((s) => s.id).join()) {
      values.setSeries(names.map((id) => ({ id, label: id })));
    }
    const recent = draws.slice(-SHOWN);
    const byProducer = {};
    for (const id of names) byProducer[id] = recent.filter((d) => d.producer === id);
    values.update(byProducer);

    if (draws.length) {
      const [lo, hi] = d3.extent(draws, (d) => d.v);
      const x = d3.scaleLinear().domain([lo, hi === lo ? lo + 1 : hi]).nice(24);
      const bins = d3.bin().domain(x.domain()).thresholds(x.ticks(24))(draws.map((d) => d.v));
      hist.update({ bins: bins.map((b) => ({ x0: b.x0, x1: b.x1, count: b.length })) });
    }

    // Rate by event time: per-second counts over the last two minutes, and the last 10 s.
    const newest = draws.length ? +draws[draws.length - 1].t : 0;
    const perSecond = d3.rollup(draws.filter((d) => +d.t > newest - 120000), (v) => v.length, (d) => Math.floor(+d.t / 1000));
    const seconds = [...perSecond.keys()].sort((a, b) => a - b);
    // The newest second is still filling: leave it out of the chart.
    rate.update({ rate: seconds.slice(0, -1).map((s) => ({ t: new Date(s * 1000), v: perSecond.get(s) })) });
    const last10 = draws.filter((d) => +d.t > newest - 10000).length;
    Kit.setText("stat-rate", draws.length ? Kit.fmt.number(last10 / 10) : "–");
    Kit.setText("stat-count", Kit.fmt.integer(draws.length));
    Kit.setText("stat-producers", `${names.length} producer${names.length === 1 ? "" : "s"}`);
    const lastDraw = draws[draws.length - 1];
    Kit.setText("stat-last", lastDraw ? Kit.fmt.number(lastDraw.v) : "–");
    Kit.setText("stat-last-time", lastDraw ? `${lastDraw.producer} · seq ${lastDraw.seq} · ${Kit.fmt.time(lastDraw.t)} UTC` : "");

    const rows = names.map((id) => Object.assign({ id, p: producers.get(id) }, gapsOf(producers.get(id))));
    const missing = d3.sum(rows, (r) => r.missing), repeated = d3.sum(rows, (r) => r.p.repeated);
    const tile = document.getElementById("gap-tile");
    tile.className = "stat " + (!rows.length ? "" : missing || repeated ? "bad" : "good");
    Kit.setText("stat-gaps", !rows.length ? "–" : missing || repeated ? `${Kit.fmt.integer(missing)} missing` : "no gaps");
    Kit.setText("stat-gaps-sub", rows.length ? `${Kit.fmt.integer(repeated)} repeated` : "");
    Kit.fillTable("#producers tbody", rows, (r) => [
      r.id, { text: Kit.fmt.integer(r.p.last), cls: "num" }, { text: Kit.fmt.integer(r.received), cls: "num" },
      { text: Kit.fmt.integer(r.missing), cls: "num" + (r.missing ? " bad" : "") },
      { text: Kit.fmt.integer(r.p.repeated), cls: "num" + (r.p.repeated ? " warn" : "") },
      r.ranges.length ? r.ranges.join(", ") : "none",
    ], "waiting for data…");
  }

  Kit.connect(document.body.dataset.namespace, {
    history: (data) => { draws = []; producers.clear(); add(data.records || []); },
    update: (data) => add(data.records || []),
  });
})();
