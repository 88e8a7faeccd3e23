"""Declares the ``filesystem`` storage driver to the registry (entry point ``filesystem``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.config import default_data_dir
from registry.storage.descriptor import DriverDescriptor
from registry_filesystem.driver import FilesystemDriver

#: The JSON schema of ``storage.filesystem``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def with_defaults(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` with this driver's defaults filled in: without a ``rootdirectory``, the registry's
    data directory (:func:`registry.config.default_data_dir`), which the user running ``registry
    serve`` can write, unlike Distribution's ``/var/lib/registry``."""
    out = dict(params or {})
    if not out.get("rootdirectory"):
        out["rootdirectory"] = str(default_data_dir(os.environ))
    return out


def create_driver(params: Mapping[str, Any] | None) -> FilesystemDriver:
    """The descriptor's factory: ``params`` is the (validated) ``storage.filesystem`` mapping."""
    return FilesystemDriver.from_parameters(with_defaults(params))


def describe(params: Mapping[str, Any] | None) -> str:
    """Where the data goes, for the start-up log: with the built-in defaults the user did not choose it."""
    return f"filesystem in {os.path.abspath(with_defaults(params)['rootdirectory'])}"


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="filesystem",
            factory=create_driver,
            schema=SCHEMA,
            description="Files under a root directory, in CNCF Distribution's layout.",
            describe=describe,
        )
    ]
