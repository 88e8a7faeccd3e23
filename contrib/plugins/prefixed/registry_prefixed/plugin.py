"""Declares the ``prefixed`` storage driver (entry point ``prefixed`` in group ``registry.plugins``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry_prefixed.driver import PrefixedDriver

#: The JSON schema of ``storage.prefixed``, shipped in the package.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def create_driver(params: Mapping[str, Any]) -> PrefixedDriver:
    """Build the inner driver by name, through the plugin manager, as the registry builds drivers.

    The inner options are checked against the inner driver's own schema here: the registry's config
    schema can only say they are a mapping, since which driver they belong to is itself config.
    """
    import jsonschema

    from registry.plugins import by_name, create_plugin_manager

    name, prefix, options = params["driver"], params["prefix"], dict(params.get("options") or {})
    drivers = by_name(create_plugin_manager(), "registry_storage_drivers")
    if name not in drivers:
        have = ", ".join(sorted(drivers))
        raise ValueError(f"storage.prefixed.driver: no storage driver named {name!r} (installed: {have})")
    jsonschema.validate(options, dict(drivers[name].schema))
    return PrefixedDriver(drivers[name].factory(options), prefix)


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="prefixed",
            factory=create_driver,
            schema=SCHEMA,
            description="Everything under a prefix inside another storage driver (an example plugin).",
        )
    ]
