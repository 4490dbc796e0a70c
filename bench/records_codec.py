"""Benchmark: encoding and decoding the kit's records (``common/records.py``), one core.

What a source pays per record to put it on the wire, and what a consumer (the ingest, the
display server's feed) pays to read one back and check it. Cases, per record type
(``VmstatSample``, every metric set; ``AccessRecord``, as the NGINX parser builds it):

* ``encode``: ``record.encode(produced_at=...)``, what ``input.base.KafkaSink`` sends;
* ``decode``: ``records.decode(type, bytes)``, JSON text straight into a checked record;
* ``from_json``: ``records.from_json(type, dict)``, a decoded object checked into a record;
* ``stdlib json encode`` / ``decode``: ``json.dumps(record.to_json())`` and ``json.loads``,
  the standard library on the same values, for scale (no checks).

Records are msgspec Structs since issue #25. Before, they were frozen dataclasses with a
hand-written check and ``json``: 36 us to encode and 71 us to decode a ``VmstatSample``
(27,800 and 14,000 a second) on these machines; see docs/sources.md "Records on the wire".

Run: ``.venv/bin/python bench/records_codec.py [--records 100000] [--repeat 5]``. Prints a
table; the last line is one JSON object (``records_encode_per_s``, ``records_decode_per_s``
of ``VmstatSample``, and every case).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import emit, loadavg, say, table
from common import records
from common.accesslog import AccessLogParser
from common.records import AccessRecord, VmstatSample, utc_now

DATA = Path(__file__).resolve().parent.parent / "input" / "data" / "nginx"


def samples() -> dict[str, records.Record]:
    now = utc_now()
    vmstat = VmstatSample(event_time=now, host="host-1",
                          **{m: 1234.5 + i for i, m in enumerate(VmstatSample.METRICS)})
    line = (DATA / "access-upstream.txt").read_text().splitlines()[0]
    access = AccessLogParser("upstream").parse(line)
    assert isinstance(access, AccessRecord), access
    return {"VmstatSample": vmstat, "AccessRecord": access}


def rate(action: Callable[[], Any], n: int, repeat: int) -> tuple[float, float]:
    """(best, median) operations per second of ``action`` over ``n`` calls, GC off."""
    runs = []
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(n):
                action()
            runs.append(n / (time.perf_counter() - started))
    finally:
        gc.enable()
    return max(runs), statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    produced = utc_now()
    rows, figures = [], {}
    for name, record in samples().items():
        cls = type(record)
        raw = record.encode(produced_at=produced)
        as_dict = json.loads(raw)
        assert records.decode(cls, raw) == record == records.from_json(cls, as_dict)
        cases = {
            "encode": lambda r=record: r.encode(produced_at=produced),
            "decode": lambda c=cls, b=raw: records.decode(c, b),
            "from_json": lambda c=cls, d=as_dict: records.from_json(c, d),
            "stdlib json encode": lambda r=record: json.dumps(r.to_json()).encode(),
            "stdlib json decode": lambda b=raw: json.loads(b),
        }
        for case, action in cases.items():
            say(f"{name} {case} ...")
            best, median = rate(action, args.records, args.repeat)
            rows.append((name, case, f"{best:,.0f}", f"{median:,.0f}", f"{1e6 / best:.2f}"))
            figures[f"{name}_{case.replace(' ', '_')}_per_s"] = round(best)
    print(table(("record", "case", "best /s", "median /s", "us each"), rows))
    figures["records_encode_per_s"] = figures["VmstatSample_encode_per_s"]
    figures["records_decode_per_s"] = figures["VmstatSample_decode_per_s"]
    figures["loadavg"] = loadavg()
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
