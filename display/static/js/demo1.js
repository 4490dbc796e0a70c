/* /demo1: raw host metrics from the vmstat topic, one point per sample. */
(function () {
  "use strict";
  const LIMIT = 300; // samples kept per host (5 minutes at 1/s)
  // Labels and units from the server (common/records.py VmstatSample.METRIC_LABELS); a
  // chart's series share their label's first word ("CPU user" -> "user" in the CPU chart).
  const METRICS = Kit.metricLabels();
  function chart(selector, ids) {
    const series = ids.map((id) => ({ id, label: METRICS.get(id).label.split(" ").slice(1).join(" ") }));
    return new Kit.LineChart(selector, { unit: METRICS.get(ids[0]).unit, yMin: 0, series });
  }
  const charts = {
    cpu: chart("#chart-cpu", ["cpu_user", "cpu_system", "cpu_iowait"]),
    mem: chart("#chart-mem", ["mem_used", "mem_available", "mem_cached"]),
    net: chart("#chart-net", ["net_in_bps", "net_out_bps"]),
    disk: chart("#chart-disk", ["disk_read_bps", "disk_write_bps"]),
  };
  let samples = [];
  let host = null;

  function add(records) {
    for (const r of records) {
      if (host === null) host = r.host;
      if (r.host !== host) continue; // one host per page; the first one seen
      samples.push(Object.assign({}, r, { t: Kit.parseTime(r.event_time) }));
    }
    samples = Kit.bounded(samples, LIMIT);
    for (const chart of Object.values(charts)) {
      const data = {};
      for (const s of chart.options.series) data[s.id] = samples.map((r) => ({ t: r.t, v: r[s.id] }));
      chart.update(data);
    }
  }

  Kit.connect(document.body.dataset.namespace, {
    history: (data) => { samples = []; add(data.records || []); },
    update: (data) => add(data.records || []),
  });
})();
