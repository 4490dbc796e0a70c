"""The images: pinned bases, what each image installs and copies, non-root users, small build
contexts. (The Spark version and connector of the processing image: test_engine_versions.py.)"""

from __future__ import annotations

import re

import pytest

from tests.compose import model

SERVICES = model.services()
DOCKERFILES = model.kit_dockerfiles()
PINNED = re.compile(r"^[\w./-]+:(?P<tag>\d+\.\d+\.\d+[\w.-]*)(@sha256:[0-9a-f]{64})?$")
#: Third-party imports an image's code may reach without the image installing them.
NOT_NEEDED: dict[str, dict[str, str]] = {}
#: Settings a service's code reaches (imports followed statically) but never reads in its
#: container, with why: their default paths need not exist in the image.
UNREAD_SETTINGS: dict[tuple[str, str], str] = {
    ("sources", "jars_dir"): "input.nginx_demo.site imports buffer.broker for free_port() only; "
                             "the compose stack's broker is the kafka service",
}


def test_every_pulled_image_and_base_image_is_pinned_to_a_full_version() -> None:
    for name, service in SERVICES.items():
        if "build" not in service:
            assert PINNED.match(service["image"]), f"{name}: pin {service['image']} to x.y.z"
    for path, image in DOCKERFILES.items():
        stages = {s.name for s in image.stages if s.name}
        for stage in image.stages:
            if stage.image not in stages:
                assert PINNED.match(stage.image), f"{path}: FROM {stage.image} is not pinned"
        for _, rest in (i for s in image.stages for i in s.instructions if i[0] == "COPY"):
            source = re.search(r"--from=(\S+)", rest)
            if source and source.group(1) not in stages:
                assert PINNED.match(source.group(1)), f"{path}: COPY --from={source.group(1)}"


def test_the_kits_images_are_built_never_pulled() -> None:
    for name, service in model.kit_services().items():
        assert service.get("pull_policy") == "build", f"{name}: a registry image could stand in"
        assert "/" not in service["image"].split(":")[0], f"{name}: no registry namespace"


def test_the_python_images_share_one_base_matching_the_project() -> None:
    bases = {s.image for image in DOCKERFILES.values() for s in image.stages
             if s.image.startswith("python:")}
    assert len(bases) == 1, f"one Python base for every image: {bases}"
    minor = re.match(r"python:(3\.\d+)\.", bases.pop())
    assert minor and minor.group(1) == "3.11"  # requires-python >= 3.11; SPARK_HOME below
    processing = DOCKERFILES["processing/Dockerfile"]
    env = " ".join(rest for kw, rest in processing.final.instructions if kw == "ENV")
    assert f"/opt/venv/lib/python{minor.group(1)}/site-packages/pyspark" in env


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_dockerfile_conventions(path: str) -> None:
    image = DOCKERFILES[path]
    assert len(image.stages) >= 2, f"{path}: build in a separate stage (multi-stage)"
    users = image.final.args("USER")
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), (
        f"{path}: the image must end as a numeric non-root USER, got {users}")
    for stage in image.stages:
        for keyword, rest in stage.instructions:
            if keyword != "RUN":
                continue
            if "pip install" in rest:
                assert "--no-cache-dir" in rest, f"{path}: pip install without --no-cache-dir"
            if "apt-get install" in rest:
                assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest
            if "npm " in rest:
                assert "npm ci" in rest and "npm install" not in rest, f"{path}: use npm ci"
    copied = " ".join(image.final.args("COPY"))
    assert "queue/topics.toml" in copied, f"{path}: buffer.topics reads queue/topics.toml"


@pytest.mark.parametrize("name", sorted(model.kit_services()))
def test_each_service_image_installs_and_copies_what_its_code_imports(name: str) -> None:
    service = SERVICES[name]
    image = model.dockerfile_of(service)
    installed = model.installed_packages(image)
    executable, _ = model.entry_point(model.command(service))
    found = model.service_closure(service)
    missing = []
    provider = model.script_providers().get(model.command(service)[0])
    assert provider in (None, executable), f"{name}: {model.command(service)[0]} comes from {provider}"
    if executable is not None and model.canonical(executable) not in installed:
        missing.append(f"{executable} (runs the command; pinned in requirements.lock?)")
    providers = model.import_providers()
    for top, importers in sorted(found.third_party.items()):
        if top in NOT_NEEDED.get(image.path.as_posix(), {}):
            continue
        dists = providers.get(top)
        if not dists:
            missing.append(f"{top} (imported by {sorted(importers)}): no installed distribution "
                           "provides it; pin it in requirements.lock")
        elif not any(model.canonical(d) in installed for d in dists):
            missing.append(f"{top} (imported by {sorted(importers)}), distribution {dists}")
    assert not missing, f"{name} ({image.path.name} in {image.path.parent.name}/) lacks: {missing}"
    copied = " ".join(image.final.args("COPY"))
    for package in sorted({m.split(".")[0] for m in found.modules}):
        assert f"{package}/ {package}/" in copied, f"{name}: the image does not copy {package}/"


def test_files_that_settings_find_in_the_source_tree_are_in_the_images() -> None:
    from pathlib import Path

    from common import settings as settings_module

    checked = 0
    for field, spec in settings_module._FIELDS.items():
        default = spec.metadata["default"]
        if not default or not Path(default).is_absolute():
            continue
        try:
            top = Path(default).relative_to(model.ROOT).parts[0]  # e.g. CENSUS_DIR -> input/
        except ValueError:
            continue
        variable = settings_module.env_name(field)
        for name, service in model.kit_services().items():
            if (name, field) in UNREAD_SETTINGS:
                continue
            if not re.search(rf"\.{field}\b", model.service_closure(service).source()):
                continue
            image = model.dockerfile_of(service).final
            # The service or its image may point the setting elsewhere (JARS_DIR=/opt/jars):
            # then something must be copied there; else the default's folder must be copied.
            value = model.environment(service).get(variable) or image.env().get(variable)
            if value:
                inside = [dest for _, _, dest in image.copies()
                          if dest.rstrip("/") == value.rstrip("/")
                          or dest.startswith(value.rstrip("/") + "/")]
                assert inside, f"{name}: {variable}={value}, where its image copies nothing"
            else:
                copied = " ".join(image.args("COPY"))
                assert f"{top}/ {top}/" in copied, f"{name} reads {field} under {top}/"
            checked += 1
    assert checked, "no setting points into the source tree any more: drop this test"
    for (name, field), why in UNREAD_SETTINGS.items():
        assert name in model.kit_services() and field in settings_module._FIELDS, (name, field)
        assert re.search(rf"\.{field}\b", model.service_closure(SERVICES[name]).source()), (
            f"{name} no longer reaches {field}: drop it from UNREAD_SETTINGS ({why})")


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_each_image_installs_a_consistent_set_of_pinned_packages(path: str) -> None:
    problems = model.requirement_problems(model.installed_packages(DOCKERFILES[path]))
    assert not problems, f"{path}: pip check would fail in the image:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_no_image_installs_the_dev_tools(path: str) -> None:
    installed = model.installed_packages(DOCKERFILES[path])
    for tool in ("mypy", "ruff", "playwright", "hypothesis"):
        if tool in model.lock():
            assert tool not in installed, f"{path} installs {tool}"


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_each_package_an_image_leaves_out_is_in_the_lock(path: str) -> None:
    # A name that left requirements.lock would only mislead the next reader of EXCLUDE.
    image = DOCKERFILES[path]
    exclude = image.arg_default("EXCLUDE", image.stage("venv")) or ""
    stale = [n for n in exclude.split("|") if model.canonical(n) not in model.lock()]
    assert not stale, f"{path}: EXCLUDE names packages requirements.lock does not pin: {stale}"


def test_the_display_image_ships_every_front_end_file_the_server_serves() -> None:
    from display.server import VENDOR_FILES

    image = DOCKERFILES["display/Dockerfile"]
    copies = image.final.args("COPY")
    for relative in VENDOR_FILES.values():
        package = relative.split("/")[0]
        assert any(f"--from=frontend /build/node_modules/{package} display/node_modules/{package}"
                   in c for c in copies), f"display image lacks node_modules/{package}"
    run = " ".join(image.stage("frontend").args("RUN"))
    assert "npm ci" in run and "package-lock.json" in " ".join(image.stage("frontend").args("COPY"))


def test_the_build_context_leaves_out_secrets_environments_and_data() -> None:
    for path in (".env", ".venv/bin/python", "data/store.sqlite3", "display/node_modules/d3/x.js",
                 "tests/conftest.py", ".git/config", "artifacts/x.png",
                 "common/__pycache__/topics.cpython-311.pyc", "input/.env"):
        assert model.ignored_by_docker(path), f"{path} would be sent to the Docker build"
    for path in ("requirements.lock", "queue/topics.toml", "queue/pom.xml", "buffer/topics.py",
                 "input/data/census/population.json", "display/package-lock.json",
                 "display/static/js/kit.js", "processing/jobs.py", "storage/disk.py"):
        assert not model.ignored_by_docker(path), f"{path} is left out of the build context"
    for path, image in DOCKERFILES.items():
        for stage in image.stages:
            for source, paths, _ in stage.copies():
                for copied in paths if source is None else ():
                    assert not model.ignored_by_docker(copied), (
                        f"{path} copies {copied}, which .dockerignore leaves out of the context")


def test_queue_is_not_a_python_package() -> None:
    # It would shadow the standard library's queue module for everything run from the root.
    assert not list((model.ROOT / "queue").glob("*.py"))
