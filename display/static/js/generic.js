/* A plain live table of whatever a demo receives (used by demos without a page of their own). */
(function () {
  "use strict";
  const LIMIT = 50;
  let items = [];
  function show() {
    const body = document.querySelector("#rows tbody");
    body.replaceChildren(...items.slice(0, LIMIT).map((it) => {
      const tr = document.createElement("tr");
      for (const text of [it.source, it.key, it.time, JSON.stringify(it.values)]) {
        const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
      }
      return tr;
    }));
  }
  function fromRows(stream, rows) {
    return rows.map((r) => ({ source: stream, key: r.key, time: r.window_start, values: r.values }));
  }
  function fromRecords(topic, records) {
    return records.map((r) => ({ source: topic, key: r.host || r.producer || "", time: r.event_time, values: r }));
  }
  Kit.connect(document.body.dataset.namespace, {
    history: (data) => {
      items = [];
      for (const [stream, rows] of Object.entries(data.streams || {})) items.push(...fromRows(stream, rows));
      items.push(...fromRecords("raw", (data.records || []).slice().reverse()));
      items.sort((a, b) => (a.time < b.time ? 1 : -1));
      show();
    },
    update: (data) => {
      const fresh = data.rows ? fromRows(data.stream, data.rows) : fromRecords(data.topic, data.records || []);
      items = fresh.concat(items).slice(0, LIMIT * 2);
      show();
    },
  });
})();
