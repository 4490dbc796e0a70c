"""Rows and records in the catalogue's format (common/catalogue.py) for driving the pages.

What a Spark job would write, made here without Spark: every function returns JSON-ready rows
(``ResultRow.to_json()`` shape) or raw records, with times near ``now``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from pathlib import Path
from typing import Any

from common.records import format_time

ROOT = Path(__file__).resolve().parent.parent.parent
CENSUS = ROOT / "input" / "data" / "census"
XSS = "<script>alert(1)</script>"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def window_floor(now: dt.datetime, seconds: int = 10) -> dt.datetime:
    return now - dt.timedelta(seconds=now.timestamp() % seconds)


def row(stream: str, key: str, start: dt.datetime, end: dt.datetime,
        values: dict[str, Any]) -> dict[str, Any]:
    return {"stream": stream, "key": key, "window_start": format_time(start),
            "window_end": format_time(end), "values": values,
            "updated_at": format_time(dt.datetime.now(dt.UTC))}


# -- raw records -------------------------------------------------------------------


def random_records(start_seq: int, n: int, now: dt.datetime, producer: str = "random-1",
                   skip: frozenset[int] = frozenset(), seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed + start_seq)
    out = []
    for i in range(n):
        seq = start_seq + i
        if seq in skip:
            continue
        t = now - dt.timedelta(seconds=(n - i) * 0.1)
        out.append({"event_time": format_time(t), "producer": producer, "seq": seq,
                    "value": round(rng.gauss(0, 1), 4), "distribution": "normal(0, 1)",
                    "produced_at": format_time(t)})
    return out


def vmstat_records(n: int, now: dt.datetime, host: str = "box") -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        t = now - dt.timedelta(seconds=n - i)
        out.append({"event_time": format_time(t), "host": host, "cpu_user": 20 + 10 * math.sin(i / 5),
                    "cpu_system": 5.0, "cpu_idle": 70.0, "cpu_iowait": 1.0, "mem_used": 4e9 + i * 1e6,
                    "mem_available": 8e9, "mem_cached": 2e9, "swap_used": 0.0,
                    "disk_read_bps": 1e5, "disk_write_bps": 2e5 + i * 1e3, "net_in_bps": 3e4,
                    "net_out_bps": 1e4, "load_1m": 0.5, "load_5m": 0.4, "load_15m": 0.3})
    return out


# -- result rows -----------------------------------------------------------------------


def vmstat_rows(stream: str, windows: int, now: dt.datetime, host: str = "box",
                first: int = 0) -> list[dict[str, Any]]:
    out = []
    end0 = window_floor(now)
    for w in range(first, first + windows):
        start = end0 - dt.timedelta(seconds=10 * (windows + first - w))
        values: dict[str, Any] = {"count": 10}
        for i, metric in enumerate(("cpu_user", "cpu_system", "cpu_idle", "cpu_iowait", "mem_used",
                                    "mem_available", "mem_cached", "swap_used", "disk_read_bps",
                                    "disk_write_bps", "net_in_bps", "net_out_bps", "load_1m",
                                    "load_5m", "load_15m")):
            avg = 10 + i + 5 * math.sin(w / 3 + i)
            values.update({f"{metric}_avg": avg, f"{metric}_min": avg - 2, f"{metric}_max": avg + 3})
        out.append(row(stream, host, start, start + dt.timedelta(seconds=10), values))
    return out


def random_stats_rows(windows: int, now: dt.datetime, producer: str = "random-1",
                      shift: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(3 + shift)
    out = []
    end0 = window_floor(now)
    edges = [round(-3 + 0.5 * i, 1) for i in range(13)]
    seq = 0
    for w in range(windows):
        start = end0 - dt.timedelta(seconds=10 * (windows - w)) + dt.timedelta(seconds=10 * shift)
        values = [rng.gauss(0.1 * math.sin(w / 4), 1) for _ in range(100)]
        counts = [0] * (len(edges) + 1)
        for v in values:
            counts[sum(1 for e in edges if v >= e)] += 1
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        gaps = 2 if w % 7 == 3 else 0
        out.append(row("random_stats", producer, start, start + dt.timedelta(seconds=10), {
            "count": len(values), "mean": mean, "stddev": sd, "min": min(values),
            "max": max(values), "histogram": {"edges": edges, "counts": counts},
            "first_seq": seq, "last_seq": seq + len(values) + gaps - 1, "gaps": gaps,
            "duplicates": 1 if w % 11 == 5 else 0}))
        seq += len(values) + gaps
    return out


def census_rows() -> dict[str, list[dict[str, Any]]]:
    """census_population, census_age and census_income from the real files the kit ships."""
    population = json.loads((CENSUS / "population.json").read_text())
    income = json.loads((CENSUS / "income.json").read_text())
    by_year_sex: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in population:
        by_year_sex.setdefault((r["year"], r["sex"]), []).append(r)
    pop_rows, age_rows = [], []
    for (year, sex), rs in sorted(by_year_sex.items()):
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
        total = sum(r["people"] for r in rs)
        mids = [(r["age"] + 2.5 if r["age"] < 90 else 92.5, r["people"]) for r in rs]
        mean = sum(a * p for a, p in mids) / total
        sd = math.sqrt(sum(p * (a - mean) ** 2 for a, p in mids) / total)
        label = "male" if sex == 1 else "female"
        pop_rows.append(row("census_population", f"{year}|{sex}", start, end, {
            "year": year, "sex": sex, "sex_label": label, "population": total,
            "mean_age": mean, "stddev_age": sd}))
        for r in rs:
            age_rows.append(row("census_age", f"{year}|{sex}|{r['age']}", start, end, {
                "year": year, "sex": sex, "age": r["age"], "people": r["people"],
                "share": r["people"] / total}))
    start = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
    income_rows = [row("census_income", f"{r['name']}|{r['group']}", start, end, {
        "state": r["name"], "region": r["region"], "group": r["group"], "share": r["pct"],
        "households": round(r["pct"] * r["total"])}) for r in income]
    return {"census_population": pop_rows, "census_age": age_rows, "census_income": income_rows}


def nginx_rows(window: int, now: dt.datetime, scale: float = 1.0,
               evil: bool = True) -> list[dict[str, Any]]:
    """One 10 s window of edges: two hosts, services, upstreams; an attacker-named service."""
    start = window_floor(now) + dt.timedelta(seconds=10 * window)
    end = start + dt.timedelta(seconds=10)
    edges = [
        ("shop.example", "INTERNET", "web", 400, 0.01, 0.02, 0.12),
        ("shop.example", "web", "10.0.0.5:8080", 300, 0.005, 0.03, 0.2),
        ("shop.example", "web", "local", 100, 0.0, 0.001, 0.004),
        ("shop.example", "INTERNET", "api", 120, 0.08, 0.2, 1.4),
        ("shop.example", "api", "10.0.0.7:9000", 120, 0.08, 0.19, 1.35),
        ("blog.example", "INTERNET", "blog", 60, 0.0, 0.01, 0.05),
        ("blog.example", "blog", "local", 60, 0.0, 0.001, 0.003),
    ]
    if evil:
        edges.append(("shop.example", "INTERNET", XSS, 8, 0.0, 0.002, 0.01))
        edges.append(("shop.example", XSS, "local", 8, 0.0, 0.001, 0.002))
    out = []
    phase = 1 + 0.3 * math.sin(window)
    for host, source, target, base, err, p50, p95 in edges:
        n = max(1, round(base * scale * phase))
        e5 = round(n * err)
        e4 = round(n * 0.03)
        e3 = round(n * 0.05)
        out.append(row("nginx_edges", f"{host}|{source}|{target}", start, end, {
            "host": host, "source": source, "target": target, "requests": n,
            "status_2xx": n - e5 - e4 - e3, "status_3xx": e3, "status_4xx": e4, "status_5xx": e5,
            "error_rate": e5 / n, "p50_request_time": p50, "p95_request_time": p95,
            "bytes": n * 2048}))
    return out


CITIES = [("Houston", "TX"), ("Dallas", "TX"), ("Austin", "TX"), ("Miami", "FL"),
          ("Orlando", "FL"), ("Seattle", "WA"), ("Boston", "MA"), ("Denver", "CO"),
          ("Chicago", "IL"), ("Phoenix", "AZ")]


def cases_rows(now: dt.datetime, extra: int = 0) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(11 + extra)
    start = EPOCH
    end = EPOCH
    top, by_state, by_age, latest = [], [], [], []
    states: dict[str, int] = {}
    for i, (city, state) in enumerate(CITIES):
        count = 200 - 17 * i + extra * (10 if i == 4 else 1)
        states[state] = states.get(state, 0) + count
        top.append(row("cases_top_areas", city, start, end,
                       {"location": city, "state": state, "count": count}))
    for state, count in states.items():
        by_state.append(row("cases_by_state", state, start, end, {"state": state, "count": count}))
    for lower in range(0, 90, 10):
        label = f"{lower}-{lower + 9}" if lower < 80 else "80+"
        by_age.append(row("cases_by_age", label, start, end, {
            "age_group": label, "lower": lower,
            "count": int(120 * math.exp(-((lower - 40) / 30) ** 2)) + extra}))
    for i in range(8):
        t = now - dt.timedelta(seconds=30 * (8 - i)) + dt.timedelta(seconds=extra)
        city, state = CITIES[rng.randrange(len(CITIES))]
        name = XSS if i == 7 else f"Patient {i + extra}"
        latest.append(row("cases_latest", f"c{i + extra * 100}", t, t, {
            "id": f"c{i + extra * 100}", "name": name, "location": city, "state": state,
            "age": rng.randrange(1, 95), "infection": "influenza", "event_time": format_time(t)}))
    return {"cases_top_areas": top, "cases_by_state": by_state, "cases_by_age": by_age,
            "cases_latest": latest}


def cases_city_rows(windows: int, now: dt.datetime, shift: int = 0) -> list[dict[str, Any]]:
    out = []
    end0 = window_floor(now)
    for w in range(windows):
        start = end0 - dt.timedelta(seconds=10 * (windows - w) + 50) + dt.timedelta(seconds=10 * shift)
        for i, (city, state) in enumerate(CITIES[:7]):
            count = max(0, int(40 - 5 * i + 10 * math.sin((w + shift) / 3 + i)))
            out.append(row("cases_city_sliding", city, start, start + dt.timedelta(seconds=60),
                           {"location": city, "state": state, "count": count}))
    return out
