/* /demo1: raw host metrics from the vmstat topic, one point per sample. */
(function () {
  "use strict";
  const LIMIT = 300; // samples kept per host (5 minutes at 1/s)
  const charts = {
    cpu: new Kit.LineChart("#chart-cpu", { unit: "%", yMin: 0, series: [
      { id: "cpu_user", label: "user" }, { id: "cpu_system", label: "system" }, { id: "cpu_iowait", label: "iowait" }] }),
    mem: new Kit.LineChart("#chart-mem", { unit: "bytes", yMin: 0, series: [
      { id: "mem_used", label: "used" }, { id: "mem_available", label: "available" }, { id: "mem_cached", label: "cache" }] }),
    net: new Kit.LineChart("#chart-net", { unit: "bytes/s", yMin: 0, series: [
      { id: "net_in_bps", label: "in" }, { id: "net_out_bps", label: "out" }] }),
    disk: new Kit.LineChart("#chart-disk", { unit: "bytes/s", yMin: 0, series: [
      { id: "disk_read_bps", label: "read" }, { id: "disk_write_bps", label: "write" }] }),
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
