"""hadolint finds nothing in the kit's Dockerfiles; every rule ignored is justified in place
(a comment right above the ``# hadolint ignore=RULE`` line that starts ``# RULE:``)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.compose import model, tools

DOCKERFILES = sorted(p.relative_to(model.ROOT).as_posix()
                     for p in model.ROOT.glob("*/Dockerfile"))


def test_every_stage_has_a_dockerfile_and_compose_builds_them_all() -> None:
    assert {"input/Dockerfile", "processing/Dockerfile", "display/Dockerfile"} <= set(DOCKERFILES)
    assert set(model.kit_dockerfiles()) == set(DOCKERFILES)


@pytest.mark.parametrize("path", DOCKERFILES)
def test_hadolint_reports_nothing(path: str) -> None:
    result = subprocess.run([tools.hadolint(), "--no-color", path], cwd=model.ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES)
def test_every_ignored_rule_is_justified_on_the_comment_line_above(path: str) -> None:
    lines = (model.ROOT / path).read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"\s*#\s*hadolint\s+ignore=([\w,]+)", line)
        if not match:
            continue
        block = []  # the comment lines right above the pragma
        for above in reversed(lines[:number]):
            if not above.lstrip().startswith("#"):
                break
            block.append(above.strip())
        for rule in match.group(1).split(","):
            reasons = [c for c in block if c.startswith(f"# {rule}:") and len(c) > len(rule) + 20]
            assert reasons, (f"{path}:{number + 1}: explain `ignore={rule}` in the comment "
                             f"right above it ('# {rule}: why')")


def test_hadolint_does_report_a_bad_dockerfile() -> None:
    bad = "FROM python:latest\nRUN pip install requests\nUSER root\n"
    result = subprocess.run([tools.hadolint(), "--no-color", "-"], input=bad,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, result.stdout
