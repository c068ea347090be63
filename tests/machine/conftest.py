"""Shared by the machine tests: the documented JSON schema of `yoyu machine --json`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "machine.schema.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def machine_schema() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture
def validate_machine(machine_schema: Draft202012Validator) -> Callable[[Any], None]:
    """Validate what `--json` would print: the dict after a JSON round trip (tuples -> lists)."""

    def validate(machine_dict: Any) -> None:
        machine_schema.validate(json.loads(json.dumps(machine_dict)))

    return validate


@pytest.fixture
def fixture_text() -> Callable[[str], str]:
    def read(relative_path: str) -> str:
        return (FIXTURES / relative_path).read_text(encoding="utf-8")

    return read
