"""Host metrics to the ``vmstat`` topic: sampled with psutil, or read from ``vmstat`` text.

Run::

    python -m input.vmstat                      # sample this host every VMSTAT_INTERVAL_S
    vmstat -n -t 1 | python -m input.vmstat --stdin [--vmstat-tz Europe/Berlin]
    vmstat -w -S M 1 | python -m input.vmstat --stdin --vmstat-units M   # any layout
    python -m input.vmstat --count 10           # ten samples, then exit

It logs a line per rejected input and, on exit, the counts of records sent and
rejected. ``vmstat -t`` prints local wall-clock time; ``--vmstat-tz`` says
which zone that is (default: this machine's), so event times are UTC.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from buffer import topics
from common.records import VmstatSample, utc_now
from input.base import Clock, Pacer, Rejected, Source

__all__ = ["HostSampler", "VmstatParser", "VmstatSource", "VmstatTextSource"]

log = logging.getLogger(__name__)

#: Column names of procps-ng's ``vmstat -n -t`` when no header line was seen.
DEFAULT_COLUMNS = ("r", "b", "swpd", "free", "buff", "cache", "si", "so", "bi", "bo",
                   "in", "cs", "us", "sy", "id", "wa", "st")
KNOWN_COLUMNS = frozenset(DEFAULT_COLUMNS) | {"gu", "inact", "active"}


class HostSampler:
    """Samples this host with psutil. Rates are per second over the time since the last sample.

    ``psutil_module`` and ``monotonic`` are injectable so tests can give fixed counters.
    """

    def __init__(self, host: str | None = None, psutil_module: Any = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if psutil_module is None:
            import psutil

            psutil_module = psutil
        self.host = host or socket.gethostname()
        self._ps = psutil_module
        self._monotonic = monotonic
        self._ps.cpu_times_percent(interval=None)  # primes the CPU counters
        self._last = self._io_counters()

    def _io_counters(self) -> tuple[float, float, float, float, float]:
        disk = self._ps.disk_io_counters()
        net = self._ps.net_io_counters()
        return (
            self._monotonic(),
            float(disk.read_bytes) if disk else 0.0,
            float(disk.write_bytes) if disk else 0.0,
            float(net.bytes_recv) if net else 0.0,
            float(net.bytes_sent) if net else 0.0,
        )

    def sample(self, event_time: dt.datetime) -> VmstatSample:
        cpu = self._ps.cpu_times_percent(interval=None)
        mem = self._ps.virtual_memory()
        swap = self._ps.swap_memory()
        load = self._ps.getloadavg()
        now = self._io_counters()
        elapsed = max(now[0] - self._last[0], 1e-6)
        rates = [max(0.0, (b - a) / elapsed) for a, b in zip(self._last[1:], now[1:], strict=True)]
        self._last = now
        return VmstatSample(
            event_time=event_time,
            host=self.host,
            cpu_user=float(cpu.user),
            cpu_system=float(cpu.system),
            cpu_idle=float(cpu.idle),
            cpu_iowait=float(getattr(cpu, "iowait", 0.0)),
            mem_used=float(mem.used),
            mem_available=float(mem.available),
            mem_cached=float(getattr(mem, "cached", 0.0) + getattr(mem, "buffers", 0.0)),
            swap_used=float(swap.used),
            disk_read_bps=rates[0],
            disk_write_bps=rates[1],
            net_in_bps=rates[2],
            net_out_bps=rates[3],
            load_1m=float(load[0]),
            load_5m=float(load[1]),
            load_15m=float(load[2]),
        )


class VmstatSource(Source):
    """Samples the host every ``interval`` seconds (psutil)."""

    name = "vmstat"
    topic = topics.VMSTAT

    def __init__(self, interval: float = 1.0, sampler: HostSampler | None = None,
                 count: int | None = None, clock: Clock = utc_now,
                 sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(count=count, clock=clock)
        self.sampler = sampler or HostSampler()
        self.pacer = Pacer(interval, sleep=sleep or self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.wait(seconds)  # wakes early when stopped

    def records(self) -> Iterator[VmstatSample]:
        while not self.stopping:
            self.pacer.wait()
            if self.stopping:
                return
            yield self.sampler.sample(self.clock())


#: ``vmstat -S`` units: bytes per unit of the memory and swap columns.
UNITS = {"k": 1000.0, "K": 1024.0, "m": 1_000_000.0, "M": 1_048_576.0}
#: The columns ``-S`` scales (memory and swap sizes; si/so/bi/bo are per-second counts).
SIZE_COLUMNS = ("swpd", "free", "buff", "cache", "inact", "active")


class VmstatParser:
    """Parses ``vmstat`` output of procps-ng 3.3 and 4.x, one line at a time, in any layout.

    Columns are taken by the names in the header (``r b swpd free ... us sy id wa st``, with
    ``gu`` in 4.x and ``-w``, ``inact active`` instead of ``buff cache`` with ``-a``); header
    lines, repeated or not, yield nothing. A data line becomes a :class:`VmstatSample`:
    with ``-t`` its event time is the timestamp vmstat printed (wall-clock time in ``tz``),
    without it the time the line arrived (``time_source`` says which). Anything else is
    :class:`Rejected` with the reason. Memory and swap columns are in ``unit`` (vmstat's
    ``-S``: K, 1024 bytes, by default); ``bi``/``bo`` are 1 KiB blocks per second.
    """

    def __init__(self, host: str, tz: dt.tzinfo, unit: str = "K",
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        if unit not in UNITS:
            raise ValueError(f"vmstat unit {unit!r}: one of {', '.join(UNITS)} (as vmstat -S)")
        self.host = host
        self.tz = tz
        self.unit_bytes = UNITS[unit]
        self.clock = clock
        self.columns: tuple[str, ...] = DEFAULT_COLUMNS

    def parse(self, line: str) -> VmstatSample | Rejected | None:
        text = line.strip()
        if not text:
            return None
        parts = text.split()
        if "procs" in parts[0]:  # the group line: "procs ---memory---", or "--procs--" with -w
            return None
        if parts[0] == "r" and "us" in parts:
            # With -t the header ends with the time zone's name (UTC, CET), not a column.
            has_zone = parts[-1] not in KNOWN_COLUMNS
            self.columns = tuple(parts[:-1] if has_zone else parts)
            return None
        width = len(self.columns)
        if len(parts) == width:
            event_time, source = self.clock(), "arrival"
        elif len(parts) == width + 2:
            try:
                # vmstat prints wall-clock time in self.tz; it is made aware just below.
                local = dt.datetime.strptime(  # noqa: DTZ007
                    f"{parts[width]} {parts[width + 1]}", "%Y-%m-%d %H:%M:%S")
            except ValueError:
                return Rejected("the last two fields are not vmstat -t's date and time", line)
            event_time, source = local.replace(tzinfo=self.tz).astimezone(dt.UTC), "vmstat"
        else:
            return Rejected(f"expected the {width} columns of the header ({' '.join(self.columns)}), "
                            f"and with -t a date and a time; got {len(parts)} fields", line)
        try:
            numbers = dict(zip(self.columns, (float(p) for p in parts[:width]), strict=True))
        except ValueError:
            return Rejected("a column is not a number", line)

        def get(name: str) -> float | None:
            return numbers.get(name)

        def size(*names: str) -> float | None:
            values = [numbers[n] for n in names if n in numbers]
            return sum(values) * self.unit_bytes if values else None

        kib = 1024.0
        return VmstatSample(
            event_time=event_time,
            host=self.host,
            cpu_user=get("us"),
            cpu_system=get("sy"),
            cpu_idle=get("id"),
            cpu_iowait=get("wa"),
            mem_used=None,  # vmstat shows free, not used: unknown without the total
            mem_available=size("free"),
            mem_cached=size("buff", "cache"),  # None with -a (inact/active instead)
            swap_used=size("swpd"),
            disk_read_bps=None if get("bi") is None else (get("bi") or 0.0) * kib,
            disk_write_bps=None if get("bo") is None else (get("bo") or 0.0) * kib,
            time_source=source,
        )


class VmstatTextSource(Source):
    """Publishes the samples in ``vmstat -n -t 1`` text read from a stream (stdin)."""

    name = "vmstat"
    topic = topics.VMSTAT

    def __init__(self, lines: Iterable[str], host: str | None = None,
                 tz: dt.tzinfo | None = None, count: int | None = None,
                 clock: Clock = utc_now, unit: str = "K") -> None:
        super().__init__(count=count, clock=clock)
        self.lines = lines
        self.parser = VmstatParser(host or socket.gethostname(), tz or _local_zone(), unit=unit,
                                   clock=clock)

    def records(self) -> Iterator[VmstatSample | Rejected]:
        for line in self.lines:
            parsed = self.parser.parse(line)
            if parsed is not None:
                yield parsed
            if self.stopping:
                return


def _local_zone() -> dt.tzinfo:
    zone = dt.datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def _zone(name: str | None) -> dt.tzinfo:
    if not name:
        return _local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SystemExit(f"--vmstat-tz {name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


def main(argv: list[str] | None = None, stdin: TextIO | None = None) -> int:
    from common import cli
    from common import settings as settings_module
    from input.base import KafkaSink

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "vmstat_interval_s", "log_level"])
    parser.add_argument("--stdin", action="store_true",
                        help="read `vmstat` text on stdin, any layout (-t for vmstat's own "
                             "timestamps, else the arrival time is the event time; -w, -a, -n)")
    parser.add_argument("--vmstat-units", default="K", choices=sorted(UNITS),
                        help="the -S unit vmstat ran with (default K: 1024 bytes)")
    parser.add_argument("--vmstat-tz", help="IANA zone of vmstat's timestamps (default: local)")
    parser.add_argument("--host", help="host name to report (default: this host's)")
    parser.add_argument("--count", type=int, help="stop after this many samples")
    args, settings = cli.start(parser, argv)
    bootstrap = cli.broker(parser, settings)
    source: Source
    if args.stdin:
        source = VmstatTextSource(stdin or sys.stdin, host=args.host, tz=_zone(args.vmstat_tz),
                                  count=args.count, unit=args.vmstat_units)
    else:
        source = VmstatSource(settings.vmstat_interval_s, HostSampler(args.host), count=args.count)
    sink = KafkaSink(bootstrap)
    try:
        counters = source.run(sink)
    except KeyboardInterrupt:
        counters = source.counters
    log.info("vmstat: sent %d, rejected %d", counters.sent, counters.rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
