"""NGINX access-log lines -> :class:`~common.records.AccessRecord`: a pure, fast parser.

Any nginx ``log_format`` is accepted: a preset name or the site's own definition
(:mod:`common.nginx_format` reads it, from a string or from the site's
nginx.conf). The presets, written as they would be in nginx.conf
(``input/data/nginx/nginx.conf`` has ``upstream``)::

    log_format combined '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent"';
    log_format upstream '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" '
                        '"$host" "$upstream_addr" $request_time $upstream_response_time';
    log_format common '$remote_addr - $remote_user [$time_local] '
                      '"$request" $status $body_bytes_sent';

(``combined`` is nginx's built-in format; nginx refuses to redefine it.)

Usage::

    parser = AccessLogParser("upstream", parse_service_map("/api/=api,/=web"))
    parser = AccessLogParser("escape=json '{\"t\":\"$time_iso8601\",\"s\":$status}'")
    result = parser.parse(line)        # AccessRecord, or Malformed(reason)
    parse_access_line(line, "combined", ["/api/=api", "/=web"])   # the same, cached parsers

A format is compiled once (:class:`AccessLogParser`): one regex with a group
per variable, and a parse function generated for the format. Each variable the
record knows goes to its field (:data:`SOURCES`: ``$time_local``,
``$time_iso8601`` or ``$msec``; ``$request`` or ``$request_method`` /
``$request_uri`` / ``$uri`` + ``$args`` / ``$server_protocol``; ``$status``;
``$body_bytes_sent`` or ``$bytes_sent``; ``$host``, ``$http_host`` or
``$server_name``; the upstream variables ...); every other variable is kept as
text in ``extras``. A format without a time or ``$status`` is refused
(:class:`~common.nginx_format.LogFormatError`): the traffic graph needs both.

:func:`parse_access_line` never raises on any line; only lines that do not match
the format give :class:`Malformed` with the reason. Field rules:

* Escapes: by default nginx writes ``"``, ``\\`` and every byte below 0x20 or
  above 0x7E of a variable as ``\\xHH``; every text field is unescaped, the
  bytes decoded as UTF-8, and bytes that are not UTF-8 stay visible as
  ``\\xhh``. ``escape=json`` (``\\"``, ``\\\\``, ``\\n``, ``\\u00XX``) and
  ``escape=none`` (nothing escaped) are honoured; both write nothing for a
  variable not found, where the default writes ``-``. Raw
  quotes are accepted in a quoted user agent (matched greedily), which is
  where other servers put them. With ``escape=none``, or a variable outside
  quotes, a value is taken up to the first place the format's next literal
  text follows (a value holding that text is a dead letter, never misread).
* ``-`` (nginx's "empty") becomes ``""`` for text and ``None`` for numbers
  (``extras`` keep the text as written). ``$remote_user`` may hold spaces.
* A line is one line: a newline inside it (nginx writes ``\x0A``) does not
  match; a trailing ``\n`` or ``\r\n`` is ignored. Lines over 64 KiB are rejected.
* ``$request`` is split into method, path (unescaped, query string kept) and
  protocol. A request nginx answered that is not HTTP (``"GARBAGE"``, TLS
  handshake bytes, ``"-"`` for nothing received; nginx answers 400) is still a
  record, with method, path and protocol empty. HTTP/0.9 (``GET /``) has an
  empty protocol.
* ``$time_local`` (``22/Nov/2026:06:02:31 +0100``), ``$time_iso8601`` and
  ``$msec`` (to the millisecond; preferred when a format has several) become a
  UTC datetime.
* Several upstream tries (``10.0.0.1:80, 10.0.0.2:80`` with times
  ``0.003, 0.002``; ``" : "`` after an internal redirect) keep the **last**
  address, status and times: the try whose response nginx sent, so they
  describe the same upstream. The time spent on failed tries is in
  ``request_time``.
* ``service``: the first ``prefix=service`` pair of the service map whose
  prefix starts the path (pairs whose prefix starts with ``/``, in order),
  else the first pair whose prefix starts the upstream address (pairs whose
  prefix does not start with ``/``, e.g. ``127.0.0.1:9001=auth``), else the
  upstream address itself, else ``""`` (non-HTTP requests nginx answered
  itself). With the default map, ``/=web`` catches every HTTP path.

Speed: one compiled regex and one generated function per format, cached time
conversion (a log's lines share their second), records built by msgspec's constructor.
``bench/nginx_parse.py`` measures it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from common.nginx_format import PRESETS, TIME_VARIABLES, LogFormat, check_usable, resolve
from common.records import AccessRecord, fields_of

__all__ = [
    "FORMATS",
    "PARSED_FIELDS",
    "AccessLogParser",
    "Malformed",
    "ServiceMap",
    "escape",
    "format_access_line",
    "json_unescape",
    "parse_access_line",
    "parse_service_map",
    "parse_time_local",
    "render_line",
    "service_for",
    "split_request",
    "unescape",
]

#: The preset formats by name (see :mod:`common.nginx_format`).
FORMATS = PRESETS

UTC = dt.UTC
MAX_LINE = 65_536  # characters; longer lines are rejected (nginx's headers are 8 KiB, x4 escaped)

_TIME = r"(\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})"
_TIME_ONLY = re.compile(_TIME[1:-1], re.ASCII)
_ESCAPES = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+")
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


def split_request(request: str, decode: Callable[[str], str] = unescape) -> tuple[str, str, str]:
    """``$request`` (still escaped) -> (method, path, protocol); empty when not HTTP.

    ``decode`` undoes the escaping of the path (nginx's ``\\xHH`` by default).
    """
    parts = request.split(" ")
    n = len(parts)
    if n == 3:
        method, path, protocol = parts
        if protocol.startswith("HTTP/") and _METHOD.fullmatch(method):
            return method, decode(path), protocol
    elif n == 2:
        method, path = parts
        if path.startswith("/") and _METHOD.fullmatch(method):
            return method, decode(path), ""  # HTTP/0.9
    elif n > 3:
        method, protocol = parts[0], parts[-1]
        if protocol.startswith("HTTP/") and _METHOD.fullmatch(method):
            return method, decode(" ".join(parts[1:-1])), protocol
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


#: Every AccessRecord field: the parser fills them all.
PARSED_FIELDS = tuple(fields_of(AccessRecord))


# -- compiling a format

#: Where each AccessRecord field comes from: the first of these variables the format has.
SOURCES: dict[str, tuple[str, ...]] = {
    "event_time": TIME_VARIABLES,
    "client": ("remote_addr",),
    "remote_user": ("remote_user",),
    "request": ("request",),  # method, path and protocol at once
    "method": ("request_method",),
    "path": ("request_uri", "uri"),
    "protocol": ("server_protocol",),
    "status": ("status",),
    "bytes": ("body_bytes_sent", "bytes_sent"),
    "referer": ("http_referer",),
    "user_agent": ("http_user_agent",),
    "host": ("host", "http_host", "server_name"),
    "upstream": ("upstream_addr",),
    "upstream_status": ("upstream_status",),
    "request_time": ("request_time",),
    "upstream_time": ("upstream_response_time",),
    "upstream_connect_time": ("upstream_connect_time",),
    "request_length": ("request_length",),
    "forwarded_for": ("http_x_forwarded_for",),
}
#: The variables the kit's record can take (any other one goes to ``extras``).
KNOWN_VARIABLES = frozenset(v for names in SOURCES.values() for v in names) | {"args"}

_NUMBER = r"\d{1,9}(?:\.\d{1,9})?"
_SEP = r"(?:, | : )"
#: Shapes of typed variables as nginx writes them ('-': not found, default escaping).
_TYPED: dict[str, str] = {
    "time_local": r"\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}",
    "time_iso8601": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[+-]\d\d:\d\d|Z)",
    "msec": r"\d{1,12}\.\d{3}",
    "status": r"\d{3}",
    "body_bytes_sent": r"\d{1,18}|-",
    "bytes_sent": r"\d{1,18}|-",
    "request_length": r"\d{1,18}|-",
    "request_time": _NUMBER + "|-",
    # Lists of tries, not possessive: what follows may look like the list goes on ("-, 01/Jan"
    # after "$upstream_response_time, "; "[::1]:80]"). Tries are separated by a space, which
    # no try holds, so giving back stays linear.
    "upstream_response_time": f"(?:{_NUMBER}|-)(?:{_SEP}(?:{_NUMBER}|-))*",
    "upstream_connect_time": f"(?:{_NUMBER}|-)(?:{_SEP}(?:{_NUMBER}|-))*",
    "upstream_status": rf"(?:\d{{3}}|-)(?:{_SEP}(?:\d{{3}}|-))*",
    "upstream_addr": rf'[^\s,"]+(?:{_SEP}[^\s,"]+)*',
}
#: Variables that never hold a space or a quote (the token ends at the literal after them).
_TOKENS = frozenset({"remote_addr", "server_addr", "server_port", "remote_port", "pid",
                     "connection", "connection_requests", "request_id", "scheme", "https"})
#: What a text variable's characters may be, by escaping (json: '\"' and '\\' are escapes).
_TEXT_CHAR = {"default": r'[^"\n]', "json": r'(?:[^"\\\n]|\\.)', "none": r"[^\n]"}
#: ``$request`` in quotes, default escaping: "METHOD PATH HTTP/x" in three groups, else whole.
_REQUEST_SPLIT = r'(?:([A-Z_-]++) ([^" \n]++) (HTTP/[^" \n]++)|([^"\n]*+))'
_TIME_EXAMPLES = {"time_local": "22/Nov/2026:06:02:31 +0100",
                  "time_iso8601": "2026-11-22T06:02:31+01:00", "msec": "1795323751.123"}
_JSON_ESCAPES = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_JSON_CHARS = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
               "t": "\t"}


def _json_char(match: re.Match[str]) -> str:
    code = match.group(1)
    return _JSON_CHARS[code] if len(code) == 1 else chr(int(code[1:], 16))


def json_unescape(value: str) -> str:
    """Undo nginx's ``escape=json`` (``\\"``, ``\\\\``, ``\\n``, ``\\u00XX`` ...); others kept."""
    if "\\" not in value:
        return value
    return _JSON_ESCAPES.sub(_json_char, value)


@functools.lru_cache(maxsize=4096)
def _iso_time(text: str) -> dt.datetime | None:
    """``$time_iso8601`` -> UTC (None if no such time); cached like ``$time_local``."""
    try:
        return dt.datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _msec_time(text: str) -> dt.datetime | None:
    """``$msec`` (seconds.milliseconds since the epoch) -> UTC, to the millisecond."""
    seconds, _, millis = text.partition(".")
    try:
        return _from_timestamp(int(seconds), UTC).replace(microsecond=int(millis) * 1000)
    except (ValueError, OverflowError, OSError):
        return None


def _last(values: str) -> str:
    """The last of nginx's tries (``a, b : c`` -> ``c``): the one whose answer was sent."""
    return values.rpartition(" ")[2] if " " in values else values


def _split_plain(request: str) -> tuple[str, str, str]:
    return split_request(request, decode=str)


@dataclasses.dataclass(frozen=True)
class _Slot:
    """One variable of the format and how many regex groups it has."""

    name: str
    groups: int  # 4 for a split $request, else 1


def _variable_pattern(name: str, escape_mode: str, before: str, after: str, greedy: bool
                      ) -> tuple[str, int, bool]:
    """(regex, groups, literal after consumed) of one variable in its context."""
    quoted = before.endswith('"') and after.startswith('"')
    if name == "request" and quoted and escape_mode == "default":
        return _REQUEST_SPLIT, 4, False
    if name == "request" and quoted and escape_mode == "none":
        # Unescaped quotes may be in the path: an HTTP request line ends at " HTTP/x.y"; any
        # other request (garbage, TLS bytes) at the first place the next literal follows.
        lit = re.escape(after)
        return rf"(?>((?:[^\n]*? HTTP/\d\.\d(?={lit})|[^\n]*?(?={lit}))){lit})", 1, True
    typed = _TYPED.get(name)
    if typed is not None and name != "status":
        # escape=json and escape=none write nothing for a variable not found; default: '-'.
        return (f"({typed})" if escape_mode == "default" else f"((?:{typed})?)"), 1, False
    if typed is not None:  # $status: always written, in every escaping
        return f"({typed})", 1, False
    if name in _TOKENS:
        if not after or after[0] in " \"":
            return r'([^\s"]*+)', 1, False
        return rf'(?>([^\s"]*?){re.escape(after)})', 1, True  # up to the literal, as text
    char = _TEXT_CHAR[escape_mode]
    if quoted and escape_mode == "json":
        return f"({char}*+)", 1, False  # exact: a quote inside is always escaped
    if quoted and greedy:
        return r"([^\n]*)", 1, False
    if quoted and escape_mode == "default":
        return rf"({char}*+)", 1, False
    if not after:
        return f"({char}*?)", 1, False
    # Unquoted text: up to the first place the next literal follows, never reconsidered (an
    # atomic group keeps hostile lines linear; a value holding that literal is a dead letter).
    return f"(?>({char}*?){re.escape(after)})", 1, True


def _text(v: str, escape_mode: str, dash_is_empty: bool = True) -> str:
    """Source of the expression turning raw text ``v`` into the value."""
    dash = f'"" if {v} == "-" else ' if dash_is_empty else ""
    if escape_mode == "default":
        return f'({dash}unescape({v}) if "\\\\x" in {v} else {v})'
    if escape_mode == "json":
        return f'({dash}json_unescape({v}) if "\\\\" in {v} else {v})'
    return f"({dash}{v})" if dash else v


class AccessLogParser:
    """Parses lines of one log format with one service map. Thread-safe; reuse one per log.

    The format is compiled once: one regex with a group per variable, and a parse
    function generated for it (its source is :attr:`source`), so a custom format
    costs no more per line than a hand-written parser.

    Args:
        log_format: a preset name, an nginx ``log_format`` definition (see
            :mod:`common.nginx_format`), or a :class:`~common.nginx_format.LogFormat`.
        service_map: from :func:`parse_service_map`, or its ``prefix=service`` strings.

    Raises:
        LogFormatError (a ValueError): not a format, or one without a time or ``$status``.
        ValueError: a bad service map.
    """

    def __init__(self, log_format: str | LogFormat = "combined",
                 service_map: ServiceMap | str | Iterable[str] = ()) -> None:
        fmt = log_format if isinstance(log_format, LogFormat) else resolve(log_format)
        self.format = fmt
        self.log_format = fmt.name
        if isinstance(service_map, tuple) and len(service_map) == 2 and all(
                isinstance(part, tuple) and all(isinstance(p, tuple) for p in part)
                for part in service_map):
            self.service_map: ServiceMap = service_map  # type: ignore[assignment]
        else:
            self.service_map = parse_service_map(service_map)  # type: ignore[arg-type]
        self._compile()

    # The regex and, for diagnosis, the pattern up to the end of each variable.
    def _compile(self) -> None:
        fmt = check_usable(self.format)
        literals, names = fmt.literals, fmt.variables  # names[k] sits between literals k, k+1

        def quoted(k: int) -> bool:
            return literals[k].endswith('"') and literals[k + 1].startswith('"')

        # Raw quotes are accepted in a quoted user agent (other servers write them unescaped).
        greedy = next((k for k, name in enumerate(names)
                       if name == "http_user_agent" and quoted(k)), -1)
        if fmt.escape == "json":
            greedy = -1
        pieces = [re.escape(literals[0])]
        slots: list[_Slot] = []
        prefixes: list[str] = []
        for k, name in enumerate(names):
            pattern, groups, consumed = _variable_pattern(
                name, fmt.escape, literals[k], literals[k + 1], k == greedy)
            pieces.append(pattern if consumed else pattern + re.escape(literals[k + 1]))
            slots.append(_Slot(name, groups))
            prefixes.append("".join(pieces))
        self.pattern = re.compile("".join(pieces) + r"\r?\n?", re.ASCII)
        self._prefixes = prefixes
        self._slots = slots
        self._match = self.pattern.fullmatch
        self.source = self._generate(slots)
        namespace: dict[str, Any] = {
            "match": self._match, "Malformed": Malformed,
            "AccessRecord": AccessRecord, "unescape": unescape, "json_unescape": json_unescape,
            "split_request": split_request, "split_plain": _split_plain, "last": _last,
            "time_local": _utc_time, "time_iso8601": _iso_time, "msec": _msec_time,
            "path_rules": self.service_map[0], "service_for": service_for,
            "service_map": self.service_map, "diagnose": self._diagnose}
        exec(compile(self.source, f"<log format {fmt.name}>", "exec"), namespace)
        self._parse = namespace["parse"]

    def _generate(self, slots: list[_Slot]) -> str:
        """The source of ``parse(line)`` for this format: straight-line code, locals only."""
        escape_mode = self.format.escape
        first: dict[str, str] = {}  # variable -> its local name (first occurrence)
        unpack = []
        for n, slot in enumerate(slots):
            if slot.groups == 4:
                unpack += ["r_method", "r_path", "r_protocol", f"v{n}"]
            else:
                unpack.append(f"v{n}")
            first.setdefault(slot.name, f"v{n}")
        source_of = {field: next((first[v] for v in names if v in first), None)
                     for field, names in SOURCES.items()}
        # $uri + $args make the path when there is neither $request nor $request_uri
        args = first.get("args") if source_of["request"] is None \
            and source_of["path"] is not None and source_of["path"] == first.get("uri") else None

        def text(field: str) -> str:
            v = source_of[field]
            return _text(v, escape_mode) if v else "''"

        lines = ["def parse(line):",
                 "    m = match(line)",
                 "    if m is None:",
                 "        return Malformed(diagnose(line))",
                 f"    ({', '.join(unpack)},) = m.groups()"]
        add = lines.append
        # time: the most precise the format has
        time_var = next(v for v in SOURCES["event_time"] if v in first)
        t = first[time_var]
        add(f"    event_time = {time_var}({t}) if {t} else None" if escape_mode != "default"
            else f"    event_time = {time_var}({t})")
        add("    if event_time is None:")
        add(f"        return Malformed('${time_var} %r is not a valid date and time' % {t})")
        # method, path, protocol
        request = source_of["request"]
        if request is not None and any(s.groups == 4 for s in slots):
            add(f"    if {request} is not None:")
            add(f"        method, path, protocol = split_request({request})")
            add("    else:")
            add("        method, protocol = r_method, r_protocol")
            add('        path = unescape(r_path) if "\\\\x" in r_path else r_path')
        elif request is not None:
            split = "split_request" if escape_mode == "default" else "split_plain"
            raw = request if escape_mode != "json" else f"json_unescape({request})"
            add(f"    method, path, protocol = {split}({raw})")
        else:
            for field in ("method", "path", "protocol"):
                add(f"    {field} = {text(field)}")
            if args is not None:
                add(f'    if {args} and {args} != "-":')
                add(f"        path = path + '?' + {_text(args, escape_mode)}")
        # service
        upstream = source_of["upstream"]
        if upstream is not None:
            add(f'    upstream = "" if {upstream} in ("-", "") else {upstream}')
            add('    if " " in upstream:')
            add('        upstream = last(upstream)')
            add('        if upstream == "-":')
            add('            upstream = ""')
        else:
            add('    upstream = ""')
        add("    for prefix, service in path_rules:")
        add("        if path.startswith(prefix):")
        add("            break")
        add("    else:")
        add('        service = service_for("", upstream, service_map)')

        for field in ("upstream_status", "upstream_time", "upstream_connect_time"):
            v = source_of[field]
            if v is not None:  # several tries: the last one's
                add(f'    if " " in {v}:')
                add(f"        {v} = last({v})")

        def number(field: str, kind: str, default: str) -> str:
            v = source_of[field]
            if v is None:
                return default
            return f'None if {v} in ("-", "") else {kind}({v})'

        values = {
            "event_time": "event_time",
            "client": text("client"),
            "remote_user": text("remote_user"),
            "method": "method", "path": "path", "protocol": "protocol",
            "status": f"int({source_of['status']})",
            "bytes": (f'0 if {source_of["bytes"]} in ("-", "") else int({source_of["bytes"]})'
                      if source_of["bytes"] else "0"),
            "referer": text("referer"),
            "user_agent": text("user_agent"),
            "host": text("host"),
            "upstream": "upstream",
            "request_time": number("request_time", "float", "None"),
            "upstream_time": number("upstream_time", "float", "None"),
            "service": "service",
            "upstream_status": number("upstream_status", "int", "None"),
            "upstream_connect_time": number("upstream_connect_time", "float", "None"),
            "request_length": number("request_length", "int", "None"),
            "forwarded_for": text("forwarded_for"),
        }
        taken = {v for v in (*source_of.values(), args) if v is not None}
        extras = [(slot.name, f"v{n}") for n, slot in enumerate(slots)
                  if first[slot.name] == f"v{n}" and f"v{n}" not in taken]
        values["extras"] = "{" + ", ".join(
            f"{name!r}: {_text(v, escape_mode, dash_is_empty=False)}" for name, v in extras) + "}"
        missing = set(PARSED_FIELDS) - set(values)
        if missing:  # pragma: no cover - common/records.py gained a field the parser ignores
            raise RuntimeError(f"AccessRecord fields {sorted(missing)} are not filled")
        add("    return AccessRecord(")
        add(",\n".join(f"        {field}={values[field]}" for field in PARSED_FIELDS) + ")")
        return "\n".join(lines) + "\n"

    def parse(self, line: str) -> AccessRecord | Malformed:
        """One line (with or without its newline) -> a record, or Malformed with the reason."""
        try:
            if len(line) > MAX_LINE:
                return Malformed(f"line longer than {MAX_LINE} characters")
            return self._parse(line)
        except Exception as e:  # noqa: BLE001 - the contract is "never raises"; say what broke
            return Malformed(f"parser error {type(e).__name__}: {e}")

    def _diagnose(self, line: str) -> str:
        """Why a line did not match (runs only for rejected lines)."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return "empty line"
        name = self.format.name
        for other in PRESETS:
            if other != name and _preset(other).pattern.fullmatch(line):
                return (f"a line of the {other} format, not {name} "
                        f"(set NGINX_LOG_FORMAT or --log-format)")
        time_index = next(i for i, s in enumerate(self._slots) if s.name in _TIME_EXAMPLES)
        position, index = 0, len(self._prefixes)
        for k, prefix in enumerate(self._prefixes):
            m = re.match(prefix, text, re.ASCII)
            if m is None:
                index = k
                break
            position = m.end()
        if index == len(self._prefixes):
            return f"extra text at column {position + 1} after the {name} format's last field"
        slot = self._slots[index]
        snippet = text[position:position + 40]
        if slot.name in _TIME_EXAMPLES:
            return f"${slot.name} {snippet!r} is not like {_TIME_EXAMPLES[slot.name]}"
        if index < time_index:
            head = "".join(str(p) for p in self.format.parts[:2 * time_index + 3])  # to the time
            return f"does not start with {head!r} ({name})"
        return (f"fields after ${self._slots[time_index].name} do not match the {name} format: "
                f"${slot.name} expected at column {position + 1} ({snippet!r})")


@functools.lru_cache(maxsize=8)
def _preset(name: str) -> AccessLogParser:
    return AccessLogParser(name)


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


def _escape_json(value: str) -> str:
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20:
            short = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f"}.get(ch)
            out.append("\\" + short if short else f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def render_line(log_format: str | LogFormat, values: dict[str, str | None]) -> str:
    """The line nginx writes for ``values`` (variable -> its text; None or absent: not found).

    Escaping as nginx does it for the format's ``escape=`` (see the module
    docstring); a variable not found is ``-`` by default and nothing with
    ``escape=json`` or ``escape=none``. The inverse of the parser, for tests and docs.
    """
    fmt = log_format if isinstance(log_format, LogFormat) else resolve(log_format)
    out = []
    for part in fmt.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = values.get(part.name)
        if value is None:
            out.append("-" if fmt.escape == "default" else "")
        elif fmt.escape == "default":
            out.append(escape(value))
        elif fmt.escape == "json":
            out.append(_escape_json(value))
        else:
            out.append(value)
    return "".join(out)


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

