"""Storage middleware: wrappers named in config, composed around the driver (Distribution's
``middleware.storage``).

A plugin declares middleware with the ``registry_storage_middleware`` hook (a list of
:class:`MiddlewareDescriptor`); ``config.yml`` lists the ones to apply, innermost first::

    middleware:
      storage:
        - name: prefixed              # wraps the driver
          options:
            prefix: /tenant-a
        - name: another               # wraps prefixed
          disabled: true              # listed, not applied

A middleware is a :class:`~registry.storage.driver.StorageDriver` that holds another one;
:class:`StorageMiddleware` forwards every operation of the contract to it, so a middleware overrides
only what it changes and keeps working when the contract gains an operation.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from registry.storage.checked import checked
from registry.storage.driver import StorageDriver

if TYPE_CHECKING:
    import pluggy

#: The hook that declares middleware.
HOOK = "registry_storage_middleware"


@dataclasses.dataclass(frozen=True)
class MiddlewareDescriptor:
    """Declares one storage middleware.

    ``name`` is what a ``middleware.storage`` entry's ``name`` selects; ``factory`` is called with the
    driver to wrap and the entry's ``options`` (``{}`` when absent) and returns the wrapping driver;
    ``schema`` is the JSON schema of ``options``, composed into the config schema.
    """

    name: str
    factory: Callable[[StorageDriver, Mapping[str, Any]], StorageDriver]
    description: str = ""
    schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": ["object", "null"]})


class StorageMiddleware(StorageDriver):
    """A driver wrapping ``inner``: every public operation and attribute of the
    :class:`~registry.storage.driver.StorageDriver` contract not overridden here is forwarded to it.

    The forwarders are made from the contract itself, so an operation it gains later is forwarded
    too, instead of falling back to the base class's default and hiding what ``inner`` can do.
    """

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = type(self).name or inner.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    def __getattr__(self, attr: str) -> Any:
        # Only for what neither this class nor the contract has (a driver's own extras, an attribute a
        # driver sets in __init__): those reach the wrapped driver too, so wrapping hides nothing.
        inner = self.__dict__.get("inner")
        if inner is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(inner, attr)


def contract_members(cls: type) -> dict[str, bool]:
    """The public members of a contract class (``StorageDriver``, ``FileWriter``): name -> whether it is
    a method (else an attribute or property). ``name`` is a driver's own and not included."""
    members = {}
    for attr, value in vars(cls).items():
        if attr.startswith("_") or attr == "name":
            continue
        members[attr] = inspect.isfunction(value)
    return members


def _forwarding_method(attr: str) -> Callable[..., Any]:
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, attr)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = attr
    forward.__doc__ = f"Forwarded to the inner driver's ``{attr}``."
    return forward


def _forwarding_attribute(attr: str) -> property:
    return property(lambda self: getattr(self.inner, attr), doc=f"The inner driver's ``{attr}``.")


def add_forwarders(cls: type, contract: type) -> type:
    """Give ``cls`` (holding ``self.inner``) a forwarder for each member of ``contract`` it does not
    define itself (in its own body or a base below ``contract``), then recompute its abstract methods."""
    own = {attr for klass in cls.__mro__ if klass is not contract and issubclass(klass, contract)
           for attr in vars(klass)}
    for attr, is_method in contract_members(contract).items():
        if attr not in own:
            setattr(cls, attr, _forwarding_method(attr) if is_method else _forwarding_attribute(attr))
    return abc.update_abstractmethods(cls)


add_forwarders(StorageMiddleware, StorageDriver)


def descriptors(pm: pluggy.PluginManager) -> dict[str, MiddlewareDescriptor]:
    """Every middleware the plugins of ``pm`` declare, by name; a name declared twice is an error."""
    found: dict[str, MiddlewareDescriptor] = {}
    for result in getattr(pm.hook, HOOK)():
        for item in result or ():
            if item.name in found:
                raise _config_error(f"middleware.storage: two plugins declare middleware named {item.name!r}")
            found[item.name] = item
    return found


def options_schema(descriptor: MiddlewareDescriptor) -> dict[str, Any]:
    """``descriptor``'s options schema, checked, with a base URI of its own so that a ``$ref`` inside
    it keeps pointing into it once composed into the config schema."""
    import jsonschema

    schema = descriptor.schema
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        message = f"middleware.storage.{descriptor.name}: the plugin's schema is invalid: {exc.message}"
        raise _config_error(message) from None
    composed = copy.deepcopy(dict(schema))
    composed.setdefault("$id", f"https://registry.invalid/schemas/config/middleware.storage.{descriptor.name}.json")
    return composed


def compose_schema(schema: dict[str, Any], pm: pluggy.PluginManager) -> None:
    """Put the installed middleware into ``schema`` (the config schema, changed in place): an entry of
    ``middleware.storage`` must name one, and its ``options`` must fit that middleware's schema."""
    found = descriptors(pm)
    entry = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"enum": sorted(found), "description": "an installed storage middleware"},
            "disabled": {"type": "boolean", "description": "listed, but not applied"},
            "options": {"type": ["object", "null"], "description": "the middleware's options, per its schema"},
        },
        "allOf": [_when_named(name, options_schema(d)) for name, d in sorted(found.items())],
    }
    middleware = schema.setdefault("properties", {}).setdefault("middleware", {"type": "object"})
    middleware.setdefault("properties", {})["storage"] = {
        "description": "Wrappers applied around the storage driver, innermost first.",
        "type": ["array", "null"],
        "items": entry,
    }


def _when_named(name: str, options: dict[str, Any]) -> dict[str, Any]:
    import jsonschema

    then: dict[str, Any] = {"properties": {"options": options}}
    # The factory gets {} for absent options: when {} does not fit, the options must be written out.
    if not jsonschema.Draft202012Validator(options).is_valid({}):
        then["required"] = ["options"]
    return {"if": {"properties": {"name": {"const": name}}}, "then": then}


def wrap(driver: StorageDriver, entries: Sequence[Mapping[str, Any]] | None, pm: pluggy.PluginManager) -> StorageDriver:
    """Compose the ``middleware.storage`` ``entries`` around ``driver``, in order (the first wraps the
    driver, the last is outermost), with the middleware the plugins of ``pm`` declare.

    Each middleware receives the driver below it wrapped in :func:`registry.storage.checked.checked`,
    so it sees valid paths and normalized errors like the core does. Entries with ``disabled: true``
    are skipped. Returns ``driver`` itself when no entry applies.

    :raises registry.config.ConfigError: for an unknown name (listing the installed ones), options
        that do not fit the middleware's schema, or a factory that fails.
    """
    active = [(i, e) for i, e in enumerate(entries or ()) if not (isinstance(e, Mapping) and e.get("disabled"))]
    if not active:
        return driver
    import jsonschema

    found = descriptors(pm)
    for i, entry in active:
        where = f"middleware.storage[{i}]"
        name = entry.get("name") if isinstance(entry, Mapping) else None
        descriptor = found.get(name) if isinstance(name, str) else None
        if descriptor is None:
            installed = ", ".join(sorted(found)) or "none"
            raise _config_error(f"{where}: unknown storage middleware {name!r} (installed: {installed})")
        options = dict(entry.get("options") or {})
        problems = [e.message for e in jsonschema.Draft202012Validator(options_schema(descriptor)).iter_errors(options)]
        if problems:
            raise _config_error([f"{where}.options: {p}" for p in problems])
        try:
            driver = descriptor.factory(checked(driver), options)
        except Exception as exc:
            raise _config_error(f"{where}: storage middleware {name!r} failed to start: {exc}") from exc
    return driver


def _config_error(errors: str | list[str]) -> Exception:
    # The builder's error class; imported here, on the error path, so that storage does not load
    # the configuration machinery to compose drivers.
    from registry.config import ConfigError

    return ConfigError(errors)


__all__ = [
    "MiddlewareDescriptor",
    "StorageMiddleware",
    "add_forwarders",
    "compose_schema",
    "contract_members",
    "descriptors",
    "options_schema",
    "wrap",
]
