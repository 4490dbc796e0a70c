"""NGINX access-log lines -> :class:`~common.records.AccessRecord`: a pure, fast parser.

Two formats, written exactly so in nginx.conf (``input/data/nginx/nginx.conf``)::

    log_format combined '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent"';
    log_format upstream '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" '
                        '"$host" "$upstream_addr" $request_time $upstream_response_time';

(``combined`` is nginx's built-in format; nginx refuses to redefine it, so only
``upstream`` appears in a real nginx.conf.)

Usage::

    parser = AccessLogParser("upstream", parse_service_map("/api/=api,/=web"))
    result = parser.parse(line)        # AccessRecord, or Malformed(reason)
    parse_access_line(line, "combined", ["/api/=api", "/=web"])   # the same, cached parsers

:func:`parse_access_line` never raises on any line; only lines that do not match
the format give :class:`Malformed` with the reason. Field rules:

* Escapes: nginx writes ``"``, ``\\`` and every byte below 0x20 or above 0x7E
  of a variable as ``\\xHH``. Every text field is unescaped; the bytes are
  decoded as UTF-8, and bytes that are not UTF-8 stay visible as ``\\xhh``.
  Lines logged with ``escape=json`` or ``escape=none`` are not this format;
  raw quotes are still accepted in the user agent (the last free-text field,
  matched greedily), which is where other servers put them.
* ``-`` (nginx's "empty") becomes ``""`` for text and ``None`` for times.
  ``$remote_user`` is matched (it may hold spaces) but not kept.
* A line is one line: a newline inside it (nginx writes ``\x0A``) does not
  match; a trailing ``\n`` or ``\r\n`` is ignored. Lines over 64 KiB are rejected.
* ``$request`` is split into method, path (unescaped, query string kept) and
  protocol. A request nginx answered that is not HTTP (``"GARBAGE"``, TLS
  handshake bytes, ``"-"`` for nothing received; nginx answers 400) is still a
  record, with method, path and protocol empty. HTTP/0.9 (``GET /``) has an
  empty protocol.
* ``$time_local`` (``22/Nov/2026:06:02:31 +0100``) becomes a UTC datetime.
* Several upstream tries (``10.0.0.1:80, 10.0.0.2:80`` with times
  ``0.003, 0.002``; ``" : "`` after an internal redirect) keep the **last**
  address and the **last** time: the try whose response nginx sent, so address
  and time describe the same upstream. The time spent on failed tries is in
  ``request_time``.
* ``service``: the first ``prefix=service`` pair of the service map whose
  prefix starts the path (pairs whose prefix starts with ``/``, in order),
  else the first pair whose prefix starts the upstream address (pairs whose
  prefix does not start with ``/``, e.g. ``127.0.0.1:9001=auth``), else the
  upstream address itself, else ``""`` (non-HTTP requests nginx answered
  itself). With the default map, ``/=web`` catches every HTTP path.

Speed: one compiled regex per format, cached time conversion (a log's lines
share their second), records built without the frozen dataclass's per-field
``__setattr__``. ``bench/nginx_parse.py`` measures it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterable
from typing import Any

from common.records import AccessRecord

__all__ = [
    "FORMATS",
    "PARSED_FIELDS",
    "AccessLogParser",
    "Malformed",
    "ServiceMap",
    "escape",
    "format_access_line",
    "parse_access_line",
    "parse_service_map",
    "parse_time_local",
    "service_for",
    "split_request",
    "unescape",
]

#: The nginx ``log_format`` of each supported format (the variables, in order).
FORMATS: dict[str, str] = {
    "combined": ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent"'),
    "upstream": ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent" "$host" "$upstream_addr" $request_time '
                 '$upstream_response_time'),
}

UTC = dt.UTC
MAX_LINE = 65_536  # characters; longer lines are rejected (nginx's headers are 8 KiB, x4 escaped)

_TIME = r"(\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})"
# Atomic group: once "addr - user [time] " is found, never retry with a longer user (keeps
# matching linear on hostile lines). Possessive quantifiers for the same reason.
_HEAD = r'(?>(\S++) - (.*?) \[' + _TIME + r'\] )'
# The request: "METHOD PATH HTTP/x" in three groups, or anything else whole (a fourth group).
_MIDDLE = (r'"(?:([A-Z_-]++) ([^" \n]++) (HTTP/[^" \n]++)|([^"\n]*+))" (\d{3}) (\d{1,18}) '
           r'"([^"\n]*+)" ')
_SECONDS = r"(\d{1,9}(?:\.\d{1,9})?|-)"
_TIMES = r"((?:\d{1,9}(?:\.\d{1,9})?|-)(?:(?:, | : )(?:\d{1,9}(?:\.\d{1,9})?|-))*+)"
_EOL = r"\r?\n?"
_PATTERNS = {
    # No re.DOTALL: "." stops at a newline, so two lines glued together never match as one.
    "combined": re.compile(_HEAD + _MIDDLE + r'"(.*)"' + _EOL, re.ASCII),
    "upstream": re.compile(
        _HEAD + _MIDDLE + r'"(.*)" "([^"\n]*+)" "([^"\n]*+)" ' + _SECONDS + " " + _TIMES + _EOL,
        re.ASCII),
}
_TIME_ONLY = re.compile(_TIME[1:-1], re.ASCII)
_HEAD_ONLY = re.compile(r"(\S+) - (.*?) \[([^\]]{0,64}+)\] ", re.DOTALL)
_ESCAPES = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+")
_TRIES = re.compile(r", | : ")
_METHOD = re.compile(r"[A-Z_-]+")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MONTH_NAMES = {i: m for m, i in _MONTHS.items()}
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_from_timestamp = dt.datetime.fromtimestamp


@dataclasses.dataclass(frozen=True, slots=True)
class Malformed:
    """A line that does not match the log format, and why (for the dead-letter topic)."""

    reason: str


#: (path rules, upstream rules): ordered (prefix, service) pairs; see :func:`parse_service_map`.
ServiceMap = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def parse_service_map(entries: str | Iterable[str]) -> ServiceMap:
    """``"/api/=api,/=web"`` (or its parts) -> the rules :func:`service_for` applies.

    A prefix starting with ``/`` matches the path; any other prefix matches the
    upstream address. Order is kept within each kind.

    Raises:
        ValueError: an entry is not ``prefix=service``; the message names it.
    """
    if isinstance(entries, str):
        entries = [entries]
    paths: list[tuple[str, str]] = []
    upstreams: list[tuple[str, str]] = []
    for entry in (part for item in entries for part in item.split(",")):
        entry = entry.strip()
        if not entry:
            continue
        prefix, sep, service = entry.partition("=")
        prefix, service = prefix.strip(), service.strip()
        if not sep or not prefix or not service:
            raise ValueError(f"service map entry {entry!r} is not prefix=service (e.g. /api/=api)")
        (paths if prefix.startswith("/") else upstreams).append((prefix, service))
    return tuple(paths), tuple(upstreams)


def service_for(path: str, upstream: str, service_map: ServiceMap) -> str:
    """The service of a request: first path rule, else first upstream rule, else the upstream."""
    for prefix, service in service_map[0]:
        if path.startswith(prefix):
            return service
    if upstream:
        for prefix, service in service_map[1]:
            if upstream.startswith(prefix):
                return service
    return upstream


def _decode_run(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("\\x", "")).decode("utf-8", "backslashreplace")


def unescape(value: str) -> str:
    """Undo nginx's ``\\xHH`` escaping; runs of bytes are decoded as UTF-8 (else kept as ``\\xhh``)."""
    if "\\x" not in value:
        return value
    return _ESCAPES.sub(_decode_run, value)


def escape(value: str) -> str:
    """nginx's escaping of a logged variable (UTF-8 bytes; ``"``, ``\\``, controls, non-ASCII)."""
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        if byte < 0x20 or byte > 0x7E or byte in (0x22, 0x5C):
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def split_request(request: str) -> tuple[str, str, str]:
    """``$request`` (still escaped) -> (method, unescaped path, protocol); empty when not HTTP."""
    parts = request.split(" ")
    n = len(parts)
    if n == 3:
        method, path, protocol = parts
        if protocol.startswith("HTTP/") and _METHOD.fullmatch(method):
            return method, unescape(path), protocol
    elif n == 2:
        method, path = parts
        if path.startswith("/") and _METHOD.fullmatch(method):
            return method, unescape(path), ""  # HTTP/0.9
    elif n > 3:
        method, protocol = parts[0], parts[-1]
        if protocol.startswith("HTTP/") and _METHOD.fullmatch(method):
            return method, unescape(" ".join(parts[1:-1])), protocol
    return "", "", ""


@functools.lru_cache(maxsize=1024)
def _day_number(date: str) -> int | None:
    """``22/Nov/2026`` -> days since 1970-01-01 (None if no such day)."""
    month = _MONTHS.get(date[3:6])
    if month is None:
        return None
    try:
        return dt.date(int(date[7:11]), month, int(date[0:2])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _utc_time(text: str) -> dt.datetime | None:
    """``$time_local`` (already shaped by the regex) -> UTC; cached: a log's lines share seconds."""
    day = _day_number(text[:11])
    hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
    off_minutes = int(text[24:26])
    if day is None or hour > 23 or minute > 59 or second > 59 or off_minutes > 59:
        return None
    offset = (int(text[22:24]) * 3600 + off_minutes * 60) * (1 if text[21] == "-" else -1)
    try:
        return _from_timestamp(day * 86400 + hour * 3600 + minute * 60 + second + offset, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_time_local(text: str) -> dt.datetime | None:
    """``22/Nov/2026:06:02:31 +0100`` -> ``2026-11-22 05:02:31+00:00``; None if invalid."""
    if _TIME_ONLY.fullmatch(text) is None:
        return None
    return _utc_time(text)


#: The fields the parser fills; any other AccessRecord field gets its default (see below).
PARSED_FIELDS = ("event_time", "client", "method", "path", "protocol", "status", "bytes",
                 "referer", "user_agent", "host", "upstream", "request_time", "upstream_time",
                 "service")


def _extra_defaults() -> dict[str, Any]:
    """Defaults of AccessRecord fields the parser does not fill (optional fields added later).

    Records are built as ``object.__new__`` plus a ``__dict__`` update, skipping the frozen
    dataclass's per-field ``object.__setattr__`` (measured: 2.8 us per record with
    ``AccessRecord(...)``, 1.3 us this way). ``tests/input/test_accesslog.py`` checks the
    result equals what the normal constructor builds.
    """
    fields = {f.name: f for f in dataclasses.fields(AccessRecord)}
    lost = set(PARSED_FIELDS) - set(fields)
    if lost:  # pragma: no cover - common/records.py changed incompatibly
        raise RuntimeError(f"AccessRecord lost fields {sorted(lost)}")
    extra = {name: f for name, f in fields.items() if name not in PARSED_FIELDS}
    if any(f.default is dataclasses.MISSING for f in extra.values()):  # pragma: no cover
        raise RuntimeError("AccessRecord has a new field without a plain default")
    return {name: f.default for name, f in extra.items()}


_EXTRA_DEFAULTS = _extra_defaults()
_new = object.__new__


class AccessLogParser:
    """Parses lines of one format with one service map. Thread-safe; reuse one per log.

    Args:
        log_format: ``combined`` or ``upstream`` (see :data:`FORMATS`).
        service_map: from :func:`parse_service_map`, or its ``prefix=service`` strings.

    Raises:
        ValueError: unknown format or bad service map (configuration, not input).
    """

    def __init__(self, log_format: str = "combined",
                 service_map: ServiceMap | str | Iterable[str] = ()) -> None:
        if log_format not in _PATTERNS:
            raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
        self.log_format = log_format
        self._match = _PATTERNS[log_format].fullmatch
        self._upstream = log_format == "upstream"
        if isinstance(service_map, tuple) and len(service_map) == 2 and all(
                isinstance(part, tuple) and all(isinstance(p, tuple) for p in part)
                for part in service_map):
            self.service_map: ServiceMap = service_map  # type: ignore[assignment]
        else:
            self.service_map = parse_service_map(service_map)  # type: ignore[arg-type]
        self._path_rules = self.service_map[0]

    def parse(self, line: str) -> AccessRecord | Malformed:
        """One line (with or without its newline) -> a record, or Malformed with the reason."""
        # One function, locals only: this runs a million times a second's worth of log.
        try:
            if len(line) > MAX_LINE:
                return Malformed(f"line longer than {MAX_LINE} characters")
            m = self._match(line)
            if m is None:
                return Malformed(self._diagnose(line))
            if self._upstream:
                (client, _user, time_local, method, path, protocol, request, status, size,
                 referer, agent, host, upstream, request_time, upstream_time) = m.groups()
            else:
                (client, _user, time_local, method, path, protocol, request, status, size,
                 referer, agent) = m.groups()
                host = upstream = request_time = upstream_time = "-"
            event_time = _utc_time(time_local)
            if event_time is None:
                return Malformed(f"$time_local {time_local!r} is not a valid date and time")
            if request is not None:
                method, path, protocol = split_request(request)
            elif "\\x" in path:
                path = unescape(path)
            if upstream == "-":
                upstream = ""
            elif " " in upstream:
                upstream = _TRIES.split(upstream)[-1]
                if upstream == "-":
                    upstream = ""
            if " " in upstream_time:
                upstream_time = upstream_time.rpartition(" ")[2]
            for prefix, service in self._path_rules:  # noqa: B007 - used after break
                if path.startswith(prefix):
                    break
            else:
                service = service_for("", upstream, self.service_map)
            record = _new(AccessRecord)
            record.__dict__.update(
                event_time=event_time, client=client, method=method, path=path,
                protocol=protocol, status=int(status), bytes=int(size),
                referer="" if referer == "-" else unescape(referer) if "\\x" in referer else referer,
                user_agent="" if agent == "-" else unescape(agent) if "\\x" in agent else agent,
                host="" if host == "-" else unescape(host) if "\\x" in host else host,
                upstream=upstream,
                request_time=None if request_time == "-" else float(request_time),
                upstream_time=None if upstream_time == "-" else float(upstream_time),
                service=service)
            if _EXTRA_DEFAULTS:
                record.__dict__.update(_EXTRA_DEFAULTS)
            return record
        except Exception as e:  # noqa: BLE001 - the contract is "never raises"; say what broke
            return Malformed(f"parser error {type(e).__name__}: {e}")

    def _diagnose(self, line: str) -> str:
        """Why a line did not match (runs only for rejected lines)."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return "empty line"
        for other, pattern in _PATTERNS.items():
            if other != self.log_format and pattern.fullmatch(line):
                return (f"a line of the {other} format, not {self.log_format} "
                        f"(set NGINX_LOG_FORMAT or --log-format)")
        head = _HEAD_ONLY.match(text)
        if head is None:
            return f"does not start with '$remote_addr - $remote_user [$time_local] ' ({self.log_format})"
        if parse_time_local(head.group(3)) is None:
            return f"$time_local {head.group(3)[:40]!r} is not like 22/Nov/2026:06:02:31 +0100"
        return f"fields after $time_local do not match the {self.log_format} format"


@functools.lru_cache(maxsize=32)
def _parser(log_format: str, service_map: tuple[str, ...]) -> AccessLogParser:
    return AccessLogParser(log_format, service_map)


def parse_access_line(line: str, log_format: str = "combined",
                      service_map: str | Iterable[str] = ()) -> AccessRecord | Malformed:
    """Parse one line; never raises for any ``line`` (see the module docstring for the rules).

    ``service_map`` is ``"prefix=service,..."`` or its parts (``settings.nginx_service_map``).
    A per-(format, map) parser is built once and cached.

    Raises:
        ValueError: an unknown ``log_format`` or a malformed ``service_map`` (configuration).
    """
    key = (service_map,) if isinstance(service_map, str) else tuple(service_map)
    return _parser(log_format, key).parse(line)


def format_access_line(record: AccessRecord, log_format: str = "combined", *,
                       remote_user: str = "-", request: str | None = None,
                       offset_minutes: int = 0) -> str:
    """The line nginx would write for ``record`` (no newline): the inverse of the parser.

    Used by tests (round trips) and to show what a format looks like. ``request``
    overrides the request line (already escaped), e.g. for non-HTTP requests;
    ``offset_minutes`` is the server's UTC offset for ``$time_local``.
    """
    local = record.event_time.astimezone(dt.timezone(dt.timedelta(minutes=offset_minutes)))
    sign = "-" if offset_minutes < 0 else "+"
    off = abs(offset_minutes)
    time_local = (f"{local.day:02d}/{_MONTH_NAMES[local.month]}/{local.year:04d}:"
                  f"{local.hour:02d}:{local.minute:02d}:{local.second:02d} "
                  f"{sign}{off // 60:02d}{off % 60:02d}")

    def field(value: str) -> str:
        return escape(value) if value else "-"

    if request is None:
        parts = [record.method, escape(record.path)] + ([record.protocol] if record.protocol else [])
        request = " ".join(parts) if record.method else "-"
    line = (f'{record.client or "-"} - {remote_user} [{time_local}] "{request}" {record.status} '
            f'{record.bytes} "{field(record.referer)}" "{field(record.user_agent)}"')
    if log_format == "upstream":
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        line += (f' "{field(record.host)}" "{record.upstream or "-"}" '
                 f"{seconds(record.request_time)} {seconds(record.upstream_time)}")
    return line

