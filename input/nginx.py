"""NGINX access logs to the ``nginx`` topic: follow a live log, replay a recording, or a demo.

Run::

    # follow a log like `tail -F` (from its end; --from-start: from its first line)
    python -m input.nginx --follow /var/log/nginx/access.log --log-format combined
    # ... in the site's own format, read from its nginx.conf (the access_log writing that file)
    python -m input.nginx --follow /var/log/nginx/access.log --nginx-conf /etc/nginx/nginx.conf
    # ... or given as nginx.conf has it (a preset name, a definition, or --log-format-name NAME)
    python -m input.nginx --follow app.log --log-format "escape=json '{\"t\":\"$time_iso8601\",...}'"
    # replay a recorded log, its gaps divided by --speed (0: as fast as possible), then exit
    python -m input.nginx --replay input/data/nginx/access-upstream.txt --speed 10 --log-format upstream
    # live demo: a real nginx on loopback with upstreams and light traffic (what `make run` runs)
    python -m input.nginx --demo [--rate 5] [--no-nginx]
    # no mode: follow NGINX_LOG_PATH if set, else the demo
    python -m input.nginx

Add ``--dry-run`` to print each record as a JSON line on stdout instead of
publishing (no broker needed), ``--count N`` to stop after N lines. On exit it
logs the lines sent and rejected. Unparseable lines go to the ``dead-letters``
topic with the reason (and are counted as rejected).

The modes (all subclasses of :class:`input.base.Source`):

* :class:`NginxTailSource` follows a file through rotation and truncation
  (``input.nginx_tail``). Its read position (device, inode, byte offset, first
  bytes of the file) is saved under ``DATA_DIR/nginx/positions/``, **only after
  the sink's flush returned**, i.e. after Kafka acknowledged (acks=all) every
  record and dead letter up to that line. It saves when it has caught up with
  the log (at most once per poll interval), every ``checkpoint_lines`` lines,
  and on a clean stop. So a clean stop and restart neither re-sends nor loses a
  line; after a crash the lines read since the last save are sent again
  (at-least-once, at most ``checkpoint_lines`` or one poll's worth), never lost,
  except what logrotate's ``copytruncate`` drops or a rotated file deleted
  before the restart.
* :class:`NginxReplaySource` replays a recorded log: event times are the
  recorded ones; the gap between two lines is slept divided by ``speed``.
  ``loop=True, rebase=True`` (the demo without nginx) replays forever with event
  times **deliberately re-timed** to start at now and advance at the replay
  speed, so live event-time windows see current times; the recorded order and
  spacing (divided by the speed) are kept.
* :class:`NginxDemoSource` starts a real nginx (``input.nginx_demo``) under
  ``DATA_DIR/nginx/demo`` with upstreams that sometimes fail or time out, drives
  ``rate`` requests/s of loopback traffic at it and follows its ``upstream``
  format log. nginx, its workers, the upstream threads and the traffic stop when
  the source stops. Without an nginx binary, :func:`from_settings` and
  ``--demo`` replay the shipped recording in a loop instead (re-timed, above).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from buffer import topics
from common.accesslog import AccessLogParser, Malformed, ServiceMap
from common.nginx_format import LogFormat, LogFormatError
from common.records import AccessRecord, Record, utc_now
from common.settings import Settings
from input.base import Clock, Counters, Rejected, Sink, Source
from input.nginx_tail import FileTailer, Position, PositionStore

__all__ = ["SHIPPED_RECORDING", "NginxDemoSource", "NginxReplaySource", "NginxTailSource",
           "from_settings", "main", "to_item"]

log = logging.getLogger(__name__)

#: The recording replayed by the demo when no nginx is installed (upstream format).
SHIPPED_RECORDING = Path(__file__).resolve().parent / "data" / "nginx" / "access-upstream.txt"

Sleep = Callable[[float], bool | None]  # returns True when the source was stopped meanwhile


def to_item(raw: bytes, parser: AccessLogParser) -> AccessRecord | Rejected:
    """A raw log line (bytes, no newline) -> a record, or Rejected with the parser's reason.

    Bytes that are not UTF-8 become ``\\xhh`` text, which the parser treats like
    nginx's own escapes; a rejected line keeps its raw bytes for the dead letter.
    """
    result = parser.parse(raw.decode("utf-8", "backslashreplace"))
    if isinstance(result, Malformed):
        return Rejected(result.reason, raw)
    return result


class NginxTailSource(Source):
    """Follows an access log like ``tail -F``; see the module docstring for the guarantee.

    Args:
        path: the log to follow.
        state_dir: where the read position is saved (``DATA_DIR/nginx/positions``).
        log_format: a preset name, an nginx log_format definition, or a LogFormat.
        service_map: ``prefix=service`` pairs (``settings.nginx_service_map``).
        from_start: without a saved position, read the existing lines too.
        poll_interval: seconds between looks at a log that had nothing new.
        checkpoint_lines: flush and save the position at least every this many lines.
        sleep: waits between polls; returns True if stopped (default: :meth:`Source.wait`).
    """

    name = "nginx"
    topic = topics.NGINX

    def __init__(self, path: Path, state_dir: Path, log_format: str | LogFormat = "upstream",
                 service_map: ServiceMap | Iterable[str] = (), from_start: bool = False,
                 poll_interval: float = 0.25, checkpoint_lines: int = 10_000,
                 count: int | None = None, clock: Clock = utc_now,
                 sleep: Sleep | None = None) -> None:
        super().__init__(count=count, clock=clock)
        self.path = Path(path)
        self.parser = AccessLogParser(log_format, service_map)
        self.state_dir = Path(state_dir)
        self.from_start = from_start
        self.poll_interval = poll_interval
        self.checkpoint_lines = checkpoint_lines
        self._sleep: Sleep = sleep or self.wait
        self.tailer: FileTailer | None = None
        self._sink: Sink | None = None
        self._pending: Position | None = None  # after the last line handed to the sink
        self._saved: Position | None = None
        self._unsaved = 0  # lines handed to the sink since the last save

    @property
    def store(self) -> PositionStore:
        return PositionStore(self.state_dir, self.path)

    def run(self, sink: Sink) -> Counters:
        self._sink = sink  # checkpoints flush it before saving a position
        return super().run(sink)

    def records(self) -> Iterator[AccessRecord | Rejected]:
        store = self.store
        self._saved = store.load()
        self.tailer = FileTailer(self.path, self._saved, from_start=self.from_start)
        self._unsaved = 0
        while not self.stopping:
            batch = self.tailer.poll()
            if not batch:
                self.checkpoint()
                if self._sleep(self.poll_interval):
                    return
                continue
            for raw, position in batch:
                # Set before yielding: once the loop resumes us (or stops), it has published it.
                self._pending = position
                yield to_item(raw, self.parser)
                self._unsaved += 1
                if self._unsaved >= self.checkpoint_lines:
                    self.checkpoint()

    def checkpoint(self) -> None:
        """Flush the sink, then save the position after the last line handed to it."""
        if self._pending is None or self._pending == self._saved or self._sink is None:
            return
        self._sink.flush()  # raises if anything was not acknowledged: then nothing is saved
        self.store.save(self._pending)
        self._saved = self._pending
        self._unsaved = 0

    def cleanup(self, sink: Sink, failed: bool) -> None:
        super().cleanup(sink, failed)  # flushes unless the loop failed
        if not failed and self._pending is not None and self._pending != self._saved:
            self.store.save(self._pending)
            self._saved = self._pending
        if self.tailer is not None:
            self.tailer.close()


class NginxReplaySource(Source):
    """Replays a recorded access log; see the module docstring.

    Args:
        path: the recorded log.
        speed: recorded gaps are divided by this; 0 replays as fast as possible.
        loop: start again at the end (forever, until stopped).
        rebase: re-time events to start at ``clock()`` on each pass (for live demos).
        sleep, monotonic: injected for tests; ``sleep`` returns True if stopped.
    """

    name = "nginx"
    topic = topics.NGINX

    def __init__(self, path: Path, log_format: str | LogFormat = "upstream",
                 service_map: ServiceMap | Iterable[str] = (), speed: float = 1.0,
                 loop: bool = False, rebase: bool = False, count: int | None = None,
                 clock: Clock = utc_now, sleep: Sleep | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(count=count, clock=clock)
        if speed < 0:
            raise ValueError(f"replay speed must be 0 or more, got {speed}")
        self.path = Path(path)
        self.parser = AccessLogParser(log_format, service_map)
        self.speed = speed
        self.loop = loop
        self.rebase = rebase
        self._sleep: Sleep = sleep or self.wait
        self._monotonic = monotonic
        self.passes = 0

    def records(self) -> Iterator[AccessRecord | Rejected]:
        while not self.stopping:
            produced = yield from self._one_pass()
            self.passes += 1
            if not self.loop or self.stopping:
                return
            if not produced:
                log.warning("%s has no records: not replaying it in a loop", self.path)
                return

    def _one_pass(self) -> Generator[AccessRecord | Rejected, None, bool]:
        """One pass over the file; its return value says whether any record was yielded."""
        first: dt.datetime | None = None
        started = 0.0
        base: dt.datetime | None = None
        factor = self.speed or 1.0
        with self.path.open("rb") as f:
            for line in f:
                item = to_item(line.rstrip(b"\r\n"), self.parser)
                if isinstance(item, Rejected):
                    yield item
                    continue
                if first is None:
                    first, started = item.event_time, self._monotonic()
                    base = self.clock() if self.rebase else None
                elapsed = (item.event_time - first).total_seconds()
                if self.speed > 0:
                    delay = started + elapsed / self.speed - self._monotonic()
                    if delay > 0 and self._sleep(delay):
                        return first is not None
                if base is not None:
                    item = msgspec.structs.replace(
                        item, event_time=base + dt.timedelta(seconds=elapsed / factor))
                yield item
                if self.stopping:
                    break
        return first is not None


class NginxDemoSource(NginxTailSource):
    """A real nginx on loopback with light traffic, followed like any log (``upstream`` format).

    Args:
        work: the demo's folder (config, logs, static files): ``DATA_DIR/nginx/demo``.
        state_dir: where the read position is saved.
        rate: requests per second sent to nginx (at most 200).
        nginx: the binary (default: found on PATH or /usr/sbin/nginx).
        seed: makes the traffic mix and upstream behaviour reproducible.
    """

    def __init__(self, work: Path, state_dir: Path, rate: float = 5.0, nginx: str | None = None,
                 service_map: ServiceMap | Iterable[str] = (), poll_interval: float = 0.25,
                 count: int | None = None, clock: Clock = utc_now, seed: int | None = None,
                 sleep: Sleep | None = None) -> None:
        from input.nginx_demo.site import DemoSite
        from input.nginx_demo.traffic import MAX_RATE

        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"demo rate must be in (0, {MAX_RATE:.0f}] requests/s, got {rate}")
        self.site = DemoSite(Path(work), nginx=nginx, seed=seed)
        super().__init__(self.site.access_log, state_dir, "upstream", service_map,
                         from_start=True, poll_interval=poll_interval, count=count, clock=clock,
                         sleep=sleep)
        self.rate = rate
        self.seed = seed
        self._fallback: NginxReplaySource | None = None

    def run(self, sink: Sink) -> Counters:
        from input.nginx_demo import NginxError
        from input.nginx_demo.traffic import TrafficDriver, mixed_requests

        try:
            self.site.start()
        except NginxError as e:
            log.error("the nginx demo could not start nginx (%s); replaying the shipped "
                      "recording in a loop instead", e)
            self._fallback = NginxReplaySource(
                SHIPPED_RECORDING, "upstream", self.parser.service_map, speed=1.0, loop=True,
                rebase=True, clock=self.clock, sleep=self._sleep)
            return Source.run(self, sink)
        rng = random.Random(self.seed)
        driver = TrafficDriver(self.site.port, mixed_requests(rng), rate=self.rate, rng=rng)
        try:
            driver.start()
            return super().run(sink)
        finally:
            driver.stop()
            self.site.stop()

    def records(self) -> Iterator[AccessRecord | Rejected]:
        if self._fallback is not None:
            return self._fallback.records()
        return super().records()


def _service_map(settings: Settings) -> tuple[str, ...]:
    return settings.nginx_service_map


def demo_source(settings: Settings, rate: float = 5.0, use_nginx: bool = True,
                count: int | None = None) -> Source:
    """The demo: a real nginx if one is installed (and ``use_nginx``), else the shipped
    recording replayed in a loop with re-timed events (at NGINX_REPLAY_SPEED, 1 if 0)."""
    from input.nginx_demo.site import find_nginx

    nginx = find_nginx() if use_nginx else None
    if nginx is not None:
        log.info("nginx demo: %s on loopback, %.1f requests/s", nginx, rate)
        return NginxDemoSource(settings.data_dir / "nginx" / "demo",
                               settings.data_dir / "nginx" / "positions", rate=rate, nginx=nginx,
                               service_map=_service_map(settings), count=count)
    speed = settings.nginx_replay_speed or 1.0
    log.info("nginx demo without nginx: replaying %s in a loop at %gx, event times re-timed "
             "to now", SHIPPED_RECORDING, speed)
    return NginxReplaySource(SHIPPED_RECORDING, "upstream", _service_map(settings), speed=speed,
                             loop=True, rebase=True, count=count)


def from_settings(settings: Settings) -> Source:
    """What ``python -m input`` runs: follow NGINX_LOG_PATH if set, else the demo."""
    if settings.nginx_log_path is not None:
        return NginxTailSource(settings.nginx_log_path, settings.data_dir / "nginx" / "positions",
                               settings.nginx_access_format(), _service_map(settings),
                               from_start=settings.nginx_from_start)
    return demo_source(settings, rate=settings.nginx_demo_rate)


class PrintSink:
    """``--dry-run``: each record as a JSON line on stdout; dead letters as ``{"dead_letter": ...}``."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout

    def publish(self, topic: str, key: str | None, record: Record) -> None:
        self.out.write(record.encode().decode() + "\n")

    def dead_letter(self, source: str, reason: str, raw: bytes | str) -> None:
        text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
        self.out.write(json.dumps({"dead_letter": {"source": source, "reason": reason,
                                                   "raw": text}}, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self.out.flush()


def main(argv: list[str] | None = None) -> int:
    from common import cli
    from common import settings as settings_module

    parser = settings_module.argument_parser(
        __doc__ or "", only=["kafka_bootstrap_servers", "data_dir", "log_level", "nginx_log_path",
                             "nginx_log_format", "nginx_conf", "nginx_log_format_name",
                             "nginx_replay_speed", "nginx_from_start", "nginx_service_map"])
    mode = parser.add_argument_group("mode (default: follow NGINX_LOG_PATH if set, else --demo)")
    modes = mode.add_mutually_exclusive_group()
    modes.add_argument("--follow", metavar="PATH", help="follow this log (tail -F)")
    modes.add_argument("--replay", metavar="PATH", help="replay this recorded log, then exit")
    modes.add_argument("--demo", action="store_true", help="run the live demo")
    opts = parser.add_argument_group("options")
    opts.add_argument("--log-format", dest="setting_nginx_log_format", metavar="FORMAT",
                      help="same as --nginx-log-format: a preset or a log_format definition")
    opts.add_argument("--log-format-name", dest="setting_nginx_log_format_name", metavar="NAME",
                      help="same as --nginx-log-format-name: a log_format of --nginx-conf")
    opts.add_argument("--speed", dest="setting_nginx_replay_speed", metavar="N",
                      help="replay speed factor, 0: as fast as possible (--nginx-replay-speed)")
    opts.add_argument("--from-start", dest="setting_nginx_from_start", action="store_const",
                      const="true", help="follow from the first line (first run only)")
    opts.add_argument("--loop", action="store_true", help="replay: start again at the end")
    opts.add_argument("--rebase", action="store_true",
                      help="replay: re-time events to start now (the recorded times otherwise)")
    opts.add_argument("--rate", type=float, default=5.0, help="demo: requests/s (default 5)")
    opts.add_argument("--no-nginx", action="store_true",
                      help="demo: replay the shipped recording even if nginx is installed")
    opts.add_argument("--poll-interval", type=float, default=0.25,
                      help="follow: seconds between looks at a quiet log (default 0.25)")
    opts.add_argument("--count", type=int, help="stop after this many lines")
    opts.add_argument("--dry-run", action="store_true",
                      help="print records as JSON lines instead of publishing to Kafka")
    args, settings = cli.start(parser, argv)
    follow = args.follow or (None if args.replay or args.demo else settings.nginx_log_path)
    try:
        log_format = settings.nginx_access_format(Path(follow) if follow else None)
    except LogFormatError as e:
        parser.error(str(e))

    source: Source
    if args.replay:
        source = NginxReplaySource(Path(args.replay), log_format,
                                   settings.nginx_service_map, speed=settings.nginx_replay_speed,
                                   loop=args.loop, rebase=args.rebase, count=args.count)
    elif follow:
        source = NginxTailSource(Path(follow), settings.data_dir / "nginx" / "positions",
                                 log_format, settings.nginx_service_map,
                                 from_start=settings.nginx_from_start,
                                 poll_interval=args.poll_interval, count=args.count)
    else:
        source = demo_source(settings, rate=args.rate, use_nginx=not args.no_nginx,
                             count=args.count)

    sink: Any
    if args.dry_run:
        sink = PrintSink()
    else:
        from input.base import KafkaSink

        sink = KafkaSink(cli.broker(parser, settings))  # (or --dry-run)
    cli.on_stop(lambda _signum: source.stop())
    try:
        counters = source.run(sink)
    finally:
        if hasattr(sink, "close"):
            sink.close()
    log.info("nginx: sent %d, rejected %d", counters.sent, counters.rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
