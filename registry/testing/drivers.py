"""Building a storage driver by name, the way the registry does, for tests and tools.

Shared by the pytest plugin (which checks ``--registry-storage-driver`` up front) and the conformance
suite's configured test class, so both resolve a name and read a parameters file the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy

    from registry.storage.descriptor import DriverDescriptor
    from registry.storage.driver import StorageDriver

#: What the suite's configured test class uses when no ``--registry-storage-driver`` is given.
DEFAULT_DRIVER = "inmemory"


class DriverOptionsError(ValueError):
    """The parameters file is missing, unreadable or not a mapping."""


def load_driver_options(path: str | Path | None) -> dict[str, Any]:
    """Read a driver's parameters from a YAML file: the mapping that sits under ``storage.<driver>``
    in config.yml. No file, an empty file or ``null`` mean no parameters (``{}``)."""
    if path is None:
        return {}
    import yaml

    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise DriverOptionsError(f"cannot read storage driver parameters {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DriverOptionsError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise DriverOptionsError(
            f"{path} must hold a mapping of driver parameters (what goes under storage.<driver>), "
            f"not a {type(data).__name__}"
        )
    return dict(data)


def driver_descriptors(pm: pluggy.PluginManager | None = None) -> dict[str, DriverDescriptor]:
    """Every installed storage driver by name, found through the plugin manager like the app does."""
    from registry.plugins import by_name, create_plugin_manager

    return by_name(pm or create_plugin_manager(), "registry_storage_drivers")


def create_driver(
    name: str, options: Mapping[str, Any] | None = None, pm: pluggy.PluginManager | None = None
) -> StorageDriver:
    """Build the driver called ``name`` from ``options`` after validating them against its schema.

    Raises :class:`LookupError` naming the installed drivers when ``name`` is unknown, and
    :class:`jsonschema.ValidationError` when the options do not fit the driver's schema.
    """
    import jsonschema

    descriptors = driver_descriptors(pm)
    if name not in descriptors:
        known = ", ".join(sorted(descriptors)) or "none"
        raise LookupError(f"no storage driver named {name!r} is installed (installed: {known})")
    descriptor = descriptors[name]
    params = dict(options or {})
    jsonschema.validate(params, dict(descriptor.schema))
    return descriptor.factory(params)


__all__ = ["DEFAULT_DRIVER", "DriverOptionsError", "create_driver", "driver_descriptors", "load_driver_options"]
