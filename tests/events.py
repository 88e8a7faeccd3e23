"""Events seen by the tests, each validated against ``schemas/event.json``.

The ``events`` fixture (tests/conftest.py) registers an :class:`EventRecorder` in every app that
``make_client`` builds and fails the test at teardown if any event was invalid: a plugin's
exception is swallowed by the core, so the recorder keeps the errors instead of raising.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from registry import hookimpl

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "event.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def event_errors(event: Mapping[str, Any]) -> list[str]:
    """Every way ``event`` breaks the schema (empty when valid)."""
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}" for e in VALIDATOR.iter_errors(event))


class EventRecorder:
    """A plugin keeping every event it hears, and the schema errors of the invalid ones."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.invalid: list[tuple[dict[str, Any], list[str]]] = []

    @hookimpl
    def registry_event(self, event: Mapping[str, Any]) -> None:
        copy = json.loads(json.dumps(event))  # what a webhook would send: JSON, nothing else
        errors = event_errors(copy)
        if errors:
            self.invalid.append((copy, errors))
        self.events.append(copy)

    def of(self, action: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["action"] == action]

    def assert_valid(self) -> None:
        assert not self.invalid, f"events invalid against {SCHEMA_PATH.name}: {self.invalid[:3]}"
