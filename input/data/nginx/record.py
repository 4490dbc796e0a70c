"""Record the shipped NGINX access logs from a real nginx serving on loopback.

Run from the repository root (needs an nginx binary, e.g. Debian's nginx-light)::

    .venv/bin/python input/data/nginx/record.py [--out input/data/nginx] [--seed 7]

It starts ``input.nginx_demo.site.DemoSite`` (nginx with ``TZ=Europe/Berlin``, so
``$time_local`` carries +0100 or +0200; upstreams in this process, some failing
or timing out), sends traffic in phases of different rates with idle gaps
between them, plus a fixed set of odd requests (raw garbage, real TLS
ClientHello bytes, HTTP/0.9 and 1.0, a space, a DEL byte and a quote in the
target, a lowercase method, an unfinished request, a non-ASCII Host and user
agents with quotes, a backslash, a tab and UTF-8), and writes what nginx
logged, unchanged:

* ``access-upstream.txt``: the ``upstream`` format;
* ``access-combined.txt``: the same requests in nginx's ``combined`` format;
* ``nginx.conf``: the configuration nginx ran with (ports and paths of that run).

The files are ``.txt`` because the repository's .gitignore drops ``*.log``.
It logs a summary of statuses at the end.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from input.nginx_demo.site import DemoSite
from input.nginx_demo.traffic import CLIENTS, client_hello, mixed_requests, request_bytes, send

log = logging.getLogger("record")

#: (requests per second, seconds); rate 0 is an idle gap.
PHASES = ((15, 20), (0, 4), (40, 10), (3, 15), (0, 3), (25, 15))


def odd_requests() -> list[bytes]:
    """Requests that are not plain HTTP/1.1, or carry bytes nginx escapes in its log."""
    return [
        b"GARBAGE\r\n\r\n",
        client_hello(),
        b"\r\n",
        request_bytes("GET", "/", version=""),  # HTTP/0.9
        request_bytes("GET", "/about.html", version="HTTP/1.0"),
        request_bytes("GET", b'/search?q="quoted"&s=\xc3\xa9'),
        request_bytes("GET", "/a b"),
        request_bytes("get", "/"),
        request_bytes("GET", b"/\x7f"),
        b"GET /unfinished",
        request_bytes("GET", "/", host=b"\xff"),
        request_bytes("GET", "/api/items/7", headers=[("User-Agent", b'a"b\\c')]),
        client_hello("admin.local"),
        b"GARBAGE\r\n\r\n",
        request_bytes("GET", "/static/app.css", headers=[
            ("User-Agent", "Mozilla/5.0 (compatible; \"QuoteBot\"/2.1)"),
            ("Referer", "http://shop.local/?q=\"x\"")]),
    ]


def record(out: Path, seed: int) -> None:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="nginx-record-"))
    combined = work / "access-combined.log"
    site = DemoSite(work, combined_log=combined, env={"TZ": "Europe/Berlin"}, seed=seed)
    site.start()
    statuses: collections.Counter[bytes] = collections.Counter()
    lock = threading.Lock()

    def one(payload: bytes, client: str) -> None:
        try:
            first = send(site.port, payload, client=client)
        except OSError as e:
            first = f"error {e}".encode()
        with lock:
            statuses[first[:12] or b"(no answer)"] += 1

    try:
        mix = mixed_requests(rng, odd_share=0.0)
        odd = odd_requests()
        total = sum(rate * seconds for rate, seconds in PHASES)
        odd_at = set(rng.sample(range(total), len(odd)))
        odd_iter = iter(odd)
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            for rate, seconds in PHASES:
                log.info("phase: %s requests/s for %d s", rate or "no", seconds)
                if rate == 0:
                    time.sleep(seconds)
                    continue
                start = time.monotonic()
                for i in range(rate * seconds):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one, next(odd_iter) if sent in odd_at else next(mix),
                                rng.choice(CLIENTS))
                    sent += 1
            for payload in odd_iter:  # any left over
                pool.submit(one, payload, rng.choice(CLIENTS))
    finally:
        site.stop()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(site.access_log, out / "access-upstream.txt")
    shutil.copyfile(combined, out / "access-combined.txt")
    shutil.copyfile(site.config_path, out / "nginx.conf")
    lines = sum(1 for _ in (out / "access-upstream.txt").open("rb"))
    log.info("recorded %d lines into %s (work folder %s)", lines, out, work)
    for first, n in sorted(statuses.items()):
        log.info("  %5d  %s", n, first.decode(errors="replace"))
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

