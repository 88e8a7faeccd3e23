"""Declares the ``filesystem`` storage driver to the registry (entry point ``filesystem``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry_filesystem.driver import FilesystemDriver

#: The JSON schema of ``storage.filesystem``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def create_driver(params: Mapping[str, Any] | None) -> FilesystemDriver:
    """The descriptor's factory: ``params`` is the (validated) ``storage.filesystem`` mapping."""
    return FilesystemDriver.from_parameters(params)


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="filesystem",
            factory=create_driver,
            schema=SCHEMA,
            description="Files under a root directory, in CNCF Distribution's layout.",
        )
    ]
