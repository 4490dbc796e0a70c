"""Read the compose stack without Docker: docker-compose.yml, the Dockerfiles, the lock, the code.

Everything here is static: YAML, Dockerfile text, ``requirements.lock``, ``queue/pom.xml`` (the
JVM engines' versions) and ``queue/server.properties`` (the broker's settings), the installed
distributions' metadata (the test environment is installed from the same lock) and the kit's
source code (imports followed with ``ast``, never executed).
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
LOCK_FILE = ROOT / "requirements.lock"
POM_FILE = ROOT / "queue" / "pom.xml"
SERVER_PROPERTIES = ROOT / "queue" / "server.properties"
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
FIRST_PARTY = ("common", "buffer", "input", "processing", "storage", "display", "stack")


# -- docker-compose.yml


@functools.cache
def compose() -> dict[str, Any]:
    """The compose file as Compose reads it (YAML anchors and merge keys resolved)."""
    text = COMPOSE_FILE.read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


# -- docker-compose.cluster.yml: an override merged into docker-compose.yml

CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
#: What the override may set on a service of the base file: keys whose Compose merge is the
#: one :func:`merge` does (mappings merged key by key, anything else replaced). Lists such as
#: ports or volumes are merged by Compose in ways of their own: the override leaves them alone.
MERGED_KEYS = {"environment", "depends_on", "deploy", "command", "healthcheck", "hostname"}


@functools.cache
def cluster_override() -> dict[str, Any]:
    data = yaml.safe_load(CLUSTER_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.cluster.yml is not a mapping"
    return data


def merge(base: Any, override: Any) -> Any:
    """``override`` merged into ``base`` as Compose merges a second ``-f`` file, for mappings
    and scalars: mappings key by key (recursively), any other value replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


@functools.cache
def cluster_compose() -> dict[str, Any]:
    """``docker compose -f docker-compose.yml -f docker-compose.cluster.yml`` as one file."""
    override = {k: v for k, v in cluster_override().items() if not k.startswith("x-")}
    return dict(merge(compose(), override))


def cluster_services() -> dict[str, dict[str, Any]]:
    return dict(cluster_compose()["services"])


def kit_services() -> dict[str, dict[str, Any]]:
    """Services built from the kit's own Dockerfiles."""
    return {name: s for name, s in services().items() if "build" in s}


def spark_services() -> dict[str, dict[str, Any]]:
    """Services of the processing image: each runs a Spark application."""
    return {name: s for name, s in kit_services().items()
            if s["build"]["dockerfile"] == "processing/Dockerfile"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as strings (list or mapping form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {k: v for k, v in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def option(args: list[str], name: str) -> str | None:
    """The value after ``name`` in an argument list (``--master local[2]``), or None."""
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency -> condition (the short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def all_dependencies(name: str) -> dict[str, set[str]]:
    """Every service ``name`` waits for, directly or through others, with the conditions used."""
    seen: dict[str, set[str]] = {}
    stack = [name]
    while stack:
        for dep, condition in depends_on(services()[stack.pop()]).items():
            if dep not in seen:
                stack.append(dep)
            seen.setdefault(dep, set()).add(condition)
    return seen


def memory_limit_bytes(service: dict[str, Any]) -> int | None:
    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    raw = limits.get("memory", service.get("mem_limit"))
    return None if raw is None else parse_bytes(str(raw))


def parse_bytes(raw: str) -> int:
    """Compose and JVM sizes: ``512m``, ``1g``, ``1536M``, ``2GiB``, ``1024`` (bytes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)", raw.strip(), re.I)
    if not m:
        raise ValueError(f"not a size: {raw!r}")
    unit = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * unit)


def parse_duration(raw: str) -> float:
    """Compose durations in seconds: ``90s``, ``1m30s``, ``1h``, ``500ms``."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", raw.strip())
    if not parts or "".join(n + u for n, u in parts) != raw.strip():
        raise ValueError(f"not a duration: {raw!r}")
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


@dataclass(frozen=True)
class Port:
    service: str
    host_ip: str
    host_port: int
    container_port: int


def published_ports() -> list[Port]:
    ports = []
    for name, service in services().items():
        for entry in service.get("ports") or []:
            if isinstance(entry, dict):
                ports.append(Port(name, str(entry.get("host_ip", "")),
                                  int(entry["published"]), int(entry["target"])))
                continue
            spec = str(entry).split("/")[0]
            parts = spec.rsplit(":", 2)
            if len(parts) == 3:
                ip, host, target = parts
            elif len(parts) == 2:
                ip, (host, target) = "", parts
            else:
                ip, host, target = "", "", parts[0]
            ports.append(Port(name, ip, int(host) if host else 0, int(target)))
    return ports


def kafka_listeners(kind: str) -> dict[str, tuple[str, int]]:
    """The kafka service's listeners (``KAFKA_LISTENERS`` or ``..._ADVERTISED_...``) by name."""
    env = environment(services()["kafka"])
    raw = env[f"KAFKA_{kind}"]
    result = {}
    for item in raw.split(","):
        name, rest = item.split("://", 1)
        host, port = rest.rsplit(":", 1)
        result[name] = (host, int(port))
    return result


# -- Dockerfiles


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        """The variables the stage's ``ENV`` instructions set (``ENV A=1 B=2`` form)."""
        found: dict[str, str] = {}
        for rest in self.args("ENV"):
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {rest!r}: use the KEY=value form"
                found[key] = value
        return found

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """(``--from`` stage or None for the build context, sources, destination) per COPY."""
        result = []
        for rest in self.args("COPY"):
            words = rest.split()
            source = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            result.append((source, paths[:-1], paths[-1]))
        return result


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def arg_default(self, name: str, stage: Stage | None = None) -> str | None:
        for rest in (stage.args("ARG") if stage else []):
            key, _, value = rest.partition("=")
            if key.strip() == name and value:
                return value.strip().strip('"')
        return self.global_args.get(name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Dockerfile lines with continuations joined and comments dropped: (first line no, text)."""
    buffer: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1])
            continue
        buffer.append(stripped)
        yield start, " ".join(part.strip() for part in buffer)
        buffer = []


def dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for _, line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                global_args[key.strip()] = value.strip().strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(path, global_args, stages)


def kit_dockerfiles() -> dict[str, Dockerfile]:
    """Dockerfile of each kit image, by its path relative to the repository."""
    paths = sorted({s["build"]["dockerfile"] for s in kit_services().values()})
    return {p: dockerfile(ROOT / p) for p in paths}


def dockerfile_of(service: dict[str, Any]) -> Dockerfile:
    return dockerfile(ROOT / service["build"]["dockerfile"])


def excluded_by(image: Dockerfile) -> re.Pattern[str]:
    """The lock lines the image's venv stage leaves out (its ``grep -v -i -E "^(EXCLUDE)=="``)."""
    stage = image.stage("venv")
    exclude = image.arg_default("EXCLUDE", stage)
    assert exclude, f"{image.path}: the venv stage has no ARG EXCLUDE"
    return re.compile(rf"^({exclude})==", re.IGNORECASE)


# -- queue/pom.xml and queue/server.properties: the JVM engines


@functools.cache
def pom_properties() -> dict[str, str]:
    """``<properties>`` of queue/pom.xml (kafka.version, spark.version, jars.dir, ...)."""
    root = ET.parse(POM_FILE).getroot()
    props = root.find("m:properties", POM_NS)
    assert props is not None, "queue/pom.xml has no <properties>"
    return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in props}


@dataclass(frozen=True)
class PomExecution:
    id: str
    goals: tuple[str, ...]
    output_directory: str
    artifacts: tuple[tuple[str, str, str], ...]  # (groupId, artifactId, version as written)


def pom_execution(execution_id: str) -> PomExecution:
    """An execution of queue/pom.xml's maven-dependency-plugin (``mvn dependency:GOAL@ID``)."""
    root = ET.parse(POM_FILE).getroot()
    for plugin in root.iterfind("m:build/m:plugins/m:plugin", POM_NS):
        if plugin.findtext("m:artifactId", "", POM_NS) != "maven-dependency-plugin":
            continue
        for execution in plugin.iterfind("m:executions/m:execution", POM_NS):
            if execution.findtext("m:id", "", POM_NS) != execution_id:
                continue
            config = execution.find("m:configuration", POM_NS)
            assert config is not None, f"queue/pom.xml: execution {execution_id} has no configuration"
            items = tuple(
                (item.findtext("m:groupId", "", POM_NS), item.findtext("m:artifactId", "", POM_NS),
                 item.findtext("m:version", "", POM_NS))
                for item in config.iterfind("m:artifactItems/m:artifactItem", POM_NS))
            goals = tuple(g.text or "" for g in execution.iterfind("m:goals/m:goal", POM_NS))
            return PomExecution(execution_id, goals,
                                config.findtext("m:outputDirectory", "", POM_NS), items)
    raise AssertionError(f"queue/pom.xml has no maven-dependency-plugin execution {execution_id!r}")


def interpolate(value: str, properties: dict[str, str]) -> str:
    """``${name}`` references of a POM value replaced by the properties given."""
    return re.sub(r"\$\{([\w.-]+)\}", lambda m: properties.get(m.group(1), m.group(0)), value)


@functools.cache
def server_properties() -> dict[str, str]:
    """queue/server.properties, the embedded broker's settings (``key=value`` lines)."""
    result = {}
    for line in SERVER_PROPERTIES.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"queue/server.properties: {line!r} is not key=value"
        result[key.strip()] = value.strip()
    return result


def kafka_env_name(prop: str) -> str:
    """The apache/kafka image's variable for a broker property: ``log.segment.bytes`` ->
    ``KAFKA_LOG_SEGMENT_BYTES`` (dots become underscores; the image escapes a property's own
    ``_`` and ``-`` differently, so only names without them are mapped here)."""
    assert re.fullmatch(r"[a-z0-9.]+", prop), f"{prop}: teach kafka_env_name about _ and -"
    return "KAFKA_" + prop.upper().replace(".", "_")


# -- requirements.lock and installed metadata


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def lock() -> dict[str, tuple[str, str]]:
    """Canonical name -> (name as written, version), from requirements.lock."""
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.lock: {line!r} is not pinned with =="
        pins[canonical(name)] = (name.strip(), version.strip())
    return pins


def installed_packages(image: Dockerfile) -> dict[str, str]:
    """Canonical name -> version of what the image's venv stage installs from the lock."""
    pattern = excluded_by(image)
    return {key: version for key, (name, version) in lock().items()
            if not pattern.match(f"{name}=={version}")}


def requirement_problems(installed: dict[str, str]) -> list[str]:
    """What ``pip check`` would report for these distributions (metadata of this venv)."""
    from packaging.requirements import Requirement

    env = {"python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "platform_machine": "x86_64",
           "extra": ""}
    problems = []
    for name, version in sorted(installed.items()):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is pinned but not installed in this environment")
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            have = installed.get(canonical(req.name))
            if have is None:
                problems.append(f"{name} requires {req}, which the image leaves out")
            elif not req.specifier.contains(have, prereleases=True):
                problems.append(f"{name} requires {req}, the lock has {have}")
    return problems


@functools.cache
def import_providers() -> dict[str, list[str]]:
    return {k: list(v) for k, v in metadata.packages_distributions().items()}


@functools.cache
def script_providers() -> dict[str, str]:
    """Executable name -> canonical distribution that installs it into the venv's bin/."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        for f in dist.files or []:
            parts = Path(str(f)).parts
            if len(parts) >= 2 and parts[-2] == "bin" and parts[0] == "..":
                found.setdefault(parts[-1], canonical(dist.metadata["Name"]))
    return found


# -- the kit's code: imports followed statically


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.iter_child_nodes(tree):
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        yield from _imports(node)


@dataclass
class Closure:
    modules: set[str] = field(default_factory=set)  # first-party modules reached
    third_party: dict[str, set[str]] = field(default_factory=dict)  # top-level name -> importers

    def source(self, skip: tuple[str, ...] = ("common.settings",)) -> str:
        """The code of the modules reached (``skip``: modules that define, not use, settings)."""
        return "\n".join(p.read_text() for m in sorted(self.modules)
                         if m not in skip and (p := module_file(m)))

    def reaches(self, module: str) -> bool:
        return any(m == module or m.startswith(module + ".") for m in self.modules)


def closure(entries: Iterable[str]) -> Closure:
    """First-party modules and third-party imports reachable from ``entries`` (any depth,
    function-level imports included, ``if TYPE_CHECKING:`` blocks excluded)."""
    result = Closure()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in result.modules:
            continue
        path = module_file(module)
        if path is None:
            continue
        result.modules.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        for name in _imports(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            if top in FIRST_PARTY:
                if module_file(name) is not None:
                    todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                result.third_party.setdefault(top, set()).add(module)
    return result


def entry_point(args: list[str]) -> tuple[str | None, list[str]]:
    """(executable's distribution or None for python, first-party entry modules) of a command."""
    exe = args[0]
    if exe == "python" and option(args, "-m"):
        module = str(option(args, "-m"))
        path = module_file(module)
        if path is not None and path.name == "__init__.py":  # python -m package
            module += ".__main__"
        return None, [module]
    if exe == "spark-submit":
        scripts = [a for a in args if a.endswith(".py")]
        return "pyspark", [s.removesuffix(".py").replace("/", ".") for s in scripts]
    if exe == "locust":
        return "locust", [str(option(args, "-f")).removesuffix(".py").replace("/", ".")]
    if exe == "gunicorn":
        apps = [a for a in args if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", a)]
        return "gunicorn", [a.split(":")[0] for a in apps]
    raise AssertionError(f"unknown command {args}: teach tests/compose/model.py about it")


def service_closure(service: dict[str, Any]) -> Closure:
    _, modules = entry_point(command(service))
    return closure(modules)


# -- .dockerignore


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line of .dockerignore, in order."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line[1:] if negated else line
        glob = glob.strip("/")
        regex = ""
        i = 0
        while i < len(glob):
            if glob.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif glob.startswith("**", i):
                regex += ".*"
                i += 2
            elif glob[i] == "*":
                regex += "[^/]*"
                i += 1
            elif glob[i] == "?":
                regex += "[^/]"
                i += 1
            elif glob[i] == "[":
                end = glob.index("]", i)
                regex += glob[i:end + 1]
                i = end + 1
            else:
                regex += re.escape(glob[i])
                i += 1
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def ignored_by_docker(path: str) -> bool:
    """Whether the build context leaves ``path`` out (the last matching pattern wins; a
    pattern matching a parent folder matches its contents)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, regex in dockerignore_patterns():
        if any(regex.match(c) for c in candidates):
            result = not negated
    return result
