"""Plugin manager factory, entry-point loading and isolated hook calls.

There is no global plugin manager: :func:`create_plugin_manager` builds a fresh one, and the app, the
CLI and every test use their own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

import pluggy

from registry import PROJECT, hookspecs

log = logging.getLogger(__name__)

#: The one entry-point group through which built-in and third-party plugins register.
ENTRY_POINT_GROUP = "registry.plugins"


def create_plugin_manager(*, load_entry_points: bool = True, plugins: Iterable[object] = ()) -> pluggy.PluginManager:
    """Return a new plugin manager with the hook specs added.

    :param load_entry_points: load every plugin of the ``registry.plugins`` entry-point group
        (through stevedore, so a broken plugin is logged and skipped instead of stopping the rest).
    :param plugins: extra plugin objects (modules or instances) to register, e.g. from tests.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        _load_entry_points(pm)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from stevedore import ExtensionManager

    def failed(manager: Any, entry_point: Any, exc: BaseException) -> None:
        log.warning("plugin %s (%s) failed to load: %s", entry_point.name, entry_point.value, exc)

    extensions = ExtensionManager(
        namespace=ENTRY_POINT_GROUP, invoke_on_load=False, on_load_failure_callback=failed
    )
    for ext in extensions:
        if pm.is_registered(ext.plugin) or pm.has_plugin(ext.name):
            continue
        pm.register(ext.plugin, name=ext.name)
        dist = ext.entry_point.dist
        if dist is not None:
            pm._plugin_distinfo.append((ext.plugin, pluggy._manager.DistFacade(dist)))  # type: ignore[attr-defined]


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of ``hook_name`` on its own, logging and swallowing failures.

    pluggy stops a hook call at the first exception; events and reports must reach every plugin.
    """
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            args = [kwargs[name] for name in impl.argnames]
            impl.function(*args)
        except Exception:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)


def each_caller(pm: pluggy.PluginManager, hook_name: str) -> Callable[..., None] | None:
    """A function calling every implementation of ``hook_name`` on its own (as :func:`call_each`),
    with the implementations looked up now; ``None`` when there are none, so that a hot path can
    skip the work of building the arguments (the storage wrapper's timing, for one)."""
    hook = getattr(pm.hook, hook_name)
    impls = [(impl.plugin_name, impl.function, impl.argnames) for impl in reversed(hook.get_hookimpls())]
    if not impls:
        return None

    def call(**kwargs: Any) -> None:
        for plugin_name, function, argnames in impls:
            try:
                function(*[kwargs[name] for name in argnames])
            except Exception:
                log.exception("plugin %s failed in %s", plugin_name, hook_name)

    return call


def collect(pm: pluggy.PluginManager, hook_name: str, *, isolated: bool = False) -> list[Any]:
    """Flatten the list results of a declaration hook (``registry_storage_drivers``...).

    :param isolated: call each implementation on its own, logging and skipping one that raises
        (for optional features: routes, health checks), instead of letting the error propagate.
    """
    if not isolated:
        results = getattr(pm.hook, hook_name)()
    else:
        results = []
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            try:
                results.append(impl.function())
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
    items: list[Any] = []
    for result in results:
        if result:
            items.extend(result)
    return items


def by_name(pm: pluggy.PluginManager, hook_name: str) -> dict[str, Any]:
    """Index declared descriptors by name; a name declared twice is an error."""
    found: dict[str, Any] = {}
    for item in collect(pm, hook_name):
        if item.name in found:
            raise ValueError(f"two plugins declare {hook_name[len('registry_'):]} named {item.name!r}")
        found[item.name] = item
    return found


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, for ``registry plugins``."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    drivers: tuple[str, ...]
    auth: tuple[str, ...]
    #: What each declared storage driver, access controller and storage middleware says it is
    #: (its descriptor's ``description``), by name.
    descriptions: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        kinds = []
        if self.drivers:
            kinds.append("storage")
        if "registry_storage_middleware" in self.hooks:
            kinds.append("storage-middleware")
        if self.auth:
            kinds.append("auth")
        if "registry_event" in self.hooks:
            kinds.append("notification")
        if {"registry_report_exception", "registry_request_finished", "registry_storage_call"} & set(self.hooks):
            kinds.append("reporting")
        if "registry_health_checks" in self.hooks:
            kinds.append("health")
        if {"registry_routes", "registry_wsgi_middleware"} & set(self.hooks):
            kinds.append("web")
        return ",".join(kinds) or "other"


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin: distribution, version, hooks and declared drivers."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        hooks = tuple(sorted(impl.name for impl in pm.get_hookcallers(plugin) or ()))
        drivers = _declared(plugin, "registry_storage_drivers")
        auth = _declared(plugin, "registry_auth_backends")
        dist = dists.get(id(plugin))
        dist_name = dist.project_name if dist is not None else _module_dist(plugin)
        version = dist.version if dist is not None else _version(dist_name)
        descriptions = {
            d.name: d.description
            for hook in ("registry_storage_drivers", "registry_auth_backends", "registry_storage_middleware")
            for d in _descriptors(plugin, hook)
        }
        infos.append(PluginInfo(name, dist_name, version, hooks, drivers, auth, descriptions))
    return infos


def _descriptors(plugin: object, hook_name: str) -> list[Any]:
    fn = getattr(plugin, hook_name, None)
    if fn is None:
        return []
    return list(fn() or ())


def _declared(plugin: object, hook_name: str) -> tuple[str, ...]:
    return tuple(d.name for d in _descriptors(plugin, hook_name))


def _module_dist(plugin: object) -> str:
    module = getattr(plugin, "__name__", type(plugin).__module__)
    top = module.split(".")[0]
    return metadata.packages_distributions().get(top, [top])[0]


def _version(dist_name: str) -> str:
    try:
        return metadata.version(dist_name)
    except metadata.PackageNotFoundError:
        return "-"


def options_of(config: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    """The mapping at dotted ``section`` of ``config`` (``{}`` when absent or null)."""
    node: Any = config
    for key in section.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
        if node is None:
            return {}
    return node if isinstance(node, Mapping) else {}
