"""The README says what the code does: demo table, settings, quick start."""

from __future__ import annotations

import re
from pathlib import Path

from common import catalogue

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}


def test_readme_demo_table_matches_the_catalogue() -> None:
    rows = re.findall(r"^\| (/demo\d+) \| (.+?) \| (.+?) \|$", README, re.M)
    assert [r[0] for r in rows] == [d.route for d in catalogue.DEMOS]
    for (route, shows, path), demo in zip(rows, catalogue.DEMOS, strict=True):
        assert shows == demo.shows, route
        assert path == demo.path_text, route


def test_quick_start_is_two_commands_and_ci_runs_the_readme_test_command() -> None:
    block = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_named_in_the_readme_exists() -> None:
    from common import settings

    names = {settings.env_name(f) for f in settings._FIELDS}
    for name in re.findall(r"`([A-Z][A-Z_]{3,})`", "\n".join([README, *DOCS.values()])):
        if name.endswith("_S") or name in names:
            continue
        assert name in names, name


def test_the_readme_stays_short_and_links_every_doc() -> None:
    """The README is what a newcomer reads first; reference and history live in docs/."""
    assert len(README.splitlines()) - len(catalogue.mermaid().splitlines()) <= 250
    for name in DOCS:
        assert f"(docs/{name})" in README, f"docs/{name} is not linked from the README"


def test_relative_links_in_the_docs_point_at_files() -> None:
    for name, text in {"README.md": README, **{f"docs/{n}": t for n, t in DOCS.items()}}.items():
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (base / target).exists(), f"{name} links to {target}, which does not exist"


def test_the_readme_diagram_is_the_catalogues() -> None:
    block = README.split("```mermaid\n", 1)[1].split("```", 1)[0].strip()
    assert block == catalogue.mermaid(), "run python -m common.catalogue and paste its output"
    edges = [line.strip().split(" --> ") for line in block.splitlines() if " --> " in line]
    labels = dict(re.findall(r'^ +(\w+)\["(.*)"\]$', block, re.M))
    for d in catalogue.DEMOS:  # every page is on it, reached from a source
        [page] = [i for i, label in labels.items() if label == f"{d.route} {d.title}"]
        reached, frontier = set(), {page}
        while frontier:
            frontier = {a for a, b in edges if b in frontier} - reached
            reached |= frontier
        assert any(i.startswith("source_") for i in reached), d.route
