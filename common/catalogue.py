"""The demo catalogue and the result streams: one definition, used by the jobs, the
server, the index page, the API and the README (a test checks the README's table).

A *stream* is a named series of result rows that a Spark job writes to a store
and pushes to the ``results`` topic. A *demo* is a page (``/demoN``) showing
either a raw topic straight from Kafka, or one or more streams from one store.
"""

from __future__ import annotations

from dataclasses import dataclass

from buffer import topics

__all__ = ["DEMOS", "STREAMS", "Accounting", "Demo", "Stream", "demo", "mermaid", "stream"]


@dataclass(frozen=True)
class Accounting:
    """How a stream's stored rows count the input records, each exactly once.

    The sum of ``value`` over the stream's rows (those where ``where`` holds) is the
    number of records the query aggregated; with the query's late and malformed rows
    and its lag it must add up to what the sources published to ``topic``.
    """

    topic: str  # the topic's role in queue/topics.toml
    query: str  # the query (name before "@store") that reads it
    value: str
    where: tuple[str, str] | None = None  # (value name, required value)

    def counts(self, values: dict[str, object]) -> int:
        if self.where is not None and values.get(self.where[0]) != self.where[1]:
            return 0
        raw = values.get(self.value)
        return int(raw) if isinstance(raw, int | float) else 0


@dataclass(frozen=True)
class Stream:
    """A result stream: who writes it, what a row's key is, and what its ``values`` hold."""

    name: str
    job: str  # the processing module that writes it
    description: str
    key: str  # what a row's key is
    values: tuple[tuple[str, str], ...]  # (field, meaning) of a row's values
    windowed: bool = True
    accounting: Accounting | None = None

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.values)


_VMSTAT_VALUES = (
    ("count", "samples in the window"),
    ("<metric>_avg, <metric>_min, <metric>_max",
     "for each metric of common.records.VmstatSample.METRICS (cpu_user, ..., load_15m); "
     "null when no sample had it"),
    ("<metric>_n", "samples that had the metric"),
)
_CASE_COUNT = (("count", "cases so far"),)

STREAMS: dict[str, Stream] = {
    s.name: s
    for s in (
        Stream("vmstat_tumbling", "vmstat_windows",
               "host metrics per host: count, avg/min/max of each metric per tumbling window",
               "host", _VMSTAT_VALUES,
               accounting=Accounting("vmstat", "vmstat_tumbling", "count")),
        Stream("vmstat_sliding", "vmstat_windows",
               "host metrics per host over sliding windows (1 min, 10 s slide), built from "
               "the tumbling windows",
               "host", _VMSTAT_VALUES),
        Stream("random_stats", "random_stats",
               "random numbers per tumbling window: count, mean, stddev, min, max, histogram, gaps",
               "producer id",
               (("count", "numbers in the window"), ("mean", "mean"),
                ("stddev", "sample standard deviation (null for one number)"),
                ("min", "smallest"), ("max", "largest"),
                ("histogram", "{edges: [e0..en], counts: [n+2 ints]}: counts[0] below e0, "
                              "counts[i] in [e(i-1), e(i)), counts[-1] at or above en"),
                ("first_seq", "smallest sequence number"), ("last_seq", "largest"),
                ("gaps", "sequence numbers missing between first_seq and last_seq"),
                ("duplicates", "numbers whose sequence number was seen twice")),
               accounting=Accounting("random", "random_stats", "count")),
        Stream("nginx_edges", "nginx_traffic",
               "NGINX requests per window and edge: counts by status class, error rate, p50/p95",
               "host|source|target",
               (("host", "the virtual host (the edge region); 'default' when none"),
                ("source", "'INTERNET' or a service"),
                ("target", "a service, or an upstream address, or 'local' (served by nginx)"),
                ("requests", "requests in the window"),
                ("status_2xx", "2xx answers"), ("status_3xx", "3xx answers"),
                ("status_4xx", "4xx answers"), ("status_5xx", "5xx answers"),
                ("error_rate", "status_5xx / requests"),
                ("p50_request_time", "median request time, seconds (approximate)"),
                ("p95_request_time", "95th percentile request time, seconds (approximate)"),
                ("bytes", "response bytes sent")),
               accounting=Accounting("nginx", "nginx_edges", "requests", ("source", "INTERNET"))),
        Stream("cases_top_areas", "case_reports", "running case count per area (city)",
               "location", (("location", "city"), ("state", "state"), *_CASE_COUNT),
               windowed=False),
        Stream("cases_by_state", "case_reports", "running case count per state",
               "state", (("state", "state"), *_CASE_COUNT), windowed=False,
               accounting=Accounting("cases", "cases_totals", "count")),
        Stream("cases_by_age", "case_reports", "running case count per age group",
               "age group label", (("age_group", "'0-9', '10-19', ..., '80+'"),
                                   ("lower", "the group's lowest age"), *_CASE_COUNT),
               windowed=False),
        Stream("cases_latest", "case_reports",
               "the most recent case reports (window_start = window_end = the report's event time)",
               "case id", (("id", "case id"), ("name", "name"), ("location", "city"),
                           ("state", "state"), ("age", "age"), ("infection", "infection type"),
                           ("event_time", "ISO 8601 UTC")), windowed=False),
        Stream("cases_city_panes", "case_reports",
               "cases per city per 10 s pane (SLIDE_SECONDS): what cases_city_sliding is "
               "built from",
               "location", (("location", "city"), ("state", "state"),
                            ("count", "cases in the pane"))),
        Stream("cases_city_sliding", "case_reports",
               "cases per city over sliding windows (1 min, 10 s slide), built from the panes",
               "location", (("location", "city"), ("state", "state"),
                            ("count", "cases in the window"))),
        Stream("census_population", "census_stats",
               "census: population, mean and stddev of age per year and sex "
               "(window_start = 1 January of the year)",
               "year|sex", (("year", "census year"), ("sex", "1 male, 2 female"),
                            ("sex_label", "'male' or 'female'"),
                            ("population", "people"), ("mean_age", "mean age, weighted by people "
                                                       "(age groups at their midpoints)"),
                            ("stddev_age", "standard deviation of age, weighted by people")),
               windowed=False),
        Stream("census_age", "census_stats",
               "census: people per age group, year and sex (window_start = 1 January of the year)",
               "year|sex|age", (("year", "census year"), ("sex", "1 male, 2 female"),
                                ("age", "the group's lowest age (0, 5, ..., 90)"),
                                ("people", "people"),
                                ("share", "share of that year's and sex's population")),
               windowed=False),
        Stream("census_income", "census_stats",
               "census: household income shares per state (ACS 2013; window_start = 2013-01-01)",
               "state|group", (("state", "state name"), ("region", "region"),
                               ("group", "income group, e.g. '<10000'"),
                               ("share", "share of the state's households"),
                               ("households", "households in the group (share x total)")),
               windowed=False),
    )
}


@dataclass(frozen=True)
class Demo:
    number: int
    title: str
    shows: str
    path: tuple[str, ...]
    store: str | None = None  # "disk", "cassandra", or None for raw demos
    streams: tuple[str, ...] = ()
    raw_topic: str | None = None

    @property
    def route(self) -> str:
        return f"/demo{self.number}"

    @property
    def namespace(self) -> str:
        """The Socket.IO namespace of the demo (the same as its route)."""
        return self.route

    @property
    def path_text(self) -> str:
        return " -> ".join(self.path)

    @property
    def live(self) -> bool:
        """Raw demos follow a topic; result demos follow streams."""
        return self.raw_topic is not None or bool(self.streams)


def _d(number: int, title: str, shows: str, path: str, store: str | None = None,
       streams: tuple[str, ...] = (), raw_topic: topics.Topic | None = None) -> Demo:
    for name in streams:
        if name not in STREAMS:
            raise ValueError(f"demo {number} names unknown stream {name}")
    return Demo(number, title, shows, tuple(p.strip() for p in path.split("->")), store, streams,
                raw_topic.name if raw_topic else None)


_CENSUS = ("census_population", "census_age", "census_income")
_CASES = ("cases_top_areas", "cases_by_state", "cases_by_age", "cases_latest")

DEMOS: tuple[Demo, ...] = (
    _d(1, "Host metrics, raw", "live host metrics, raw",
       "vmstat -> Kafka -> Socket.IO -> D3", raw_topic=topics.VMSTAT),
    _d(2, "Random numbers, raw", "live random numbers, raw",
       "random -> Kafka -> Socket.IO -> D3", raw_topic=topics.RANDOM),
    _d(3, "Census statistics (Cassandra)", "census statistics",
       "census file -> Spark batch -> Cassandra -> D3", "cassandra", _CENSUS),
    _d(4, "Census statistics", "census statistics",
       "census file -> Spark batch -> disk -> D3", "disk", _CENSUS),
    _d(5, "Random numbers, windowed", "random numbers, windowed stats + histogram",
       "random -> Kafka -> Spark -> disk -> D3", "disk", ("random_stats",)),
    _d(6, "Random numbers, windowed (Cassandra)", "the same as /demo5",
       "random -> Kafka -> Spark -> Cassandra -> D3", "cassandra", ("random_stats",)),
    _d(7, "Host metrics per window", "host metrics per window",
       "vmstat -> Kafka -> Spark -> disk -> D3", "disk", ("vmstat_tumbling", "vmstat_sliding")),
    _d(8, "Host metrics per window (Cassandra)", "the same as /demo7",
       "vmstat -> Kafka -> Spark -> Cassandra -> D3", "cassandra",
       ("vmstat_tumbling", "vmstat_sliding")),
    _d(9, "NGINX traffic", "NGINX traffic graph + status and latency charts",
       "NGINX log -> Kafka -> Spark -> disk -> Vizceral + D3", "disk", ("nginx_edges",)),
    _d(10, "Case reports", "case reports: top 3 areas, pie by state, last 5 cases, age bars",
       "Locust -> ingest -> Kafka -> Spark -> disk -> D3", "disk", _CASES),
    _d(11, "Cases per city", "cases per city over sliding windows",
       "Locust -> ingest -> Kafka -> Spark -> disk -> D3", "disk", ("cases_city_sliding",)),
)


def demo(number: int) -> Demo:
    for d in DEMOS:
        if d.number == number:
            return d
    raise KeyError(f"no demo {number}")


def stream(name: str) -> Stream:
    try:
        return STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown stream {name!r}; known: {', '.join(STREAMS)}") from None


#: The stores, in the order a job starts its queries: the disk first, whose first windows
#: must never wait for Cassandra (a node that may still be starting).
STORES = ("disk", "cassandra")


def stores_for(stream_name: str) -> tuple[str, ...]:
    """The stores some demo reads ``stream_name`` from (what a job must write to), disk first."""
    wanted = {d.store for d in DEMOS if stream_name in d.streams and d.store}
    return tuple(store for store in STORES if store in wanted)


def _job_topics() -> dict[str, str]:
    """The topic each streaming job reads, from its streams' accounting (batch jobs: none)."""
    out = {}
    for s in STREAMS.values():
        if s.accounting is not None:
            out[s.job] = getattr(topics, s.accounting.topic.upper()).name
    return out


def mermaid() -> str:
    """The data path of every demo as a Mermaid flowchart (the README's diagram): sources ->
    topics -> Spark jobs -> stores -> pages, drawn from this catalogue so it cannot drift."""
    job_topics = _job_topics()
    edges: dict[tuple[str, str], None] = {}  # ordered set
    nodes: dict[str, tuple[str, str]] = {}  # id -> (label, group)

    def node(group: str, name: str) -> str:
        ident = f"{group}_{''.join(c if c.isalnum() else '_' for c in name)}"
        nodes.setdefault(ident, (name, group))
        return ident

    for d in DEMOS:
        page = node("page", f"{d.route} {d.title}")
        before_kafka = d.path[:d.path.index("Kafka")] if "Kafka" in d.path else d.path[:1]
        source = node("source", " → ".join(before_kafka))
        if d.raw_topic:
            edges[(source, node("topic", d.raw_topic))] = None
            edges[(node("topic", d.raw_topic), page)] = None
            continue
        for job in dict.fromkeys(stream(n).job for n in d.streams):
            spark = node("job", f"processing.{job}")
            if job in job_topics:
                edges[(source, node("topic", job_topics[job]))] = None
                edges[(node("topic", job_topics[job]), spark)] = None
            else:
                edges[(source, spark)] = None
            edges[(spark, node("store", str(d.store)))] = None
            edges[(node("store", str(d.store)), page)] = None
    titles = {"source": "sources (input/)", "topic": "Kafka topics", "job": "Spark jobs",
              "store": "stores", "page": "pages (Socket.IO namespace = route)"}
    lines = ["flowchart LR"]
    for group, title in titles.items():
        lines.append(f'  subgraph {group}s ["{title}"]')
        lines += [f'    {ident}["{label}"]' for ident, (label, g) in nodes.items() if g == group]
        lines.append("  end")
    lines += [f"  {a} --> {b}" for a, b in edges]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(mermaid() + "\n")

