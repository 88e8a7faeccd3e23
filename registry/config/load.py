"""Reading the configuration: the YAML file or the embedded default, normalised, overridden, validated."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry.config.env import CONFIGURATION_PATH_ENV, DATA_DIR_ENV, apply_env_overrides
from registry.config.model import STORAGE_KEYS, Config, ConfigError, KeyPath
from registry.config.schema import config_schema
from registry.config.settings import DEFAULT_HTTP_ADDR, not_acted_on
from registry.config.validate import validate
from registry.plugins import create_plugin_manager

if TYPE_CHECKING:
    import pluggy

log = logging.getLogger(__name__)

#: The storage driver of the embedded default: the one place the core names a concrete driver. The
#: driver fills in its own defaults (``registry-filesystem`` keeps data in :func:`default_data_dir`).
DEFAULT_STORAGE_DRIVER = "filesystem"


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    pm: pluggy.PluginManager | None = None,
) -> Config:
    """Read, override and validate the configuration.

    Keys that are accepted but that nothing acts on (:func:`registry.config.settings.not_acted_on`)
    are named in one warning and kept in :attr:`Config.not_acted_on`.

    :param path: the ``config.yml`` to read; ``None`` means ``$REGISTRY_CONFIGURATION_PATH`` if set,
        else the embedded default (:func:`default_config`).
    :param environ: where ``REGISTRY_*`` overrides are read from.
    :param pm: the plugin manager whose drivers and schemas are composed in; a new one loading every
        installed plugin when ``None``.
    :raises ConfigError: listing every problem found.
    """
    if pm is None:
        pm = create_plugin_manager()
    if path is None:
        path = environ.get(CONFIGURATION_PATH_ENV) or None
    source = os.fspath(path) if path is not None else None
    data = default_config() if source is None else _read_yaml(source)
    data = _normalize(data)
    schema = config_schema(pm)
    overrides, ignored = apply_env_overrides(data, schema, environ)
    config = Config(_normalize(data), source=source, env_overrides=overrides, ignored_env=ignored)
    errors = validate(config, schema=schema, env_overrides=overrides)
    if errors:
        raise ConfigError(errors)
    config.settings  # noqa: B018 - built once, now, from the validated mapping
    config.not_acted_on = not_acted_on(config, pm)
    if config.not_acted_on:
        log.warning("accepted, not acted on: %s", ", ".join(config.not_acted_on))
    return config


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the registry keeps data when the configuration does not say (the default storage's root).

    ``$REGISTRY_DATA_DIR`` if set, else ``$XDG_DATA_HOME/registry``, else ``~/.local/share/registry``:
    a user running ``registry serve`` without a config file needs a directory they can write, which
    Distribution's ``/var/lib/registry`` usually is not.
    """
    explicit = environ.get(DATA_DIR_ENV)
    if explicit:
        return Path(os.path.abspath(os.path.expanduser(explicit)))
    xdg = environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "registry"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / "registry"


def default_config() -> dict[str, Any]:
    """The configuration used when no file is given: the default driver with its own defaults,
    listening on 127.0.0.1:5000, deletes disabled (as in Distribution)."""
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {DEFAULT_STORAGE_DRIVER: None, "delete": {"enabled": False}},
        "http": {"addr": "{}:{}".format(*DEFAULT_HTTP_ADDR)},
    }


class _Loader(yaml.SafeLoader):
    """A SafeLoader that warns about duplicate keys, which YAML parsers (Go's too) silently resolve by
    keeping the last one: a second ``storage:`` section is almost always a mistake."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                log.warning(
                    "%s:%d: duplicate key %r; the later value wins",
                    loader.name,
                    key_node.start_mark.line + 1,
                    key,
                )
            seen.add(key)
        except TypeError:  # an unhashable key; construct_mapping reports it
            pass
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping of sections, found a {type(data).__name__}"])
    return data


def _normalize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Smooth over what YAML and Distribution allow but the schema should not have to.

    An empty key (``log:``) is the same as leaving it out, as with Go's zero values, except a storage
    driver or access controller key, whose presence alone selects it (``inmemory:``). ``storage: s3``
    (which ``REGISTRY_STORAGE=s3`` produces) means ``storage: {s3: }``, as in Distribution.
    """
    out = _drop_nulls(data, ())
    version = out.get("version")
    if isinstance(version, int | float) and not isinstance(version, bool):
        out["version"] = str(version)  # `version: 0.1` is a float to YAML, a string to Distribution
    for section in ("storage", "auth"):
        if isinstance(out.get(section), str):
            out[section] = {out[section]: None}
    # Distribution lower-cases log levels before checking them.
    if isinstance(out.get("log"), dict) and isinstance(out["log"].get("level"), str):
        out["log"]["level"] = out["log"]["level"].lower()
    if isinstance(out.get("loglevel"), str):
        out["loglevel"] = out["loglevel"].lower()
    return out


def _drop_nulls(value: Any, path: KeyPath) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            selects = len(path) == 1 and path[0] in ("storage", "auth") and key not in STORAGE_KEYS
            if item is None and not selects:
                continue
            out[key] = _drop_nulls(item, (*path, key))
        return out
    if isinstance(value, list):
        return [_drop_nulls(item, (*path, i)) for i, item in enumerate(value)]
    return value
