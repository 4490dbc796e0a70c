"""nginx's ``log_format`` language: a definition -> :class:`LogFormat`; nginx.conf -> a definition.

What a user gives (``NGINX_LOG_FORMAT`` / ``--log-format``) is one of:

* a preset name: ``combined`` (nginx's built-in), ``upstream`` (combined plus
  the upstream fields; the kit's demo writes it) or ``common`` (the NCSA/Apache
  common log format without its ident field);
* a definition exactly as written in nginx.conf after the format's name: an
  optional ``escape=default|json|none`` and one or more quoted strings, which
  nginx concatenates (``'$remote_addr [$time_local] ' '"$request" $status'``);
* the whole directive, ``log_format NAME ... ;``, pasted from nginx.conf;
* or the format's text itself, unquoted (``$remote_addr [$time_local] "$request" $status``).

:func:`read_nginx_conf` finds ``log_format NAME`` in a site's own nginx.conf,
following ``include`` (globs, relative to the main file's folder, as nginx does).

Usage::

    fmt = resolve("combined")                         # or a definition, see above
    fmt = read_nginx_conf(Path("/etc/nginx/nginx.conf"), "main")
    fmt.parts    # ('', Var('remote_addr'), ' - ', Var('remote_user'), ' [', ...)

The text is tokenised with nginx's own rules (ngx_conf_file.c): words split by
whitespace, ``'...'`` and ``"..."`` quotes in which ``\\"``, ``\\'``, ``\\\\``,
``\\t``, ``\\r``, ``\\n`` are escapes, ``#`` comments, ``;`` ``{`` ``}``.
Variables are ``$name`` or ``${name}`` (letters, digits, ``_``), as
ngx_http_log_compile_format reads them. Errors are :class:`LogFormatError`
with a message saying what is wrong and where.
"""

from __future__ import annotations

import dataclasses
import glob
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ESCAPES", "PRESETS", "TIME_VARIABLES", "LogFormat", "LogFormatError", "Var",
           "check_usable", "parse_definition", "read_nginx_conf", "resolve", "tokens"]

#: nginx's ``escape=`` values (1.11.8 json, 1.13.10 none); ``default`` when absent.
ESCAPES = ("default", "json", "none")

#: Formats known by name. ``combined`` is built into nginx; ``upstream`` is what the
#: kit's demo nginx writes (``input/data/nginx/nginx.conf``); ``common`` is the NCSA
#: common log format as nginx would write it.
PRESETS: dict[str, str] = {
    "combined": ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent"'),
    "upstream": ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                 '"$http_referer" "$http_user_agent" "$host" "$upstream_addr" $request_time '
                 '$upstream_response_time'),
    "common": '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent',
}


class LogFormatError(ValueError):
    """A log format definition or nginx.conf that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Var:
    """A variable of a format (``$status`` -> ``Var("status")``)."""

    name: str

    def __str__(self) -> str:
        return f"${self.name}"


_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """A format: its name, its escaping and its text (quoted strings already joined)."""

    name: str
    template: str
    escape: str = "default"

    def __post_init__(self) -> None:
        if self.escape not in ESCAPES:
            raise LogFormatError(f"escape={self.escape} is not one of {', '.join(ESCAPES)}")
        rest = _VAR.sub("", self.template)  # the literal text
        if "$" in rest:
            where = rest.index("$")
            raise LogFormatError(f"log format {self.name!r}: a '$' not followed by a variable "
                                 f"name (near {rest[where:where + 20]!r})")
        if not _VAR.search(self.template):
            raise LogFormatError(f"log format {self.name!r} has no variables: {self.template!r}")

    @property
    def parts(self) -> tuple[str | Var, ...]:
        """Literals and variables alternating, starting and ending with a literal (maybe '')."""
        out: list[str | Var] = []
        last = 0
        for m in _VAR.finditer(self.template):
            out.append(self.template[last:m.start()])
            out.append(Var(m.group(1) or m.group(2)))
            last = m.end()
        out.append(self.template[last:])
        return tuple(out)

    @property
    def variables(self) -> tuple[str, ...]:
        """The variable names, in order (a name used twice appears twice)."""
        return tuple(p.name for p in self.parts if isinstance(p, Var))

    @property
    def literals(self) -> tuple[str, ...]:
        """The text around the variables: one more than there are variables (maybe '')."""
        return tuple(p for p in self.parts if isinstance(p, str))

    def definition(self) -> str:
        """The directive as it would appear in nginx.conf."""
        escape = "" if self.escape == "default" else f"escape={self.escape} "
        quoted = self.template.replace("\\", "\\\\").replace("'", "\\'")
        return f"log_format {self.name} {escape}'{quoted}';"


# -- nginx.conf tokens

_ESCAPED = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}
_CONF_ESCAPE = re.compile(r"\\([\"'\\trn])")


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """A word of nginx.conf (``quoted``: it was written in quotes) or ``;`` ``{`` ``}``."""

    text: str
    quoted: bool
    line: int


def tokens(text: str) -> Iterator[Token]:
    """nginx.conf's words, with nginx's quoting and comments (see the module docstring).

    Raises:
        LogFormatError: an unterminated quote.
    """
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in ";{}":
            yield Token(c, False, line)
            i += 1
        elif c in "'\"":
            start_line, out, i = line, [], i + 1
            while True:
                if i >= n:
                    raise LogFormatError(f"line {start_line}: unterminated {c} quote")
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] in _ESCAPED:
                    out.append(_ESCAPED[text[i + 1]])
                    i += 2
                    continue
                if ch == c:
                    i += 1
                    break
                if ch == "\n":
                    line += 1
                out.append(ch)
                i += 1
            yield Token("".join(out), True, start_line)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in ";{}":
                # nginx: a quote or '#' inside a word is part of the word; '\' escapes a char
                i += 2 if text[i] == "\\" and i + 1 < n else 1
            yield Token(_CONF_ESCAPE.sub(lambda m: _ESCAPED[m.group(1)], text[start:i]), False,
                        line)


def _directives(text: str, source: str) -> Iterator[tuple[list[Token], str]]:
    """Every simple directive (words up to ``;``) of a conf text, blocks flattened."""
    words: list[Token] = []
    for token in tokens(text):
        if not token.quoted and token.text in ("{", "}"):
            words = []
        elif not token.quoted and token.text == ";":
            if words:
                yield words, source
            words = []
        else:
            words.append(token)
    if words:
        raise LogFormatError(f"{source}: directive '{words[0].text}' (line {words[0].line}) "
                             f"has no closing ';'")


def _format_from_words(name: str, words: list[Token], where: str) -> LogFormat:
    """The arguments after ``log_format NAME`` -> a LogFormat."""
    escape = "default"
    if words and not words[0].quoted and words[0].text.startswith("escape="):
        escape = words[0].text.partition("=")[2]
        words = words[1:]
        if escape not in ESCAPES:
            raise LogFormatError(f"{where}: escape={escape} is not one of {', '.join(ESCAPES)}")
    if not words:
        raise LogFormatError(f"{where}: log format {name!r} has no strings")
    return LogFormat(name, "".join(w.text for w in words), escape)


def parse_definition(text: str, name: str = "custom") -> LogFormat:
    """A definition (``[escape=...] 'string' ...``, or ``log_format NAME ...;``) -> LogFormat.

    Raises:
        LogFormatError: not a definition; the message says why.
    """
    words = [t for t in tokens(text) if not (t.text == ";" and not t.quoted)]
    if words and not words[0].quoted and words[0].text == "log_format":
        if len(words) < 3:
            raise LogFormatError("log_format needs a name and at least one string")
        name, words = words[1].text, words[2:]
    return _format_from_words(name, words, "log format definition")


def resolve(value: str) -> LogFormat:
    """A preset name or a definition (see the module docstring) -> LogFormat.

    Raises:
        LogFormatError: neither a preset nor a definition with variables.
    """
    stripped = value.strip()
    if stripped in PRESETS:
        return LogFormat(stripped, PRESETS[stripped])
    if re.fullmatch(r"[A-Za-z_][\w-]*", stripped):
        raise LogFormatError(
            f"log format {stripped!r} is not a preset ({', '.join(PRESETS)}); give an nginx "
            f"log_format definition instead, e.g. '$remote_addr [$time_local] \"$request\" "
            f"$status', or --nginx-conf PATH --log-format-name NAME")
    if stripped.startswith(("'", '"', "escape=", "log_format")):
        return parse_definition(stripped)
    return LogFormat("custom", stripped)  # the template itself, unquoted


def _conf_files(path: Path, root: Path, seen: set[Path]) -> Iterator[tuple[list[Token], str]]:
    """Directives of ``path`` and of the files it includes, in nginx's order."""
    resolved = path.resolve()
    if resolved in seen:
        raise LogFormatError(f"{path}: included twice (an include loop?)")
    seen.add(resolved)
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        raise LogFormatError(f"cannot read {path}: {e.strerror or e}") from e
    for words, source in _directives(text, str(path)):
        if words[0].text == "include" and len(words) == 2:
            pattern = words[1].text
            full = pattern if Path(pattern).is_absolute() else str(root / pattern)
            matches = sorted(glob.glob(full))
            if not matches and not glob.has_magic(full):
                raise LogFormatError(f"{path} line {words[0].line}: include {pattern}: "
                                     f"no such file ({full})")
            for included in matches:
                yield from _conf_files(Path(included), root, seen)
        else:
            yield words, source


def read_nginx_conf(path: Path, name: str | None = None, log_path: Path | None = None
                    ) -> LogFormat:
    """The ``log_format NAME`` defined in an nginx.conf or the files it includes.

    Without ``name``, the format of the ``access_log`` directive that writes
    ``log_path`` (nginx's ``combined`` when that directive names none): what a
    site's own log is written with. ``combined`` is nginx's built-in (nginx
    refuses to redefine it). Relative includes are resolved against the main
    file's folder (nginx's ``conf`` prefix).

    Raises:
        LogFormatError: unreadable file, bad syntax, no such format or no such access_log
        (the message lists what was found).
    """
    path = Path(path)
    formats: dict[str, LogFormat] = {}
    logs: dict[str, str] = {}  # access_log path -> its format's name
    for words, source in _conf_files(path, path.resolve().parent, set()):
        directive = words[0].text
        if directive == "log_format" and len(words) >= 2:
            formats.setdefault(words[1].text, _format_from_words(
                words[1].text, words[2:], f"{source} line {words[0].line}"))
        elif directive == "access_log" and len(words) >= 2 and words[1].text != "off":
            logs.setdefault(words[1].text, words[2].text if len(words) >= 3 else "combined")
    if name is None:
        if log_path is None:
            raise LogFormatError("name the log format (--log-format-name) or the log it writes")
        wanted = {str(log_path), str(Path(log_path).resolve())}
        name = next((fmt for written, fmt in logs.items()
                     if written in wanted or str(Path(written).resolve()) in wanted), None)
        if name is None:
            raise LogFormatError(
                f"{path} (with its includes) has no access_log writing {log_path}; its access "
                f"logs are {', '.join(logs) or 'none'} (or name the format: --log-format-name)")
    if name in formats:
        return formats[name]
    if name == "combined":
        return LogFormat("combined", PRESETS["combined"])
    raise LogFormatError(f"{path} (with its includes) defines no log_format {name!r}; it defines "
                         f"{', '.join(formats) or 'none'} (and nginx's built-in combined)")


#: The variables a time can come from, most precise first.
TIME_VARIABLES = ("msec", "time_iso8601", "time_local")


def check_usable(fmt: LogFormat) -> LogFormat:
    """``fmt`` if it has what the traffic graph needs (a time and ``$status``).

    Raises:
        LogFormatError: naming what is missing.
    """
    missing = []
    if not any(v in fmt.variables for v in TIME_VARIABLES):
        missing.append("a time ($time_local, $time_iso8601 or $msec)")
    if "status" not in fmt.variables:
        missing.append("$status")
    if missing:
        raise LogFormatError(f"log format {fmt.name!r} lacks {' and '.join(missing)}, which the "
                             f"traffic graph needs ({fmt.template!r})")
    return fmt
