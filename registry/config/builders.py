"""Building what the configuration names: the storage driver and the access controller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.config.model import ConfigError
from registry.config.schema import declared
from registry.config.settings import auth_backend_name, auth_params, storage_driver_name, storage_params

if TYPE_CHECKING:
    import pluggy

    from registry.auth import AccessController
    from registry.storage.checked import CheckedDriver
    from registry.storage.descriptor import DriverDescriptor


def _descriptor(config: Mapping[str, Any], pm: pluggy.PluginManager) -> DriverDescriptor:
    name = storage_driver_name(config)
    drivers = declared(pm, "registry_storage_drivers")
    if name not in drivers:
        installed = ", ".join(sorted(drivers)) or "none"
        raise ConfigError([f"storage: unknown driver {name!r} (installed: {installed})"])
    return drivers[name]


def build_storage(config: Mapping[str, Any], pm: pluggy.PluginManager) -> CheckedDriver:
    """Create the configured storage driver, wrapped in :func:`registry.storage.checked.checked`.

    The driver's factory gets the parameters as configured and fills in its own defaults.

    :raises ConfigError: when the driver is not installed or its factory fails.
    """
    from registry.storage.checked import checked

    descriptor = _descriptor(config, pm)
    try:
        driver = descriptor.factory(storage_params(config))
    except ConfigError:
        raise
    except Exception as exc:  # a missing SDK, unreachable endpoint...: refuse to start, saying why
        raise ConfigError([f"storage.{descriptor.name}: the driver failed to start: {exc}"]) from exc
    from registry.plugins import options_of
    from registry.storage.middleware import wrap

    return checked(wrap(driver, options_of(config, "middleware").get("storage"), pm))


def describe_storage(config: Mapping[str, Any], pm: pluggy.PluginManager) -> str:
    """One line for the start-up log saying where the data goes (``storage: filesystem in /srv``):
    the driver's own :attr:`~registry.storage.descriptor.DriverDescriptor.describe`, else its name."""
    descriptor = _descriptor(config, pm)
    if descriptor.describe is None:
        return f"storage: {descriptor.name}"
    return f"storage: {descriptor.describe(storage_params(config))}"


def build_access_controller(config: Mapping[str, Any], pm: pluggy.PluginManager) -> AccessController | None:
    """Create the configured access controller, or return ``None`` for anonymous access.

    :raises ConfigError: when the backend is not installed or its factory fails.
    """
    name = auth_backend_name(config)
    if name is None:
        return None
    backends = declared(pm, "registry_auth_backends")
    if name not in backends:
        installed = ", ".join(sorted(backends)) or "none"
        raise ConfigError([f"auth: unknown access controller {name!r} (installed: {installed})"])
    try:
        return backends[name].factory(auth_params(config))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError([f"auth.{name}: the access controller failed to start: {exc}"]) from exc
