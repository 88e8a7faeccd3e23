"""Fixtures of the azure driver's tests: one Azurite for the session, a fresh container per use."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # azurite_server is imported by name under any --import-mode
    sys.path.insert(0, _HERE)

from azurite_server import Azurite, delete_container, require_azurite  # noqa: E402


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's blob service on a free loopback port, in memory, for the whole session."""
    require_azurite()
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh container name; the container (if a test made it) is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:20]}"
    yield name
    if "azurite" in request.fixturenames:
        delete_container(request.getfixturevalue("azurite"), name)
