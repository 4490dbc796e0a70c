/* /demo4 (disk) and /demo3 (Cassandra): census statistics from the census_stats batch job.
 * Streams: census_population (year|sex), census_age (year|sex|age), census_income (state|group).
 */
(function () {
  "use strict";
  const rows = {
    census_population: new Kit.RowStore(2000),
    census_age: new Kit.RowStore(2000),
    census_income: new Kit.RowStore(2000),
  };
  const yearInput = document.getElementById("year");
  const playButton = document.getElementById("play");
  const regionSelect = document.getElementById("region");
  const fmtPeople = Kit.unitFormatter("people");
  const ageLabel = (age) => (age >= 90 ? "90+" : `${age}–${age + 4}`);
  let years = [];
  let timer = null;

  // -- the pyramid: male to the left, female to the right, share of the year's people -----
  class Pyramid extends Kit.Chart {
    constructor(element) {
      super(element, { unit: "share" });
      this.gGrid = this.svg.insert("g", ".empty").attr("class", "grid-line");
      this.gBars = this.svg.insert("g", ".empty");
      this.gX = this.svg.insert("g", ".empty").attr("class", "axis x");
      this.gY = this.svg.insert("g", ".empty").attr("class", "axis y");
      this.titles = this.svg.append("g");
      this.items = [];
      this.max = 0.1;
    }

    update(items, max) {
      this.items = items; // [{age, sex: 1|2, people, share}]
      this.max = max;
      this.render(true);
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      this.showEmpty(!this.items.length, width, height);
      const m = { top: 18, right: 16, bottom: 22, left: 16 }, gap = 44;
      const mid = width / 2;
      const ages = [...new Set(this.items.map((d) => d.age))].sort((a, b) => b - a);
      const y = d3.scaleBand().domain(ages).range([m.top, height - m.bottom]).padding(0.12);
      const left = d3.scaleLinear().domain([0, this.max]).nice().range([mid - gap / 2, m.left]);
      const right = d3.scaleLinear().domain(left.domain()).range([mid + gap / 2, width - m.right]);
      const t = this.transition(animate);
      const ticks = Math.max(2, Math.floor(width / 160));
      this.gX.attr("transform", `translate(0,${height - m.bottom})`).selectAll("g.side").data([left, right]).join("g")
        .attr("class", "side").each(function (scale) {
          d3.select(this).transition(t).call(d3.axisBottom(scale).ticks(ticks).tickFormat(d3.format(".0%")));
        });
      this.gY.selectAll("text").data(ages, (a) => a).join("text").attr("text-anchor", "middle").attr("dy", "0.35em")
        .attr("x", mid).attr("y", (a) => y(a) + y.bandwidth() / 2).text((a) => ageLabel(a));
      this.titles.selectAll("text").data(["male", "female"]).join("text").attr("class", "axis-label")
        .attr("text-anchor", (d) => (d === "male" ? "end" : "start"))
        .attr("x", (d) => (d === "male" ? mid - gap / 2 : mid + gap / 2)).attr("y", 10).text((d) => d);
      const bars = this.gBars.selectAll("rect").data(this.items, (d) => `${d.sex}|${d.age}`).join(
        (enter) => enter.append("rect").attr("x", mid).attr("width", 0).attr("rx", 1.5),
        (update) => update,
        (exit) => exit.remove());
      bars.style("fill", (d) => (d.sex === 1 ? "var(--male)" : "var(--female)"))
        .on("mousemove", (event, d) => {
          const [px, py] = d3.pointer(event, this.el);
          this.showTip(px, py, [`${d.sex === 1 ? "male" : "female"}, ${ageLabel(d.age)}`,
            `${Kit.fmt.integer(d.people)} people`, `${Kit.fmt.share(d.share)} of the population`]);
        }).on("mouseleave", () => this.hideTip());
      bars.transition(t).attr("y", (d) => y(d.age)).attr("height", y.bandwidth())
        .attr("x", (d) => (d.sex === 1 ? left(d.share) : mid + gap / 2))
        .attr("width", (d) => (d.sex === 1 ? left(0) - left(d.share) : right(d.share) - right(0)));
    }
  }

  // -- income: a 100 % stacked bar per state -------------------------------------------------
  const lowerBound = (group) => (group.startsWith("<") ? 0 : parseInt(group, 10) || 0);
  const groupLabel = (group) => group.replace(/(\d+)/g, (n) => "$" + d3.format(",")(+n)).replace(" to ", "–");

  class IncomeShares extends Kit.Chart {
    constructor(element) {
      super(element, { unit: "share" });
      this.gX = this.svg.insert("g", ".empty").attr("class", "axis x");
      this.gRows = this.svg.insert("g", ".empty");
      this.legend = d3.select(this.el.parentNode).append("div").attr("class", "legend");
      this.states = [];
      this.groups = [];
    }

    update(states, groups) {
      this.states = states; // [{state, region, shares: Map(group -> share), households}]
      this.groups = groups;
      this.el.style.height = `${Math.max(160, states.length * 17 + 40)}px`;
      this.render(true);
    }

    render(animate) {
      const [width, height] = this.size();
      if (!width || !height) return;
      this.showEmpty(!this.states.length, width, height);
      const m = { top: 4, right: 12, bottom: 22, left: 130 };
      const color = d3.scaleOrdinal().domain(this.groups).range(d3.quantize(d3.interpolateRgbBasis(["#b2394a", "#e8a23a", "#d9d97a", "#4aa3a0", "#2e5a9c"]), Math.max(this.groups.length, 2)));
      const x = d3.scaleLinear().domain([0, 1]).range([m.left, width - m.right]);
      const y = d3.scaleBand().domain(this.states.map((s) => s.state)).range([m.top, height - m.bottom]).padding(0.15);
      const t = this.transition(animate);
      this.gX.attr("transform", `translate(0,${height - m.bottom})`).transition(t).call(d3.axisBottom(x).ticks(10).tickFormat(d3.format(".0%")));
      const groups = this.groups;
      const row = this.gRows.selectAll("g.state").data(this.states, (s) => s.state).join(
        (enter) => {
          const g = enter.append("g").attr("class", "state").attr("opacity", 0);
          g.append("text").attr("class", "bar-label").attr("text-anchor", "end").attr("dy", "0.35em");
          return g;
        },
        (update) => update,
        (exit) => exit.remove());
      row.transition(t).attr("opacity", 1).attr("transform", (s) => `translate(0,${y(s.state)})`);
      row.select("text").attr("x", m.left - 6).attr("y", y.bandwidth() / 2).text((s) => s.state);
      row.selectAll("rect").data((s) => {
        let acc = 0;
        return groups.map((g) => { const share = s.shares.get(g) || 0; const d = { s, g, x0: acc, share }; acc += share; return d; });
      }, (d) => d.g).join("rect")
        .style("fill", (d) => color(d.g))
        .on("mousemove", (event, d) => {
          const [px, py] = d3.pointer(event, this.el);
          this.showTip(px, py, [`${d.s.state} (${d.s.region})`, `${groupLabel(d.g)}: ${Kit.fmt.share(d.share)} of households`]);
        }).on("mouseleave", () => this.hideTip())
        .transition(t).attr("x", (d) => x(d.x0)).attr("width", (d) => Math.max(0, x(d.x0 + d.share) - x(d.x0)))
        .attr("height", y.bandwidth());
      this.legend.selectAll("span.item").data(groups, (g) => g).join((enter) => {
        const item = enter.append("span").attr("class", "item");
        item.append("span").attr("class", "swatch");
        item.append("span").attr("class", "label");
        return item;
      }).order().call((items) => {
        items.select(".swatch").style("background", (g) => color(g));
        items.select(".label").text((g) => groupLabel(g));
      });
    }
  }

  const pyramid = new Pyramid("#chart-pyramid");
  const income = new IncomeShares("#chart-income");
  const population = new Kit.LineChart("#chart-population", { unit: "people", yMin: 0, timeFormat: "%Y", tooltipTime: "%Y", series: [
    { id: "total", label: "total", color: "--s3" }, { id: "male", label: "male", color: "--male" }, { id: "female", label: "female", color: "--female" }] });
  const meanAge = new Kit.LineChart("#chart-age", { format: (v) => (v == null ? "–" : `${d3.format(".0f")(v)} y`), timeFormat: "%Y", tooltipTime: "%Y", series: [
    { id: "male", label: "male", color: "--male", band: true }, { id: "female", label: "female", color: "--female", band: true }] });

  function selectedYear() {
    return years[Number(yearInput.value)] ?? years[years.length - 1];
  }

  function renderAll() {
    const pop = rows.census_population.rows().map((r) => r.values);
    years = [...new Set([...pop.map((v) => v.year), ...rows.census_age.rows().map((r) => r.values.year)])].sort((a, b) => a - b);
    const keep = yearInput.dataset.year ? Number(yearInput.dataset.year) : years[years.length - 1];
    yearInput.max = String(Math.max(0, years.length - 1));
    yearInput.value = String(Math.max(0, years.includes(keep) ? years.indexOf(keep) : years.length - 1));
    const t = (year) => new Date(Date.UTC(year, 0, 1));
    const bySex = (sex) => pop.filter((v) => v.sex === sex).sort((a, b) => a.year - b.year);
    population.update({
      total: d3.rollups(pop, (vs) => d3.sum(vs, (v) => v.population), (v) => v.year).sort((a, b) => a[0] - b[0]).map(([y, v]) => ({ t: t(y), v })),
      male: bySex(1).map((v) => ({ t: t(v.year), v: v.population })),
      female: bySex(2).map((v) => ({ t: t(v.year), v: v.population })),
    });
    const ageSeries = (sex) => bySex(sex).map((v) => ({ t: t(v.year), v: v.mean_age, lo: v.stddev_age != null ? v.mean_age - v.stddev_age : null, hi: v.stddev_age != null ? v.mean_age + v.stddev_age : null }));
    meanAge.update({ male: ageSeries(1), female: ageSeries(2) });
    Kit.setText("census-count", `${years.length} census years · ${rows.census_age.size} age rows · ${rows.census_income.size} income rows`);
    renderYear();
    renderIncome();
  }

  function renderYear() {
    const year = selectedYear();
    yearInput.dataset.year = year == null ? "" : String(year);
    Kit.setText("year-label", year == null ? "–" : String(year));
    const ages = rows.census_age.rows().map((r) => r.values);
    const total = d3.sum(ages.filter((v) => v.year === year), (v) => v.people);
    // Shares of the whole year (both sexes), on one scale for every year, so shapes compare.
    const totals = d3.rollup(ages, (vs) => d3.sum(vs, (v) => v.people), (v) => v.year);
    const max = d3.max(ages, (v) => v.people / (totals.get(v.year) || 1)) || 0.1;
    const items = ages.filter((v) => v.year === year).map((v) => ({ age: v.age, sex: v.sex, people: v.people, share: total ? v.people / total : 0 }));
    pyramid.update(items, max);
    Kit.setText("pyramid-caption", year == null ? "" : `${year}: share of the year's population per age group`);
    const pop = rows.census_population.rows().map((r) => r.values).filter((v) => v.year === year);
    const people = d3.sum(pop, (v) => v.population) || total;
    const male = d3.sum(pop.filter((v) => v.sex === 1), (v) => v.population);
    Kit.setText("stat-pop", people ? fmtPeople(people) : "–");
    Kit.setText("stat-pop-sub", people && pop.length ? `${Kit.fmt.share(male / people)} male · ${year}` : "");
    const meanAll = pop.length ? d3.sum(pop, (v) => v.mean_age * v.population) / (people || 1) : null;
    Kit.setText("stat-age", meanAll == null ? "–" : `${d3.format(".1f")(meanAll)} years`);
    Kit.setText("stat-age-sub", pop.map((v) => `${v.sex_label} ${d3.format(".1f")(v.mean_age)}`).join(" · "));
    const shareOf = (test) => (total ? d3.sum(items.filter((d) => test(d.age)), (d) => d.people) / total : null);
    Kit.setText("stat-young", Kit.fmt.share(shareOf((a) => a < 20)));
    Kit.setText("stat-old", Kit.fmt.share(shareOf((a) => a >= 65)));
  }

  function renderIncome() {
    const values = rows.census_income.rows().map((r) => r.values);
    const regions = [...new Set(values.map((v) => v.region))].sort();
    Kit.fillSelect(regionSelect, [["", "all"], ...regions.map((r) => [r, r])]);
    const region = regionSelect.value;
    const groups = [...new Set(values.map((v) => v.group))].sort((a, b) => lowerBound(a) - lowerBound(b));
    const states = d3.groups(values.filter((v) => !region || v.region === region), (v) => v.state).map(([state, vs]) => ({
      state, region: vs[0].region, shares: new Map(vs.map((v) => [v.group, v.share])),
      rich: d3.sum(vs.filter((v) => lowerBound(v.group) >= 100000), (v) => v.share),
    })).sort((a, b) => b.rich - a.rich || d3.ascending(a.state, b.state));
    income.update(states, groups);
  }

  yearInput.addEventListener("input", () => { yearInput.dataset.year = String(years[Number(yearInput.value)]); renderYear(); });
  regionSelect.addEventListener("change", renderIncome);
  playButton.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; playButton.textContent = "▶ play"; return; }
    playButton.textContent = "❚❚ pause";
    if (Number(yearInput.value) >= years.length - 1) yearInput.value = "0";
    else yearInput.value = String(Number(yearInput.value) + 1);
    yearInput.dispatchEvent(new Event("input"));
    timer = setInterval(() => {
      if (Number(yearInput.value) >= years.length - 1) { playButton.click(); return; }
      yearInput.value = String(Number(yearInput.value) + 1);
      yearInput.dispatchEvent(new Event("input"));
    }, 1200);
  });

  Kit.connect(document.body.dataset.namespace, {
    history: (data) => {
      for (const [name, store] of Object.entries(rows)) { store.clear(); store.upsert((data.streams || {})[name]); }
      renderAll();
    },
    update: (data) => {
      if (!rows[data.stream]) return;
      rows[data.stream].upsert(data.rows);
      renderAll();
    },
  });
})();
