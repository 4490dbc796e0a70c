/* The index: live state of every demo, Spark query and source, from the /status namespace. */
(function () {
  "use strict";
  const fmtAge = (t) => {
    if (!t) return "–";
    const s = Math.max(0, Math.round(Date.now() / 1000 - t));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
  };
  const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; };

  function renderDemos(status) {
    for (const d of status.demos) {
      const tr = document.querySelector(`#demos tr[data-demo="${d.number}"]`);
      if (!tr) continue;
      const badge = document.createElement("span");
      if (!d.available) { badge.className = "badge off"; badge.textContent = "not configured"; badge.title = d.unavailable_reason; }
      else if (d.waiting_reason) { badge.className = "badge idle"; badge.textContent = "starting"; badge.title = d.waiting_reason; }
      else if (d.live) { badge.className = "badge live"; badge.textContent = "live"; }
      else { badge.className = "badge idle"; badge.textContent = "waiting"; }
      tr.querySelector(".state").replaceChildren(badge);
      tr.querySelector(".last").textContent = fmtAge(d.last_update);
      tr.querySelector(".rate").textContent = d.rate;
      tr.querySelector(".clients").textContent = d.clients;
    }
  }

  function renderQueries(status) {
    const body = document.querySelector("#queries tbody");
    const queries = Object.values(status.queries).filter((q) => q.kind === "query_progress");
    if (!queries.length) return;
    queries.sort((a, b) => (a.query < b.query ? -1 : 1));
    body.replaceChildren(...queries.map((q) => {
      const tr = document.createElement("tr");
      const malformed = (q.totals && q.totals.malformed) || 0;
      tr.append(cell(q.query), cell(String(q.batch_id), "num"), cell(String(q.input_rate), "num"),
        cell(String(q.processed_rate), "num"), cell(String(q.batch_ms ?? "–"), "num"),
        cell(q.lag == null ? "–" : String(q.lag), "num" + (q.lag > 10000 ? " warn" : "")),
        cell(String((q.totals && q.totals.late_rows) || 0), "num" + (q.totals && q.totals.late_rows ? " warn" : "")),
        cell(String(malformed), "num" + (malformed ? " warn" : "")),
        cell(String((status.query_failures || {})[q.query] || 0), "num" + ((status.query_failures || {})[q.query] ? " warn" : "")),
        cell(q.idle ? "idle" : (q.watermark || "–")));
      return tr;
    }));
  }

  function renderSources(status) {
    const body = document.querySelector("#sources tbody");
    const sources = Object.values(status.sources);
    if (sources.length) {
      sources.sort((a, b) => (a.source < b.source ? -1 : 1));
      body.replaceChildren(...sources.map((s) => {
        const tr = document.createElement("tr");
        tr.append(cell(s.source), cell(String(s.sent), "num"), cell(String(s.rejected), "num" + (s.rejected ? " warn" : "")),
          cell(String(s.rate ?? "–"), "num"), cell(s.time || "–"));
        return tr;
      }));
    }
    document.getElementById("dead-letters").textContent =
      `dead letters: ${status.dead_letters_total} since the server started (${status.dead_letters_per_min}/min); ` +
      `Socket.IO clients connected: ${status.clients}; following ${(status.following || []).join(", ") || "no topic"}` +
      " (raw topics only while a page shows them)" + (status.feed_error ? ` — feed: ${status.feed_error}` : "");
  }

  function renderSummary(status) {
    const available = status.demos.filter((d) => d.available);
    const live = available.filter((d) => d.live);
    Kit.setText("sum-live", `${live.length} / ${available.length}`);
    Kit.setText("sum-live-sub", status.demos.length > available.length
      ? `${status.demos.length - available.length} not configured here` : "every demo is configured");
    document.getElementById("tile-live").className = "stat " + (live.length ? "good" : "warn");
    const queries = Object.values(status.queries).filter((q) => q.kind === "query_progress");
    const lagging = queries.filter((q) => q.lag > 10000 || q.late_rows).length;
    Kit.setText("sum-queries", String(queries.length));
    Kit.setText("sum-queries-sub", queries.length ? (lagging ? `${lagging} lagging or dropping late rows` : "all keeping up") : "none reporting yet");
    document.getElementById("tile-queries").className = "stat " + (!queries.length ? "" : lagging ? "warn" : "good");
    const sources = Object.values(status.sources);
    Kit.setText("sum-sources", String(sources.length));
    Kit.setText("sum-sources-sub", sources.length ? `${Kit.fmt.number(d3.sum(sources, (x) => x.rate || 0))} records/s in all` : "none reporting yet");
    Kit.setText("sum-dead", `${status.dead_letters_per_min}/min`);
    Kit.setText("sum-dead-sub", `${status.dead_letters_total} since the server started`);
    document.getElementById("tile-dead").className = "stat " + (status.dead_letters_per_min > 0 ? "warn" : "");
    Kit.setText("sum-clients", String(status.clients));
  }

  /* The stack's stages (restarts) and a Kafka outage: a banner while something is down. */
  function renderStages(status) {
    const stages = status.stages || [];
    const down = stages.filter((s) => s.state !== "running");
    const restarts = d3.sum(stages, (s) => s.restarts || 0);
    Kit.setText("sum-stages", stages.length ? `${stages.length - down.length} / ${stages.length}` : "–");
    Kit.setText("sum-stages-sub", stages.length
      ? `${restarts} restart${restarts === 1 ? "" : "s"}` + (restarts ? ": " + stages.filter((s) => s.restarts).map((s) => `${s.name} ${s.restarts}`).join(", ") : "")
      : "reported by python -m stack");
    document.getElementById("tile-stages").className = "stat " + (down.length ? "bad" : restarts ? "warn" : stages.length ? "good" : "");
    const problems = [];
    if (status.feed_error) problems.push(`Kafka: ${status.feed_error}`);
    for (const s of down) problems.push(`${s.name} is down (exit code ${s.last_exit}); the stack restarts it`);
    document.getElementById("stages-panel").hidden = !stages.length;
    document.querySelector("#stages tbody").replaceChildren(...stages.map((s) => {
      const tr = document.createElement("tr");
      const up = s.up_s == null ? "–" : s.up_s < 120 ? `${Math.round(s.up_s)} s` : `${Math.round(s.up_s / 60)} min`;
      tr.append(cell(s.name), cell(s.address || "–"),
        cell(s.state, s.state === "running" ? "" : "warn"),
        cell(String(s.restarts || 0), "num" + (s.restarts ? " warn" : "")), cell(up, "num"));
      return tr;
    }));
    const banner = document.getElementById("outage");
    banner.textContent = problems.join(" · ");
    banner.hidden = !problems.length;
  }

  const ms = (s) => (s == null ? "–" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);
  const STAGES = ["source→Kafka", "Kafka→Spark", "Spark→store", "store→server", "Kafka→server", "source→server"];

  function renderLatency(status) {
    const rows = status.demos.filter((d) => d.latency && Object.keys(d.latency).length);
    if (!rows.length) return;
    document.querySelector("#latency tbody").replaceChildren(...rows.map((d) => {
      const tr = document.createElement("tr");
      tr.append(cell(d.route));
      for (const stage of STAGES) {
        const f = d.latency[stage];
        tr.append(cell(f ? `${ms(f.p50)} / ${ms(f.p95)}` : "–", "num"));
      }
      return tr;
    }));
  }

  function renderAccounting(status) {
    const rows = status.accounting || [];
    if (!rows.length) return;
    const n = (v) => (v == null ? "–" : String(v));
    document.querySelector("#accounting tbody").replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      const off = r.unaccounted != null && r.unaccounted !== 0;
      tr.append(cell(r.stream), cell(r.store), cell(r.topic), cell(n(r.produced), "num"),
        cell(n(r.not_read_yet), "num"), cell(n(r.read), "num"),
        cell(n(r.stored), "num"), Object.assign(cell(n(r.late), "num" + (r.late ? " warn" : "")),
          { title: `Spark dropped ${r.late_groups} window group(s) holding these records` }),
        cell(n(r.malformed), "num" + (r.malformed ? " warn" : "")), cell(n(r.batch), "num"),
        cell(n(r.unaccounted), "num " + (off ? "bad" : "good")));
      return tr;
    }));
  }

  Kit.connect("/status", {
    status: (status) => {
      renderSummary(status); renderStages(status); renderDemos(status); renderQueries(status); renderSources(status);
      renderLatency(status); renderAccounting(status);
    },
  });
})();
