"""Any nginx log_format: definitions and nginx.conf (common/nginx_format.py), the compiled parser.

The fixtures in tests/fixtures/nginx/ were written by a real nginx (its README says how), four
logs of the same 82 requests in four formats, one of them JSON; requests.jsonl is what the
client sent.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from common import settings as settings_module
from common.accesslog import AccessLogParser, Malformed, escape, render_line
from common.nginx_format import (
    PRESETS,
    LogFormat,
    LogFormatError,
    parse_definition,
    read_nginx_conf,
    resolve,
    tokens,
)
from common.records import AccessRecord, from_json
from input.base import Rejected
from input.nginx import main as nginx_main
from input.nginx import to_item

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nginx"
CONF = FIXTURES / "conf" / "nginx.conf"
LOGS = ("combined", "upstream_custom", "json_log", "none_log")
UTC = dt.UTC


def log_lines(name: str) -> list[bytes]:
    """A fixture log's lines as bytes: nginx separates them with \\n only (none_log has NULs)."""
    return (FIXTURES / f"{name}.log").read_bytes().split(b"\n")[:-1]


def parsed_log(name: str) -> list[AccessRecord]:
    parser = AccessLogParser(read_nginx_conf(CONF, name), "/api/=api,/=web")
    out = []
    for n, raw in enumerate(log_lines(name), 1):
        item = to_item(raw, parser)
        assert not isinstance(item, Rejected), f"{name}.log line {n}: {item.reason}: {raw[:200]!r}"
        out.append(item)
    return out


# -- a real nginx's logs


@pytest.fixture(scope="module")
def fixture_logs() -> dict[str, list[AccessRecord]]:
    return {name: parsed_log(name) for name in LOGS}


def test_every_line_nginx_wrote_parses_in_all_four_formats(
        fixture_logs: dict[str, list[AccessRecord]]) -> None:
    assert {len(records) for records in fixture_logs.values()} == {82}


def test_the_four_formats_agree_on_every_request(
        fixture_logs: dict[str, list[AccessRecord]]) -> None:
    combined, custom, json_log, none_log = (fixture_logs[n] for n in LOGS)
    for n, (a, b, c, d) in enumerate(zip(combined, custom, json_log, none_log, strict=True), 1):
        where = f"line {n}"
        assert a.status == b.status == c.status == d.status, where
        assert a.client == b.client == c.client == d.client == "127.0.0.1", where
        assert a.event_time == b.event_time == d.event_time.replace(microsecond=0), where
        assert c.event_time.replace(microsecond=0) == a.event_time, where
        assert d.event_time.microsecond % 1000 == 0 and d.event_time.tzinfo is UTC, where
        assert a.bytes == b.bytes == c.bytes, where
        assert d.bytes >= a.bytes, where  # $bytes_sent counts the headers too
        assert a.user_agent == b.user_agent == c.user_agent == d.user_agent, where
        assert a.referer == b.referer == c.referer, where
        assert (a.method, a.path, a.protocol) == (c.method, c.path, c.protocol), where
        assert a.remote_user == c.remote_user == d.remote_user, where
        assert b.upstream == c.upstream and b.host == c.host, where
        assert b.upstream_time == c.upstream_time and b.upstream_status == c.upstream_status
        assert b.forwarded_for == c.forwarded_for, where
        if a.method and a.protocol and b.method not in ("", "-"):
            assert (b.method, b.protocol) == (a.method, a.protocol), where


def sent_requests() -> list[dict[str, Any]]:
    lines = (FIXTURES / "requests.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["logged"]]


@functools.cache
def recorder() -> Any:
    """tests/fixtures/nginx/record.py, which wrote requests.jsonl (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("nginx_record", FIXTURES / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_text(value: str) -> str:
    """requests.jsonl's text as the kit decodes a line: the recorder's own ``unescape`` to the
    bytes sent, then UTF-8 with bytes that are not UTF-8 as ``\\xhh``."""
    return str(recorder().unescape(value).decode("utf-8", "backslashreplace"))


def test_parsed_values_are_what_the_client_sent(
        fixture_logs: dict[str, list[AccessRecord]]) -> None:
    checked = 0
    for request in sent_requests():
        headers = request["headers"] or []
        agents = [v for k, v in headers if k.lower() == "user-agent"]
        response = str(request["response"] or "")
        status = int(response.split()[1]) if response.startswith("HTTP/") else 0  # not 0.9
        if len(agents) != 1 or not 200 <= status < 400:
            continue
        n = int(request["line"]) - 1
        for name in LOGS:
            record = fixture_logs[name][n]
            assert record.user_agent == fixture_text(agents[0]), (name, request["note"])
            assert record.status == status, (name, request["note"])
            if name != "none_log":
                assert record.method == request["method"], (name, request["note"])
        checked += 1
    assert checked >= 40


def test_upstream_tries_and_extras_from_the_real_logs(
        fixture_logs: dict[str, list[AccessRecord]]) -> None:
    custom, json_log = fixture_logs["upstream_custom"], fixture_logs["json_log"]
    retried = [r for r in custom if r.upstream_status == 200 and r.extras == {}
               and r.path.startswith("/api/") and r.upstream_connect_time is not None]
    assert retried, "no request went to the api upstreams"
    lines = {raw.decode("utf-8", "backslashreplace") for raw in log_lines("upstream_custom")}
    assert any('us=502, 200 ' in line for line in lines)  # a refused try, then an answer
    assert any(" : " in line for line in lines)  # an internal redirect to another upstream
    assert all(" " not in r.upstream for r in custom)  # the last try only
    # $time_iso8601 too: $msec, more precise, gave the time; a variable no field takes is kept
    assert {tuple(r.extras) for r in json_log} == {("time_iso8601", "cookie_x")}
    assert {r.extras["cookie_x"] for r in json_log} >= {"", "1"}
    assert all(r.request_length is not None for r in custom)
    assert any(r.forwarded_for.count(",") == 1 for r in custom)
    assert {tuple(r.extras) for r in fixture_logs["none_log"]} == {("time_local", "request_id")}


def test_the_sources_cli_follows_the_sites_conf(capsys: pytest.CaptureFixture[str]) -> None:
    log = FIXTURES / "json_log.log"
    assert nginx_main(["--replay", str(log), "--speed", "0", "--dry-run",
                       "--nginx-conf", str(CONF), "--log-format-name", "json_log"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 82 and not any("dead_letter" in o for o in out)
    assert {from_json(AccessRecord, o).status for o in out} >= {200, 400, 404, 502, 504}


def test_a_bad_format_on_the_cli_is_refused_at_start_naming_what_is_missing(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        nginx_main(["--replay", str(FIXTURES / "combined.log"), "--dry-run",
                    "--log-format", '$remote_addr "$request"'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lacks a time ($time_local, $time_iso8601 or $msec) and $status" in err


# -- definitions and nginx.conf


def test_definitions_as_nginx_conf_writes_them() -> None:
    fmt = parse_definition("""escape=json '{"t":"$time_iso8601",' "\\"s\\":$status}\"""")
    assert fmt == LogFormat("custom", '{"t":"$time_iso8601","s":$status}', "json")
    directive = parse_definition("log_format main '$remote_addr [$time_local] ' '$status';")
    assert (directive.name, directive.template) == ("main", "$remote_addr [$time_local] $status")
    assert resolve("combined") == LogFormat("combined", PRESETS["combined"])
    assert resolve('$remote_addr [$time_local] "$request" $status').name == "custom"
    assert resolve("'${remote_addr}x[$time_local] $status'").variables == (
        "remote_addr", "time_local", "status")
    assert LogFormat("x", "a $b c").literals == ("a ", " c")
    again = parse_definition(LogFormat("r", "'$a\\\\' $status $msec", "none").definition())
    assert again == LogFormat("r", "'$a\\\\' $status $msec", "none")


@pytest.mark.parametrize(("value", "message"), [
    ("json", "is not a preset"),
    ("escape=xml '$status $msec'", "escape=xml is not one of default, json, none"),
    ("'$status $msec", "unterminated ' quote"),
    ("'no variables'", "has no variables"),
    ("'$ $status $msec'", "a '$' not followed by a variable name"),
    ("'$remote_addr $request'", "lacks a time"),
    ("'$time_local $request'", "lacks $status"),
])
def test_bad_definitions_say_why(value: str, message: str) -> None:
    with pytest.raises(LogFormatError, match=re.escape(message)):
        AccessLogParser(value)
    with pytest.raises(settings_module.SettingsError, match="NGINX_LOG_FORMAT"):
        settings_module.load(environ={"NGINX_LOG_FORMAT": value})


def test_tokens_follow_nginxs_quoting_and_comments() -> None:
    text = "a 'b c' \"d\\\"e\" f\\tg # comment ;\n{ 'x\\'y' };"
    assert [t.text for t in tokens(text)] == ["a", "b c", 'd"e', "f\tg", "{", "x'y", "}", ";"]


def test_reading_the_sites_nginx_conf(tmp_path: Path) -> None:
    custom = read_nginx_conf(CONF, "upstream_custom")
    assert len(custom.variables) == 17 and custom.escape == "default"
    assert read_nginx_conf(CONF, "json_log").escape == "json"  # from conf.d/*.conf
    assert read_nginx_conf(CONF, "combined") == resolve("combined")
    by_log = read_nginx_conf(CONF, log_path=Path("@ACCESS_DIR@/none_log.log"))
    assert by_log.name == "none_log"
    with pytest.raises(LogFormatError, match="defines upstream_custom, json_log, none_log"):
        read_nginx_conf(CONF, "main")
    with pytest.raises(LogFormatError, match="has no access_log writing /x.log"):
        read_nginx_conf(CONF, log_path=Path("/x.log"))
    loop = tmp_path / "nginx.conf"
    loop.write_text("include nginx.conf;")
    with pytest.raises(LogFormatError, match="included twice"):
        read_nginx_conf(loop, "x")
    missing = tmp_path / "missing.conf"
    missing.write_text("http { include other.conf; }")
    with pytest.raises(LogFormatError, match="no such file"):
        read_nginx_conf(missing, "x")
    unclosed = tmp_path / "unclosed.conf"
    unclosed.write_text("log_format x '$status $msec'")
    with pytest.raises(LogFormatError, match="has no closing ';'"):
        read_nginx_conf(unclosed, "x")


def test_settings_read_the_format_from_the_conf() -> None:
    s = settings_module.load(environ={"NGINX_CONF": str(CONF),
                                      "NGINX_LOG_FORMAT_NAME": "none_log"})
    assert s.nginx_access_format().escape == "none"
    with pytest.raises(settings_module.SettingsError, match="NGINX_CONF, which is unset"):
        settings_module.load(environ={"NGINX_LOG_FORMAT_NAME": "x"})


# -- the compiled parser on hand-made lines


def parse(fmt: str, line: str) -> AccessRecord:
    result = AccessLogParser(fmt).parse(line)
    assert isinstance(result, AccessRecord), result
    return result


def test_request_parts_uri_args_and_msec() -> None:
    record = parse("$msec $request_method $uri $args $server_protocol $status",
                   "1796616216.585 GET /a%20b x=1 HTTP/1.1 200")
    assert (record.method, record.path, record.protocol) == ("GET", "/a%20b?x=1", "HTTP/1.1")
    assert record.event_time == dt.datetime(2026, 12, 7, 4, 3, 36, 585000, tzinfo=UTC)
    assert parse("$msec $uri $args $status", "1.000 /a - 200").path == "/a"


def test_json_escapes_and_empty_not_found_values() -> None:
    fmt = """escape=json '{"t":"$time_iso8601","s":$status,"ua":"$http_user_agent","up":"$upstream_addr","rt":"$upstream_response_time","c":"$cookie_c"}'"""
    record = parse(fmt, '{"t":"2026-12-07T09:33:36+05:30","s":200,"ua":"a\\"b\\\\c\\td\\u0001",'
                        '"up":"","rt":"","c":""}')
    assert record.user_agent == 'a"b\\c\td\x01'
    assert (record.upstream, record.upstream_time, record.extras) == ("", None,
                                                                      {"cookie_c": ""})
    assert record.event_time == dt.datetime(2026, 12, 7, 4, 3, 36, tzinfo=UTC)


def test_an_unparsable_line_says_where() -> None:
    parser = AccessLogParser("'$time_iso8601 $remote_addr rt=$request_time $status'")
    result = parser.parse("2026-12-07T09:33:36+05:30 1.2.3.4 rt=x 200")
    assert isinstance(result, Malformed)
    assert "$request_time expected at column 38 ('x 200')" in result.reason
    bad_time = parser.parse("2026-13-07T09:33:36+05:30 1.2.3.4 rt=0.1 200")
    assert isinstance(bad_time, Malformed) and "is not a valid date and time" in bad_time.reason


# -- properties: any definition, any values: what nginx would write parses back


KNOWN_TEXT = {"http_referer": "referer", "http_user_agent": "user_agent", "host": "host",
              "remote_user": "remote_user", "http_x_forwarded_for": "forwarded_for"}
UNKNOWN = ("cookie_session", "arg_q", "ssl_protocol", "sent_http_content_type")
TYPED = ("time_local", "time_iso8601", "msec", "status", "body_bytes_sent", "request_time",
         "request_length", "upstream_status", "upstream_response_time")
# Not ":", "::" or ";": an address may end in them (";" once the next value is ";" too), so
# nginx's own line would be ambiguous.
SEPARATORS = (" ", " - ", " | ", ", ", "\t", " key=")

addresses = st.sampled_from(["10.0.0.1:80", "unix:/run/app.sock", "backend", "[::1]:8080"])
milliseconds = st.integers(0, 10**6).map(lambda ms: f"{ms / 1000:.3f}")


def tries(item: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(st.lists(item, min_size=1, max_size=3),
                     st.sampled_from([", ", " : "])).map(lambda t: t[1].join(t[0]))


def texts(escape_mode: str) -> st.SearchStrategy[str | None]:
    # escape=none writes bytes as they are: a newline or quote there is nginx's own ambiguity.
    banned = "\n\r\"" if escape_mode == "none" else ""
    alphabet = st.characters(codec="utf-8", exclude_characters=banned + "\x00")
    return st.one_of(st.none(), st.just("-"), st.text(alphabet, max_size=30))


@st.composite
def formats_and_values(draw: st.DrawFn) -> tuple[LogFormat, dict[str, str | None]]:
    mode = draw(st.sampled_from(["default", "json", "none"]))
    time_var = draw(st.sampled_from(["time_local", "time_iso8601", "msec"]))
    offset = dt.timezone(dt.timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    start = dt.datetime(1971, 1, 1, tzinfo=UTC)
    when = start + dt.timedelta(milliseconds=draw(st.integers(0, 129 * 365 * 86_400_000)))
    values: dict[str, str | None] = {
        "time_local": when.astimezone(offset).strftime("%d/%b/%Y:%H:%M:%S %z"),
        "time_iso8601": when.astimezone(offset).isoformat(timespec="seconds"),
        "msec": f"{int(when.timestamp())}.{when.microsecond // 1000:03d}",
    }
    values = {time_var: values[time_var], "status": str(draw(st.integers(100, 599)))}
    optional = {
        "remote_addr": st.ip_addresses().map(str),
        "request": st.tuples(st.from_regex(r"[A-Z]{3,7}", fullmatch=True),
                             st.text(st.characters(codec="utf-8", exclude_characters=' \n\r"'),
                                     max_size=20),
                             st.sampled_from(["HTTP/1.0", "HTTP/1.1"])
                             ).map(lambda t: f"{t[0]} /{t[1]} {t[2]}"),
        "body_bytes_sent": st.integers(0, 10**12).map(str),
        "request_time": milliseconds,
        "request_length": st.integers(0, 10**6).map(str),
        "upstream_addr": tries(addresses),
        "upstream_status": tries(st.sampled_from(["200", "502", "-"])),
        "upstream_response_time": tries(st.one_of(milliseconds, st.just("-"))),
        **{name: texts(mode) for name in (*KNOWN_TEXT, *UNKNOWN)},
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=12)):
        values[name] = draw(optional[name])
    names = draw(st.permutations(sorted(values)))
    quoted = {name: draw(st.booleans()) or name == "request" for name in names}
    pieces = [draw(st.sampled_from(["", "[", "{"]))]
    for i, name in enumerate(names):
        pieces.append(f'"${name}"' if quoted[name] else f"${name}")
        pieces.append(draw(st.sampled_from(SEPARATORS)) if i < len(names) - 1
                      else draw(st.sampled_from(["", "]", "}"])))
    fmt = LogFormat("generated", "".join(pieces), mode)
    # nginx's own lines are ambiguous where a value holds the text that follows it unquoted
    # (or, with escape=none, anywhere): such cases are left out, as no parser can read them.
    literals = fmt.literals
    for k, name in enumerate(fmt.variables):
        after = literals[k + 1]
        value = values.get(name)
        written = render_line(LogFormat("v", "$v", mode), {"v": value})
        if name.startswith("upstream_") and after.startswith((", ", " : ")):
            assume(False)  # the tries' own separator after a list of tries: nginx's ambiguity
        if after and (not quoted[name] or mode == "none") and name not in TYPED:
            assume((written + after).find(after) == len(written))
        if not after and k == len(fmt.variables) - 1 and mode != "default":
            assume("\r" not in written[-1:])
    return fmt, values


@settings(max_examples=600, deadline=None)
@given(formats_and_values())
def test_what_nginx_would_write_parses_back_to_the_same_values(
        case: tuple[LogFormat, dict[str, str | None]]) -> None:
    fmt, values = case
    line = render_line(fmt, values)
    record = AccessLogParser(fmt).parse(line)
    assert isinstance(record, AccessRecord), (fmt.definition(), line, record)
    assert record.status == int(values["status"] or 0)
    for name, field in KNOWN_TEXT.items():
        if name in values:
            assert getattr(record, field) == ("" if values[name] in (None, "-") else values[name])
    not_found = "-" if fmt.escape == "default" else ""
    assert record.extras == {name: not_found if values[name] is None else values[name]
                             for name in UNKNOWN if name in values}
    if "request" in values:
        method, _, rest = (values["request"] or "").partition(" ")
        path, _, protocol = rest.rpartition(" ")
        assert (record.method, record.path, record.protocol) == (method, path, protocol)
    if "upstream_addr" in values:
        assert record.upstream == re.split(", | : ", values["upstream_addr"] or "")[-1]
    for name, field in (("body_bytes_sent", "bytes"), ("request_length", "request_length")):
        if name in values:
            assert getattr(record, field) == int(values[name] or 0)
    if "upstream_status" in values:
        last = re.split(", | : ", values["upstream_status"] or "")[-1]
        assert record.upstream_status == (None if last == "-" else int(last))
    assert record.event_time.tzinfo is UTC


@settings(max_examples=300, deadline=None)
@given(formats_and_values(), st.text(max_size=200), st.integers(0, 300))
def test_the_parser_never_raises_on_broken_lines(
        case: tuple[LogFormat, dict[str, str | None]], noise: str, cut: int) -> None:
    fmt, values = case
    line = render_line(fmt, values)
    for broken in (line[:cut] + noise, noise + line[cut:], line.replace(" ", noise[:3])):
        assert isinstance(AccessLogParser(fmt).parse(broken), AccessRecord | Malformed)


def test_escape_round_trips_what_the_default_escaping_writes() -> None:
    assert escape('a"b\\c\t\xff') == "a\\x22b\\x5Cc\\x09\\xC3\\xBF"
