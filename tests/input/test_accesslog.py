"""The NGINX access-log parser (common/accesslog.py): real recorded lines, edge cases, properties."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common import accesslog
from common.accesslog import (
    FORMATS,
    AccessLogParser,
    Malformed,
    escape,
    format_access_line,
    parse_access_line,
    parse_service_map,
    parse_time_local,
    service_for,
    split_request,
    unescape,
)
from common.records import AccessRecord

DATA = Path(__file__).resolve().parents[2] / "input" / "data" / "nginx"
SERVICES = "/api/=api,/static/=static,/auth/=auth,/=web"
UTC = dt.UTC


def recorded(name: str) -> list[str]:
    with (DATA / name).open(encoding="utf-8", errors="backslashreplace", newline="") as f:
        return f.readlines()


UPSTREAM = recorded("access-upstream.txt")
COMBINED = recorded("access-combined.txt")


def parse_up(line: str) -> AccessRecord:
    result = parse_access_line(line, "upstream", SERVICES)
    assert isinstance(result, AccessRecord), result
    return result


def at(h: int, m: int, s: int) -> dt.datetime:
    return dt.datetime(2026, 11, 22, h, m, s, tzinfo=UTC)


# -- real lines, recorded from nginx 1.22.1 (input/data/nginx/README.md)


def test_every_recorded_line_parses_in_both_formats_and_they_agree() -> None:
    assert len(UPSTREAM) == len(COMBINED) == 1120
    up = [parse_access_line(line, "upstream", SERVICES) for line in UPSTREAM]
    co = [parse_access_line(line, "combined", SERVICES) for line in COMBINED]
    assert [r for r in up + co if isinstance(r, Malformed)] == []
    for u, c in zip(up, co, strict=True):
        assert isinstance(u, AccessRecord) and isinstance(c, AccessRecord)
        same = ("event_time", "client", "method", "path", "protocol", "status", "bytes",
                "referer", "user_agent")
        assert {f: getattr(u, f) for f in same} == {f: getattr(c, f) for f in same}
        assert (c.host, c.upstream, c.request_time, c.upstream_time) == ("", "", None, None)
    statuses = sorted({r.status for r in up if isinstance(r, AccessRecord)})
    assert statuses == [200, 304, 400, 401, 404, 500, 502, 504]


def test_a_plain_recorded_line_field_by_field() -> None:
    record = parse_up(UPSTREAM[0])
    assert record == AccessRecord(
        event_time=at(6, 16, 29), client="127.0.0.1", method="GET", path="/index.html",
        protocol="HTTP/1.1", status=200, bytes=48, referer="http://shop.local/static/app.js",
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        host="shop.local", upstream="", request_time=0.0, upstream_time=None, service="web")
    combined = parse_access_line(COMBINED[0], "combined", SERVICES)
    assert combined == msgspec.structs.replace(record, host="", request_time=None)


def test_two_upstream_tries_keep_the_last_address_and_time() -> None:
    # "127.0.0.1:46631, 127.0.0.1:45263" 0.032 0.000, 0.032: the first port refused.
    record = parse_up(UPSTREAM[6])
    assert (record.method, record.path, record.status, record.service) == (
        "POST", "/api/orders", 200, "api")
    assert (record.upstream, record.request_time, record.upstream_time) == (
        "127.0.0.1:45263", 0.032, 0.032)
    assert record.referer == "https://search.example/?q=%22shop%22"  # %22 is not an nginx escape
    assert record.event_time == at(6, 16, 30)  # logged as 07:16:30 +0100


def test_upstream_group_name_when_no_server_is_live_and_a_tab_in_the_agent() -> None:
    record = parse_up(UPSTREAM[55])
    assert (record.status, record.upstream, record.upstream_time) == (502, "legacy", 0.0)
    assert record.user_agent == "python-requests/2.31.0\tcustom"  # logged as \x09
    assert record.service == "web"  # the path rule "/" wins over the upstream


def test_timeout_504_and_host_of_the_second_virtual_host() -> None:
    timeout = parse_up(UPSTREAM[26])
    assert (timeout.status, timeout.upstream, timeout.request_time, timeout.upstream_time) == (
        504, "127.0.0.1:34827", 0.999, 1.0)
    admin = parse_up(UPSTREAM[4])
    assert (admin.host, admin.path, admin.client, admin.service) == (
        "admin.local", "/api/items?page=4", "127.0.0.3", "api")


def test_escaped_quotes_backslash_and_utf8_in_user_agents() -> None:
    assert parse_up(UPSTREAM[853]).user_agent == 'a"b\\c'  # a\x22b\x5Cc
    assert parse_up(UPSTREAM[81]).user_agent == (
        'Mozilla/5.0 (compatible; "QuoteBot"/2.1; +http://bot.example/"about")')
    assert parse_up(UPSTREAM[19]).user_agent == "Mozilla/5.0 (Käfer; Linux) Fahrrad/1.0"
    assert parse_up(UPSTREAM[806]).host == "\\xff"  # a 0xFF byte is not UTF-8: kept visible


def test_requests_that_are_not_http_are_records_with_empty_method_and_path() -> None:
    garbage = parse_up(UPSTREAM[76])
    assert (garbage.method, garbage.path, garbage.protocol, garbage.status, garbage.bytes) == (
        "", "", "", 400, 157)
    assert garbage.service == ""  # nginx answered it itself: no path, no upstream
    tls = parse_up(UPSTREAM[98])
    assert UPSTREAM[98].split('"')[1].startswith("\\x16\\x03\\x01")  # a TLS ClientHello
    assert (tls.method, tls.path, tls.status, tls.client) == ("", "", 400, "127.0.0.4")
    empty = parse_up(UPSTREAM[192])  # "" (a bare CRLF), closed by the client after 5 s
    assert (empty.method, empty.status, empty.bytes, empty.request_time) == ("", 400, 0, 5.002)


def test_odd_but_http_request_lines() -> None:
    by_request = {line.split('"')[1]: line for line in UPSTREAM}
    cases = {
        "GET /": ("GET", "/", ""),  # HTTP/0.9
        "GET /about.html HTTP/1.0": ("GET", "/about.html", "HTTP/1.0"),
        "GET /unfinished": ("GET", "/unfinished", ""),
        "GET /a b HTTP/1.1": ("GET", "/a b", "HTTP/1.1"),
        "GET /\\x7F HTTP/1.1": ("GET", "/\x7f", "HTTP/1.1"),
        "get / HTTP/1.1": ("", "", ""),  # nginx rejects lowercase methods (400); so do we
        "GET /search?q=\\x22quoted\\x22&s=\\xC3\\xA9 HTTP/1.1":
            ("GET", '/search?q="quoted"&s=é', "HTTP/1.1"),
    }
    for request, expected in cases.items():
        record = parse_up(by_request[request])
        assert (record.method, record.path, record.protocol) == expected, request


# -- edge cases


LINE = ('10.1.2.3 - alice [22/Nov/2026:06:02:31 +0100] "GET /api/x?y=1 HTTP/2.0" 201 12 '
        '"https://ref.example/" "agent/1.0"')


def test_dashes_are_empty_and_times_without_upstream_are_none() -> None:
    line = '10.1.2.3 - - [22/Nov/2026:06:02:31 +0000] "GET / HTTP/1.1" 200 0 "-" "-" "-" "-" 0.000 -'
    record = parse_up(line)
    assert (record.referer, record.user_agent, record.host, record.upstream) == ("", "", "", "")
    assert (record.request_time, record.upstream_time) == (0.0, None)


def test_remote_user_may_hold_spaces() -> None:
    line = LINE.replace(" alice ", " alice smith ")
    record = parse_access_line(line, "combined", SERVICES)
    assert isinstance(record, AccessRecord) and record.client == "10.1.2.3"
    assert record.remote_user == "alice smith"


@pytest.mark.parametrize("agent", ['Mozilla "raw" quotes', '"', 'a" "b', '" "x" "y" 1 2'])
def test_raw_quotes_in_the_user_agent_are_kept(agent: str) -> None:
    combined = LINE.replace('"agent/1.0"', f'"{agent}"')
    record = parse_access_line(combined, "combined", SERVICES)
    assert isinstance(record, AccessRecord) and record.user_agent == agent
    upstream = combined + ' "h" "10.0.0.1:80" 0.010 0.009'
    record = parse_up(upstream)
    assert (record.user_agent, record.host, record.upstream, record.upstream_time) == (
        agent, "h", "10.0.0.1:80", 0.009)


@pytest.mark.parametrize(("addrs", "times", "upstream", "upstream_time"), [
    ("10.0.0.1:80, 10.0.0.2:80", "0.003, 0.002", "10.0.0.2:80", 0.002),
    ("10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80", "1.001, 0.000, 0.004", "10.0.0.3:80", 0.004),
    ("10.0.0.1:80 : 10.0.0.9:81", "0.003 : 0.001", "10.0.0.9:81", 0.001),  # internal redirect
    ("unix:/run/app.sock", "0.050", "unix:/run/app.sock", 0.05),
    ("10.0.0.1:80, backend", "0.001, -", "backend", None),
])
def test_upstream_tries(addrs: str, times: str, upstream: str, upstream_time: float | None) -> None:
    line = LINE + f' "h" "{addrs}" 1.5 {times}'
    record = parse_up(line)
    assert (record.upstream, record.upstream_time, record.request_time) == (
        upstream, upstream_time, 1.5)


@pytest.mark.parametrize(("local", "utc"), [
    ("22/Nov/2026:06:02:31 +0100", dt.datetime(2026, 11, 22, 5, 2, 31, tzinfo=UTC)),
    ("22/Nov/2026:06:02:31 -0500", dt.datetime(2026, 11, 22, 11, 2, 31, tzinfo=UTC)),
    ("01/Jan/2027:00:30:00 +0530", dt.datetime(2026, 12, 31, 19, 0, 0, tzinfo=UTC)),
    ("29/Feb/2028:23:59:59 -1200", dt.datetime(2028, 3, 1, 11, 59, 59, tzinfo=UTC)),
    ("31/Mar/2026:02:30:00 +0200", dt.datetime(2026, 3, 31, 0, 30, 0, tzinfo=UTC)),
])
def test_time_local_with_its_offset_becomes_utc(local: str, utc: dt.datetime) -> None:
    assert parse_time_local(local) == utc
    record = parse_access_line(LINE.replace("22/Nov/2026:06:02:31 +0100", local), "combined")
    assert isinstance(record, AccessRecord)
    assert record.event_time == utc and record.event_time.tzinfo is UTC


@pytest.mark.parametrize(("fmt", "line", "reason"), [
    ("combined", "", "empty line"),
    ("upstream", "\n", "empty line"),
    ("combined", "hello world", "does not start with"),
    ("combined", LINE.replace("22/Nov/", "31/Feb/"), "is not a valid date"),
    ("combined", LINE.replace("Nov", "Foo"), "is not a valid date"),
    ("combined", LINE.replace("06:02:31", "6:2:31"), "is not like 22/Nov/2026"),
    ("combined", LINE.replace(" 201 ", " 2O1 "), "fields after $time_local"),
    ("combined", LINE.replace(" 12 ", " -1 "), "fields after $time_local"),
    ("combined", LINE[:-12], "fields after $time_local"),  # cut in the user agent
    ("upstream", LINE + ' "h" "-" 0.1', "fields after $time_local"),
    ("upstream", LINE + ' "h" "-" 0.1 x', "fields after $time_local"),
    ("upstream", LINE, "a line of the combined format, not upstream"),
    ("combined", "x" * 70_000, "longer than"),
    ("combined", LINE + "\n" + LINE, "extra text at column 114"),  # two lines are not one
    ("combined", LINE.replace("agent/1.0", "agent\n1.0"), "fields after $time_local"),
    ("combined", LINE.replace("/api/x", "/api\n/x"), "fields after $time_local"),
])
def test_lines_that_do_not_match_are_malformed_with_a_reason(fmt: str, line: str, reason: str
                                                             ) -> None:
    result = parse_access_line(line, fmt, SERVICES)
    assert isinstance(result, Malformed)
    assert reason in result.reason


def test_an_upstream_line_read_as_combined_says_so() -> None:
    result = parse_access_line(UPSTREAM[0], "combined")
    assert isinstance(result, Malformed) and "upstream format, not combined" in result.reason


def test_line_endings_are_ignored() -> None:
    for ending in ("\n", "\r\n", ""):
        assert isinstance(parse_access_line(LINE + ending, "combined"), AccessRecord)


def test_hostile_lines_are_rejected_quickly() -> None:
    hostile = [
        "1 - " + " [" * 30_000,
        "1 - " + ' [22/Nov/2026:06:02:31 +0100] "' * 1_500,
        '1 - - [22/Nov/2026:06:02:31 +0100] "x" 200 1 "-" "' + '" "a" "b" 1 ' * 5_000,
        '1 - - [22/Nov/2026:06:02:31 +0100] "' + '\\x' * 30_000,
    ]
    parser = AccessLogParser("upstream")
    started = time.perf_counter()
    for line in hostile:
        assert isinstance(parser.parse(line), Malformed)
        assert isinstance(AccessLogParser("combined").parse(line), Malformed)
    assert time.perf_counter() - started < 2.0  # linear, not quadratic (about 0.02 s measured)


def test_unescape_decodes_runs_as_utf8() -> None:
    assert unescape("a\\x22b") == 'a"b'
    assert unescape("K\\xC3\\xA4fer") == "Käfer"
    assert unescape("\\xFF\\x41") == "\\xffA"  # not UTF-8: visible, lowercase
    assert unescape("\\x5Cx41") == "\\x41"  # an escaped backslash is not a new escape
    assert unescape("\\xZZ") == "\\xZZ"
    assert escape('a"b\\c\té') == "a\\x22b\\x5Cc\\x09\\xC3\\xA9"


def test_split_request() -> None:
    assert split_request("GET /x HTTP/1.1") == ("GET", "/x", "HTTP/1.1")
    assert split_request("M-SEARCH * HTTP/1.1") == ("M-SEARCH", "*", "HTTP/1.1")
    assert split_request("GET /") == ("GET", "/", "")
    assert split_request("GARBAGE") == ("", "", "")
    assert split_request("-") == ("", "", "")
    assert split_request("") == ("", "", "")
    assert split_request("HELLO WORLD") == ("", "", "")
    assert split_request("\\x16\\x03\\x01 \\x00 HTTP/1.1") == ("", "", "")


# -- services


def test_service_map_order_and_upstream_rules() -> None:
    rules = parse_service_map("/api/v2/=api2, /api/=api, 127.0.0.1:9001=auth, /=web")
    assert rules == ((("/api/v2/", "api2"), ("/api/", "api"), ("/", "web")),
                     (("127.0.0.1:9001", "auth"),))
    assert service_for("/api/v2/x", "", rules) == "api2"
    assert service_for("/api/x", "", rules) == "api"
    assert service_for("/x", "", rules) == "web"
    only_upstream = parse_service_map(["127.0.0.1:9001=auth"])
    assert service_for("/login", "127.0.0.1:9001", only_upstream) == "auth"
    assert service_for("/login", "10.0.0.7:80", only_upstream) == "10.0.0.7:80"  # the address
    assert service_for("", "", only_upstream) == ""
    assert service_for("/x", "", parse_service_map("")) == ""


@pytest.mark.parametrize("bad", ["api", "/api/=", "=api", "/api/=api,nonsense"])
def test_a_bad_service_map_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError, match="prefix=service"):
        parse_service_map(bad)


def test_unknown_format_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="combined, upstream"):
        AccessLogParser("json")


def test_the_fast_record_equals_the_dataclass_constructor() -> None:
    record = parse_up(UPSTREAM[6])
    rebuilt = AccessRecord(**{f.name: getattr(record, f.name)
                              for f in msgspec.structs.fields(AccessRecord)})
    assert record == rebuilt and repr(record) == repr(rebuilt)
    assert record.to_json() == rebuilt.to_json() and record.key() == "api"
    assert set(accesslog.PARSED_FIELDS) == {f.name for f in msgspec.structs.fields(AccessRecord)}
    with pytest.raises(AttributeError):
        record.status = 1  # type: ignore[misc]


def log_formats(text: str) -> dict[str, str]:
    """``log_format NAME 'piece' 'piece' ...;`` directives of an nginx.conf text, joined."""
    found = {}
    for match in re.finditer(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", text):
        found[match.group(1)] = "".join(re.findall(r"'([^']*)'", match.group(2)))
    return found


def test_the_documented_log_formats_are_the_ones_in_the_shipped_nginx_conf() -> None:
    conf = (DATA / "nginx.conf").read_text()
    assert log_formats(conf)["upstream"] == FORMATS["upstream"]
    assert "access_log" in conf and " upstream;" in conf and " combined;" in conf
    uncommented = "\n".join(line.lstrip(" #") for line in conf.splitlines())
    assert log_formats(uncommented)["combined"] == FORMATS["combined"]  # built in: a comment
    assert log_formats(accesslog.__doc__ or "") == FORMATS


# -- properties


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
@example("")
@example('1 - - [22/Nov/2026:06:02:31 +0100] "GET / HTTP/1.1" 200 0 "-" "-" "h" "-" 9999999999.9 -')
def test_never_raises_on_any_text(line: str) -> None:
    for fmt in ("combined", "upstream"):
        result = parse_access_line(line, fmt, SERVICES)
        assert isinstance(result, AccessRecord | Malformed)


PIECES = ['1.2.3.4', ' - ', '- ', '[22/Nov/2026:06:02:31 +0100]', '[31/Feb/2026:06:02:31 +0100]',
          ' ', '"', '"GET / HTTP/1.1"', '200', '0', '99999999999999999999', '"-"', '\\x',
          '\\xZZ', '\\xC3', '0.001', '0.001, 0.002', ' : ', '-', '\n', '\r', '\x00', 'é']


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_never_raises_on_near_misses(pieces: list[str]) -> None:
    line = "".join(pieces)
    for fmt in ("combined", "upstream"):
        assert isinstance(parse_access_line(line, fmt, SERVICES), AccessRecord | Malformed)


text = st.text(st.characters(codec="utf-8"), max_size=60).filter(lambda s: s != "-")
seconds = st.one_of(st.none(), st.integers(0, 10**6).map(lambda ms: ms / 1000))


@st.composite
def access_records(draw: st.DrawFn) -> tuple[AccessRecord, int]:
    offset = draw(st.integers(-12 * 60, 14 * 60))
    first, last = dt.datetime(1900, 1, 2, tzinfo=UTC), dt.datetime(9998, 12, 30, tzinfo=UTC)
    event_time = first + dt.timedelta(
        seconds=draw(st.integers(0, int((last - first).total_seconds()))))
    http = draw(st.booleans())
    path = draw(st.text(st.characters(codec="utf-8", exclude_characters=" "),
                        max_size=40)) if http else ""
    upstream = draw(st.sampled_from(["", "10.0.0.1:8080", "unix:/run/app.sock", "backend"]))
    record = AccessRecord(
        event_time=event_time,
        client=draw(st.ip_addresses()).exploded,
        method=draw(st.from_regex(r"[A-Z_-]{1,10}", fullmatch=True)) if http else "",
        path="/" + path if http else "",
        protocol=draw(st.sampled_from(["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", ""])) if http else "",
        status=draw(st.integers(100, 599)),
        bytes=draw(st.integers(0, 10**15)),
        referer=draw(text), user_agent=draw(text), host=draw(text),
        upstream=upstream,
        request_time=draw(st.integers(0, 10**6)) / 1000,
        upstream_time=draw(seconds) if upstream else None,
    )
    return record, offset


@settings(max_examples=400, deadline=None)
@given(access_records(), st.sampled_from(["combined", "upstream"]))
def test_round_trip_of_generated_well_formed_lines(case: tuple[AccessRecord, int], fmt: str
                                                   ) -> None:
    record, offset = case
    rules = parse_service_map(SERVICES + ",backend=legacy")
    line = format_access_line(record, fmt, offset_minutes=offset)
    parsed = AccessLogParser(fmt, rules).parse(line)
    if fmt == "combined":
        record = msgspec.structs.replace(record, host="", upstream="", request_time=None,
                                     upstream_time=None)
    expected = msgspec.structs.replace(record, service=service_for(record.path, record.upstream, rules))
    assert parsed == expected, line


@given(text)
def test_unescape_inverts_nginx_escaping(value: str) -> None:
    assert unescape(escape(value)) == value
    assert '"' not in escape(value) and "\n" not in escape(value)
