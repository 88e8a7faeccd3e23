"""The core's typed view of a validated configuration, and the table of what the core acts on.

:class:`Settings` is built once from the validated mapping (:attr:`registry.config.Config.settings`)
with Distribution's defaults filled in. The accessor functions below compute one value each from any
mapping, so that code and tests holding a plain ``dict`` read the same defaults.

:data:`CORE_ACTS_ON` is the one place that says which keys change the registry's behaviour; anything
else a configuration sets is named at start-up in one warning (:func:`not_acted_on`).
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.config.durations import parse_duration
from registry.config.model import NO_AUTH, STORAGE_KEYS, ConfigError
from registry.plugins import options_of

if TYPE_CHECKING:
    import pluggy

DEFAULT_HTTP_ADDR = ("127.0.0.1", 5000)
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_MAX_ENTRIES = 1000

#: Every key the core acts on, as a dotted path: a configured key at or under one of these changes what
#: the registry does. The storage driver (``storage.<name>``), the access controller (``auth.<name>``)
#: and each path a plugin declares through ``registry_config_schemas`` are acted on by their plugin.
#: Whatever else the schema accepts is kept for plugins and named in the start-up warning; a feature
#: that starts reading a key adds it here.
CORE_ACTS_ON: frozenset[str] = frozenset(
    {
        "version",
        "loglevel",
        "log.level",
        "log.formatter",
        "log.fields",
        "log.accesslog",
        f"auth.{NO_AUTH}",
        "storage.delete",
        "storage.redirect",
        "storage.maintenance.readonly",
        "storage.maintenance.uploadpurging",
        "http.addr",
        "http.net",
        "http.prefix",
        "http.headers",
        "http.draintimeout",
        "http.waitress",
        "http.host",
        "http.debug.addr",
        "http.tls",
        "health.storagedriver",
        "middleware.storage",
        "catalog.maxentries",
        "notifications.events.includereferences",
        "proxy.remoteurl",
        "proxy.username",
        "proxy.password",
        "proxy.ttl",
        "proxy.remotes",
    }
)


# ---------------------------------------------------------------------------------------------
# The typed settings
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    """``storage:``: the driver and the core's storage switches."""

    driver: str
    params: Mapping[str, Any]
    delete_enabled: bool = False
    readonly: bool = False
    redirect: bool = True
    upload_purging: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    """``auth:``: the access controller, ``None`` for anonymous access."""

    backend: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """``http:``. ``addr`` is ``(host, port)`` for ``net: tcp``; for ``unix`` it is ``None`` and
    ``socket`` is the path. ``host`` is the base of event URLs; ``secret`` and ``relative_urls`` are
    not acted on yet."""

    addr: tuple[str, int] | None = DEFAULT_HTTP_ADDR
    net: str = "tcp"
    socket: str | None = None
    prefix: str = "/"
    host: str | None = None
    secret: str | None = None
    relative_urls: bool = False
    headers: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    waitress: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class LogSettings:
    """``log:`` (and the deprecated ``loglevel``)."""

    level: str = "info"
    formatter: str = "text"
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the core reads from a validated configuration, with Distribution's defaults.

    ``tags_max_tags`` is validated but not acted on yet.
    """

    storage: StorageSettings
    auth: AuthSettings = dataclasses.field(default_factory=AuthSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    catalog_max_entries: int = DEFAULT_MAX_ENTRIES
    tags_max_tags: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> Settings:
        """Build the settings of a validated configuration.

        :raises ConfigError: when ``storage`` does not name exactly one driver or ``auth`` names more
            than one access controller (validation reports both first).
        """
        http = options_of(config, "http")
        net = http_net(config)
        tags = options_of(config, "tags").get("maxtags")
        return cls(
            storage=StorageSettings(
                driver=storage_driver_name(config),
                params=_frozen(storage_params(config)),
                delete_enabled=delete_enabled(config),
                readonly=readonly_enabled(config),
                redirect=not redirect_disabled(config),
                upload_purging=_frozen(options_of(config, "storage.maintenance.uploadpurging")),
            ),
            auth=AuthSettings(auth_backend_name(config), _frozen(auth_params(config))),
            http=HttpSettings(
                addr=http_addr(config) if net == "tcp" else None,
                net=net,
                socket=str(http.get("addr")) if net == "unix" else None,
                prefix=http_prefix(config),
                host=str(http["host"]).rstrip("/") if http.get("host") else None,
                secret=http.get("secret") or None,
                relative_urls=http.get("relativeurls") is True,
                headers=types.MappingProxyType({k: tuple(v) for k, v in http_headers(config).items()}),
                drain_timeout=drain_timeout(config),
                waitress=_frozen(options_of(config, "http.waitress")),
            ),
            log=LogSettings(
                level=log_level(config),
                formatter=str(options_of(config, "log").get("formatter") or "text"),
                fields=_frozen(options_of(config, "log.fields")),
            ),
            catalog_max_entries=catalog_max_entries(config),
            tags_max_tags=tags if isinstance(tags, int) and tags > 0 else DEFAULT_MAX_ENTRIES,
        )


def settings_of(config: Mapping[str, Any]) -> Settings:
    """The settings of ``config``: the ones built once for a :class:`~registry.config.Config`,
    else built now from the plain mapping."""
    cached = getattr(config, "settings", None)
    return cached if isinstance(cached, Settings) else Settings.from_mapping(config)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(copy.deepcopy(dict(mapping)))


# ---------------------------------------------------------------------------------------------
# What is accepted but not acted on
# ---------------------------------------------------------------------------------------------


def acted_on(pm: pluggy.PluginManager) -> frozenset[str]:
    """The dotted keys something acts on: :data:`CORE_ACTS_ON`, the installed drivers and access
    controllers, and every section a plugin declares."""
    from registry.config.schema import declared, plugin_sections

    keys = set(CORE_ACTS_ON)
    keys.update(f"storage.{name}" for name in declared(pm, "registry_storage_drivers"))
    keys.update(f"auth.{name}" for name in declared(pm, "registry_auth_backends"))
    keys.update(path for path, _ in plugin_sections(pm))
    return frozenset(keys)


def not_acted_on(config: Mapping[str, Any], pm: pluggy.PluginManager) -> list[str]:
    """The configured keys nothing acts on, each at the shallowest level that is wholly ignored
    (``notifications``, ``http.tls``), sorted."""
    acted = acted_on(pm)
    if config.get("proxy"):
        from registry.proxy.settings import proxy_settings

        try:
            cache = proxy_settings(config)
        except ConfigError:
            cache = None
        if cache is None:  # no upstream configured: as in Distribution, not a pull-through cache
            acted = frozenset(a for a in acted if not a.startswith("proxy."))
    found: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if path in acted or any(path.startswith(f"{a}.") for a in acted):
                continue
            if isinstance(value, Mapping) and any(a.startswith(f"{path}.") for a in acted):
                walk(value, path)
            else:
                found.append(path)

    walk(config, "")
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Accessors: one typed value each, with Distribution's defaults; each takes any mapping.
# ---------------------------------------------------------------------------------------------


def storage_driver_name(config: Mapping[str, Any]) -> str:
    """The one storage driver named under ``storage:``."""
    storage = config.get("storage")
    names = [k for k in storage if k not in STORAGE_KEYS] if isinstance(storage, Mapping) else []
    if len(names) != 1:
        raise ConfigError([f"storage: exactly one driver must be configured, found {len(names)}"])
    return names[0]


def storage_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the selected driver's parameters (``{}`` for ``inmemory:``)."""
    return copy.deepcopy(dict(config["storage"][storage_driver_name(config)] or {}))


def delete_enabled(config: Mapping[str, Any]) -> bool:
    """``storage.delete.enabled``: may blobs and manifests be deleted? Default ``False``."""
    return options_of(config, "storage.delete").get("enabled") is True


def readonly_enabled(config: Mapping[str, Any]) -> bool:
    """``storage.maintenance.readonly.enabled``: refuse every write. Default ``False``."""
    return options_of(config, "storage.maintenance.readonly").get("enabled") is True


def redirect_disabled(config: Mapping[str, Any]) -> bool:
    """``storage.redirect.disable``: never redirect blob reads to the backend. Default ``False``."""
    return options_of(config, "storage.redirect").get("disable") is True


def auth_backend_name(config: Mapping[str, Any]) -> str | None:
    """The access controller named under ``auth:``, or ``None`` for anonymous access."""
    auth = config.get("auth")
    names = [k for k in auth if k != NO_AUTH] if isinstance(auth, Mapping) else []
    if len(names) > 1:
        raise ConfigError([f"auth: at most one access controller may be configured, found {len(names)}"])
    return names[0] if names else None


def auth_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the selected access controller's parameters (``{}`` when there is none)."""
    name = auth_backend_name(config)
    return copy.deepcopy(dict(config["auth"][name] or {})) if name else {}


def http_net(config: Mapping[str, Any]) -> str:
    """``http.net``: ``tcp`` (default) or ``unix``."""
    return str(options_of(config, "http").get("net") or "tcp")


def parse_addr(addr: str) -> tuple[str, int]:
    """Split Distribution's ``HOST:PORT`` (``:5000`` = every interface, ``[::1]:5000`` for IPv6).

    :raises ValueError: with a message fit for the user.
    """
    if addr.startswith("["):
        host, bracket, rest = addr[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{addr!r} is not HOST:PORT")
    else:
        host, colon, port = addr.rpartition(":")
        if not colon:
            raise ValueError(f"{addr!r} is not HOST:PORT (e.g. 127.0.0.1:5000, or :5000 for every interface)")
        if ":" in host:
            raise ValueError(f"{addr!r}: write an IPv6 address in brackets, e.g. [::1]:5000")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{addr!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def http_addr(config: Mapping[str, Any]) -> tuple[str, int]:
    """``http.addr`` as ``(host, port)``; host ``""`` means every interface. Default 127.0.0.1:5000."""
    addr = options_of(config, "http").get("addr")
    return parse_addr(addr) if addr else DEFAULT_HTTP_ADDR


def http_prefix(config: Mapping[str, Any]) -> str:
    """``http.prefix`` with a leading and trailing slash (``/`` when unset): the path before ``v2/``."""
    prefix = str(options_of(config, "http").get("prefix") or "").strip("/")
    return f"/{prefix}/" if prefix else "/"


def http_headers(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """``http.headers``, each header's values as a list: headers to add to every response."""
    headers = options_of(config, "http.headers")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in headers.items()}


def drain_timeout(config: Mapping[str, Any]) -> float:
    """``http.draintimeout`` in seconds: how long requests in flight may finish after SIGTERM. Default 10."""
    value = options_of(config, "http").get("draintimeout")
    return max(0.0, parse_duration(value)) if value is not None else DEFAULT_DRAIN_TIMEOUT


def catalog_max_entries(config: Mapping[str, Any]) -> int:
    """``catalog.maxentries``: the catalog's page size and the most one page may hold; 1000 when unset
    or not positive, as in Distribution."""
    value = options_of(config, "catalog").get("maxentries")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else DEFAULT_MAX_ENTRIES


def log_level(config: Mapping[str, Any]) -> str:
    """``log.level``, else the deprecated ``loglevel``, else ``info``."""
    return str(options_of(config, "log").get("level") or config.get("loglevel") or "info")
