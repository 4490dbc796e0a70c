"""The stages depend one way (README "Layout"): checked on every import of the source tree.

``input`` -> ``buffer`` (Kafka); ``processing`` -> ``buffer``, ``storage``; ``display`` ->
``storage``, ``buffer``; the store knows neither Spark nor the web; results reach the display
through a topic, never an import. ``common`` is shared by all; of the stages it reads only the
topic definitions (and ``common/cli.py``, the entry points' helper, waits for the broker).
``stack`` (the supervisor) and ``bench`` start everything, so they may
import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("common", "buffer", "input", "processing", "storage", "display")
#: What each package may import of the others (a package, or one module of it).
ALLOWED: dict[str, set[str]] = {
    "common": {"buffer.topics"},
    "buffer": {"common"},
    "storage": {"common"},
    "input": {"common", "buffer"},
    "processing": {"common", "buffer", "storage"},
    "display": {"common", "buffer", "storage"},
}
#: Single modules with a wider reach: the entry points' helper waits for the broker.
EXCEPTIONS: dict[str, set[str]] = {"common/cli.py": {"buffer.kafka"}}
FIRST_PARTY = {*STAGES, "stack", "bench", "tests"}


def imports(package: str) -> list[tuple[str, str]]:
    """(file, imported module) for every first-party import of another package in ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in FIRST_PARTY and top != package:
                    found.append((str(path.relative_to(ROOT)), module))
    return found


def allowed(package: str, module: str) -> bool:
    return any(module == rule or module.startswith(rule + ".") or rule.startswith(module + ".")
               for rule in ALLOWED[package])


@pytest.mark.parametrize("package", STAGES)
def test_each_stage_imports_only_what_it_may(package: str) -> None:
    wrong = sorted({(path, module) for path, module in imports(package)
                    if not allowed(package, module)
                    and not any(module.startswith(rule) for rule in EXCEPTIONS.get(path, ()))})
    assert not wrong, f"{package} imports beyond {sorted(ALLOWED[package])}: {wrong}"


def test_the_rules_can_fail() -> None:
    assert not allowed("storage", "display.hub")
    assert not allowed("common", "buffer.kafka")
    assert allowed("common", "buffer.topics") and allowed("processing", "storage.base")
    assert any(module.startswith("buffer") for _, module in imports("input"))
