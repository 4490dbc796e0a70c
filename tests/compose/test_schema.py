"""docker-compose.yml is a valid Compose file: the Compose Specification's JSON schema accepts it.

Two copies of the schema: the one vendored in tests/fixtures/compose/ (fixed, reviewed in git,
validated with the jsonschema library), and the one check-jsonschema ships (refreshed with each
release of the tool, run through its CLI the way a pre-commit hook would).
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from tests.compose import model, tools

SCHEMA_FILE = model.ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"


def _errors(document: dict[str, Any]) -> list[str]:
    try:
        import jsonschema
    except ImportError:
        pytest.fail(f"the jsonschema library is not installed: {tools.INSTALL_HINT}")
    schema = json.loads(SCHEMA_FILE.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))]


def test_compose_file_validates_against_the_vendored_compose_spec_schema() -> None:
    errors = _errors(model.compose())
    assert not errors, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(errors)


def test_the_schema_check_is_not_vacuous() -> None:
    broken = copy.deepcopy(model.compose())
    broken["services"]["kafka"]["restartt"] = "always"  # a typo Compose would reject
    broken["services"]["display"]["depends_on"]["kafka"]["condition"] = "service_ready"
    errors = _errors(broken)
    assert any("restartt" in e for e in errors), errors
    assert any("service_ready" in e for e in errors), errors


def test_check_jsonschema_accepts_the_compose_file_with_its_own_compose_spec_copy() -> None:
    result = subprocess.run(
        [tools.check_jsonschema(), "--builtin-schema", "vendor.compose-spec",
         str(model.COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_vendored_schema_carries_its_licence_and_source() -> None:
    folder = SCHEMA_FILE.parent
    assert "Apache License" in (folder / "LICENSE").read_text()
    notice = (folder / "README.md").read_text()
    assert "compose-spec/compose-spec" in notice and "check-jsonschema" in notice
