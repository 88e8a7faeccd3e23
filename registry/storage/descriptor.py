"""What a plugin returns from ``registry_storage_drivers``: a named driver factory and its schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from registry.storage.driver import StorageDriver


@dataclasses.dataclass(frozen=True)
class DriverDescriptor:
    """Declares one storage driver.

    ``name`` is the key under ``storage:`` in config.yml that selects the driver; ``factory`` is
    called with that key's mapping (``{}`` when the key has no value) and returns a driver;
    ``schema`` is the JSON schema of that mapping, composed into the config schema. The driver owns
    its defaults: the factory fills in what the mapping leaves out, and the core never names a
    parameter of a concrete driver.

    ``describe``, when given, is called with the same mapping and returns a short phrase for the
    start-up log saying where the data goes (``"filesystem in /srv/registry"``); without it the log
    says the driver's name.
    """

    name: str
    factory: Callable[[Mapping[str, Any]], StorageDriver]
    description: str = ""
    schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": ["object", "null"]})
    describe: Callable[[Mapping[str, Any]], str] | None = None
