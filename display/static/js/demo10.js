/* /demo10: case reports: top 3 areas, cases by state (donut), age groups, the last 5 reports. */
(function () {
  "use strict";
  const STREAMS = ["cases_top_areas", "cases_by_state", "cases_by_age", "cases_latest"];
  const STATES_SHOWN = 7; // the rest are one "other" slice
  const rows = Object.fromEntries(STREAMS.map((s) => [s, new Kit.RowStore(3000)]));

  const top = new Kit.BarChart("#chart-top", { unit: "count", horizontal: true, color: "--s1", labelWidth: 140 });
  const states = new Kit.Donut("#chart-states", { unit: "count" });
  const ages = new Kit.BarChart("#chart-ages", { unit: "count", horizontal: false, color: "--s4" });

  /** The newest row per key (running totals are rewritten under the same key). */
  const current = (stream) => [...d3.rollup(rows[stream].rows(), (rs) => rs.reduce((a, b) => (a.window_start >= b.window_start ? a : b)), (r) => r.key).values()];

  function render() {
    const areas = current("cases_top_areas").map((r) => r.values).sort((a, b) => b.count - a.count || d3.ascending(a.location, b.location));
    top.update(areas.slice(0, 3).map((v) => ({ key: `${v.location}|${v.state}`, label: v.state ? `${v.location}, ${v.state}` : v.location, value: v.count })));

    const byState = current("cases_by_state").map((r) => r.values).sort((a, b) => b.count - a.count || d3.ascending(a.state, b.state));
    const slices = byState.slice(0, STATES_SHOWN).map((v) => ({ key: v.state, label: v.state, value: v.count }));
    const rest = d3.sum(byState.slice(STATES_SHOWN), (v) => v.count);
    if (rest) slices.push({ key: "\u0000other", label: `${byState.length - STATES_SHOWN} other states`, value: rest, color: "--muted" });
    states.update(slices);

    const groups = current("cases_by_age").map((r) => r.values).sort((a, b) => a.lower - b.lower);
    ages.update(groups.map((v) => ({ key: v.age_group, label: v.age_group, value: v.count })));

    const latest = rows.cases_latest.rows().sort((a, b) => d3.descending(a.window_start, b.window_start)).slice(0, 5);
    Kit.fillTable("#latest tbody", latest, (r) => {
      const v = r.values;
      return [Kit.fmt.dateTime(Kit.parseTime(v.event_time || r.window_start)), v.id, v.name, v.location, v.state,
        { text: v.age, cls: "num" }, v.infection];
    }, "waiting for data…");

    const total = d3.sum(byState, (v) => v.count);
    Kit.setText("stat-total", byState.length ? Kit.fmt.integer(total) : "–");
    Kit.setText("stat-places", byState.length ? `in ${areas.length} areas of ${byState.length} states` : "");
    Kit.setText("stat-top", areas.length ? areas[0].location : "–");
    Kit.setText("stat-top-sub", areas.length ? `${Kit.fmt.integer(areas[0].count)} cases · ${areas[0].state}` : "");
    const busiest = groups.slice().sort((a, b) => b.count - a.count)[0];
    Kit.setText("stat-age", busiest ? busiest.age_group : "–");
    Kit.setText("stat-age-sub", busiest ? `${Kit.fmt.integer(busiest.count)} cases` : "");
    Kit.setText("stat-latest", latest.length ? Kit.fmt.time(Kit.parseTime(latest[0].window_start)) : "–");
    Kit.setText("stat-latest-sub", latest.length ? `${latest[0].values.location}, ${latest[0].values.state}` : "");
  }

  Kit.connect(document.body.dataset.namespace, {
    history: (data) => { for (const s of STREAMS) { rows[s].clear(); rows[s].upsert((data.streams || {})[s]); } render(); },
    update: (data) => { if (rows[data.stream]) { rows[data.stream].upsert(data.rows); render(); } },
  });
})();
