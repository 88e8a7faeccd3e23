"""Configuration: Distribution's ``config.yml``, ``REGISTRY_*`` overrides, schema composition, validation.

The file format is CNCF Distribution's (``version: 0.1``) so that an existing ``config.yml`` loads
unchanged. Loading happens in a fixed order:

1. read the YAML file (or the embedded default when there is none);
2. compose the JSON schema: ``registry/schemas/config.json`` plus each installed storage driver's schema
   at ``storage.<name>``, each access controller's at ``auth.<name>`` and each
   ``registry_config_schemas()`` fragment at its dotted path;
3. apply ``REGISTRY_<SECTION>_<KEY>`` environment variables, resolving their words against that schema;
4. validate everything, collecting *all* errors, each prefixed with its dotted path.

:func:`load_config` does all of it and returns a :class:`Config` (a ``dict``: plugins read their own
sections from it); the accessor functions below give the core typed values with Distribution's
defaults, and accept any mapping so tests can pass plain dicts.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from registry.plugins import by_name, create_plugin_manager, options_of

if TYPE_CHECKING:
    import pluggy

    from registry.auth import AccessController
    from registry.storage.checked import CheckedDriver

log = logging.getLogger(__name__)

#: Prefix of the environment variables that override configuration keys.
ENV_PREFIX = "REGISTRY_"
#: Path of the configuration file when none is given on the command line (Distribution honours it too).
CONFIGURATION_PATH_ENV = "REGISTRY_CONFIGURATION_PATH"
#: Directory of the default filesystem storage.
DATA_DIR_ENV = "REGISTRY_DATA_DIR"
#: ``REGISTRY_*`` variables that are ours rather than configuration overrides: never warned about.
OWN_ENV_VARS = frozenset({CONFIGURATION_PATH_ENV, DATA_DIR_ENV})
#: Keys under ``storage:`` that configure the core rather than name a driver.
STORAGE_KEYS = frozenset({"delete", "maintenance", "redirect", "cache", "tag"})
#: The ``auth:`` key that explicitly means anonymous access (as in Distribution).
NO_AUTH = "none"

DEFAULT_HTTP_ADDR = ("127.0.0.1", 5000)
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_MAX_ENTRIES = 1000

#: A key's path in the configuration: ``("storage", "s3", "bucket")``, ``("notifications", "endpoints", 0)``.
KeyPath = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration cannot be used; ``errors`` lists every problem, one line each.

    Each line starts with the dotted path of the offending key (``storage.s3: 'bucket' is a required
    property``). Plugins raise it from ``registry_configure`` to refuse to start.
    """

    def __init__(self, errors: Iterable[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class Config(dict[str, Any]):
    """The validated configuration: the ``config.yml`` mapping with overrides applied.

    It is a plain ``dict`` for plugins (``registry_configure`` receives it); the attributes say where
    it came from.

    :ivar source: the file read, or ``None`` for the embedded default.
    :ivar env_overrides: environment variable name -> the key path it set.
    :ivar ignored_env: ``REGISTRY_*`` variables that named no configuration key (warned about).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        env_overrides: Mapping[str, KeyPath] | None = None,
        ignored_env: Sequence[str] = (),
    ) -> None:
        super().__init__(data or {})
        self.source = source
        self.env_overrides: dict[str, KeyPath] = dict(env_overrides or {})
        self.ignored_env: list[str] = list(ignored_env)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    pm: pluggy.PluginManager | None = None,
) -> Config:
    """Read, override and validate the configuration.

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
    data = default_config(environ) if source is None else _read_yaml(source)
    data = _normalize(data)
    schema = config_schema(pm)
    overrides, ignored = apply_env_overrides(data, schema, environ)
    config = Config(_normalize(data), source=source, env_overrides=overrides, ignored_env=ignored)
    errors = validate(config, schema=schema, env_overrides=overrides)
    if errors:
        raise ConfigError(errors)
    return config


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the default filesystem storage keeps its data.

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


def default_config(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The configuration used when no file is given: filesystem storage under :func:`default_data_dir`,
    listening on 127.0.0.1:5000, deletes disabled (as in Distribution)."""
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(default_data_dir(environ))},
            "delete": {"enabled": False},
        },
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


# ---------------------------------------------------------------------------------------------
# Schema composition
# ---------------------------------------------------------------------------------------------


def base_schema() -> dict[str, Any]:
    """The core's schema (``registry/schemas/config.json``), without any plugin's parts."""
    text = resources.files("registry").joinpath("schemas/config.json").read_text(encoding="utf-8")
    return json.loads(text)


def config_schema(pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """The complete schema: the core's plus every installed plugin's parts.

    :raises ConfigError: when two plugins declare one driver name, a driver takes a reserved name, or a
        plugin's schema is itself invalid.
    """
    if pm is None:
        pm = create_plugin_manager()
    schema = base_schema()
    props = schema["properties"]
    for section, hook, reserved in (
        ("storage", "registry_storage_drivers", STORAGE_KEYS),
        ("auth", "registry_auth_backends", frozenset({NO_AUTH})),
    ):
        for name, descriptor in sorted(_declared(pm, hook).items()):
            if name in reserved:
                raise ConfigError([f"{section}: a plugin declares {name!r}, which is a reserved key there"])
            props[section]["properties"][name] = _fragment(descriptor.schema, f"{section}.{name}")
    from registry.storage.middleware import compose_schema

    compose_schema(schema, pm)
    for result in pm.hook.registry_config_schemas():
        for dotted, fragment in (result or {}).items():
            _graft(schema, dotted, _fragment(fragment, dotted))
    return schema


def _declared(pm: pluggy.PluginManager, hook: str) -> dict[str, Any]:
    try:
        return by_name(pm, hook)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None


def _fragment(schema: Any, dotted: str) -> Any:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError([f"{dotted}: the plugin's schema is invalid: {exc.message}"]) from None
    if isinstance(schema, Mapping) and "$id" not in schema:
        # Its own base URI keeps a fragment's `$ref: "#/$defs/..."` pointing into the fragment.
        return {**copy.deepcopy(dict(schema)), "$id": f"https://registry.invalid/schemas/config/{dotted}.json"}
    return copy.deepcopy(schema)


def _graft(schema: dict[str, Any], dotted: str, fragment: Any) -> None:
    *parents, last = dotted.split(".")
    node = schema
    for part in parents:
        props = node.setdefault("properties", {})
        child = props.get(part)
        if child is None:
            child = props[part] = {"type": "object", "properties": {}}
        elif isinstance(child, dict) and "$ref" in child:
            child = props[part] = _inline_ref(child, schema)
        node = child
    props = node.setdefault("properties", {})
    # Two declarations of one section must both hold, so neither is lost.
    props[last] = {"allOf": [props[last], fragment]} if last in props else fragment


def _inline_ref(node: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    target = _pointer(root, node["$ref"])
    merged = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return {}
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------
# Environment overrides
# ---------------------------------------------------------------------------------------------


def apply_env_overrides(
    data: MutableMapping[str, Any], schema: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, KeyPath], list[str]]:
    """Apply ``REGISTRY_<SECTION>_<KEY>=value`` variables to ``data`` in place, as Distribution does.

    The words after ``REGISTRY_`` are matched case-insensitively against the schema's property names
    (and keys already in ``data``), trying joins of adjacent words since names may hold underscores
    (``REGISTRY_HTTP_WAITRESS_MAX_REQUEST_BODY_SIZE``); a number picks a list element
    (``REGISTRY_REDIS_ADDRS_0``). Variables apply in lexical order, so ``REGISTRY_STORAGE=s3`` (a whole
    section) comes before ``REGISTRY_STORAGE_S3_BUCKET``. Values are YAML (``true``, ``8``), except
    that a string-typed key keeps the text as written. A variable naming no key is logged and
    ignored: the environment is shared with other programs (podman's ``REGISTRY_AUTH_FILE``).

    :return: the variables applied (name -> key path) and the names ignored.
    """
    overrides: dict[str, KeyPath] = {}
    ignored: list[str] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in OWN_ENV_VARS:
            continue
        words = name[len(ENV_PREFIX) :].split("_")
        deepest: list[Any] = [(), words]
        found = None if "" in words else _resolve(schema, schema, data, words, (), deepest)
        if found is None:
            log.warning("ignoring environment variable %s: %s", name, _unresolved(deepest, schema))
            ignored.append(name)
            continue
        path, leaf = found
        _assign(data, path, _env_value(environ[name], leaf))
        overrides[name] = path
    return overrides, ignored


def _unresolved(deepest: list[Any], schema: Mapping[str, Any]) -> str:
    path, words = deepest
    where = f"under {_dotted(path)!r}" if path else "at the top level"
    message = f"it names no configuration key (nothing {where} matches {'_'.join(words)!r})"
    if path in (("storage",), ("auth",)):
        message += f"; installed: {', '.join(_choices(schema, path[0])) or 'none'}"
    return message


def _resolve(
    node: Any, root: Any, data: Any, words: list[str], path: KeyPath, deepest: list[Any]
) -> tuple[KeyPath, Any] | None:
    node, root = _deref(node, root)
    if not words:
        return path, node
    if len(path) >= len(deepest[0]):
        deepest[:] = [path, words]
    types = _types(node, root)
    if isinstance(data, list) or (types and "array" in types and "object" not in types):
        if not words[0].isdigit():
            return None
        index, items = int(words[0]), data if isinstance(data, list) else []
        if index > len(items):  # Distribution also refuses to skip elements
            return None
        child = items[index] if index < len(items) else None
        return _resolve(_get(node, root, "items", {}), root, child, words[1:], (*path, index), deepest)
    props = _properties(node, root)
    by_lower = {key.lower(): key for key in props}
    present = {str(key).lower(): key for key in data} if isinstance(data, Mapping) else {}
    additional = _get(node, root, "additionalProperties", None)
    for n in range(1, len(words) + 1):
        candidate = "_".join(words[:n]).lower()
        if candidate in by_lower:
            key = by_lower[candidate]
            child_schema, child_root = props[key]
        elif candidate in present:
            key = present[candidate]
            child_schema = additional if isinstance(additional, Mapping) else {}
            child_root = root
        else:
            continue
        child = data.get(key) if isinstance(data, Mapping) else None
        found = _resolve(child_schema, child_root, child, words[n:], (*path, key), deepest)
        if found is not None:
            return found
    if isinstance(additional, Mapping):
        # A map of free keys (http.headers, log.fields): Distribution lower-cases the key.
        key = words[0].lower()
        child = data.get(key) if isinstance(data, Mapping) else None
        return _resolve(additional, root, child, words[1:], (*path, key), deepest)
    if additional is not False and _is_parameters(path):
        # A driver's parameters are a free map in Distribution; a driver schema that does not list
        # the key still gets it, as one key (REGISTRY_STORAGE_AZURE_MAX_RETRIES -> max_retries).
        return (*path, "_".join(words).lower()), {}
    return None


def _is_parameters(path: KeyPath) -> bool:
    return len(path) == 2 and path[0] in ("storage", "auth") and path[1] not in STORAGE_KEYS


def _deref(node: Any, root: Any) -> tuple[Any, Any]:
    if not isinstance(node, Mapping):
        return {}, root  # a boolean schema: nothing to walk into
    if "$id" in node:
        root = node
    seen = 0
    while "$ref" in node and seen < 32:
        target = _pointer(root, node["$ref"])
        node = {**(target if isinstance(target, Mapping) else {}), **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node, root


def _subschemas(node: Mapping[str, Any], root: Any) -> list[tuple[Mapping[str, Any], Any]]:
    found = [(node, root)]
    for sub in node.get("allOf", ()):
        sub, sub_root = _deref(sub, root)
        found.extend(_subschemas(sub, sub_root))
    return found


def _properties(node: Mapping[str, Any], root: Any) -> dict[str, tuple[Any, Any]]:
    props: dict[str, tuple[Any, Any]] = {}
    for sub, sub_root in _subschemas(node, root):
        for key, value in (sub.get("properties") or {}).items():
            props.setdefault(key, (value, sub_root))
    return props


def _get(node: Mapping[str, Any], root: Any, keyword: str, default: Any) -> Any:
    for sub, _ in _subschemas(node, root):
        if keyword in sub:
            return sub[keyword]
    return default


def _types(node: Mapping[str, Any], root: Any) -> set[str]:
    declared = _get(node, root, "type", None)
    if declared is None:
        return set()
    return {declared} if isinstance(declared, str) else set(declared)


def _env_value(raw: str, schema: Any) -> Any:
    types = _types(*_deref(schema, schema))
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation then reports the key, naming the variable
    if "string" in types and (parsed is None or not _has_type(parsed, types)):
        return raw  # a string key keeps "123", "true" or "#x" as written
    return parsed


def _has_type(value: Any, types: set[str]) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    return not types or any(checks.get(t, lambda v: True)(value) for t in types)


def _assign(data: MutableMapping[str, Any], path: KeyPath, value: Any) -> None:
    node: Any = data
    for key, next_key in zip(path, path[1:], strict=False):
        child = _child(node, key)
        wanted = list if isinstance(next_key, int) else dict
        if not isinstance(child, wanted):
            child = wanted()
            _set_child(node, key, child)
        node = child
    _set_child(node, path[-1], value)


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, list):
        return node[key] if isinstance(key, int) and key < len(node) else None
    return node.get(key)


def _set_child(node: Any, key: str | int, value: Any) -> None:
    if isinstance(node, list) and isinstance(key, int):
        if key == len(node):
            node.append(value)
        else:
            node[key] = value
    else:
        node[key] = value


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("go-duration", raises=ValueError)
def _is_duration(value: Any) -> bool:
    if isinstance(value, str):
        parse_duration(value)
    return True


def validate(
    config: Mapping[str, Any],
    pm: pluggy.PluginManager | None = None,
    *,
    schema: Mapping[str, Any] | None = None,
    env_overrides: Mapping[str, KeyPath] | None = None,
) -> list[str]:
    """Every problem with ``config``, one line each (``path: message``), sorted by path.

    :param schema: the composed schema; :func:`config_schema` of ``pm`` when ``None``.
    :param env_overrides: variable -> path it set, to name the variable in errors about that key.
    """
    if schema is None:
        schema = config_schema(pm)
    validator = jsonschema.Draft202012Validator(schema, format_checker=_FORMATS)
    problems: list[tuple[KeyPath, str]] = []
    for error in validator.iter_errors(config):
        problems.extend(_explain(error))
    problems.extend(_selection_problems(config, schema, env_overrides or {}))
    problems.extend(_semantic_problems(config))
    origins = {path: name for name, path in (env_overrides or {}).items()}
    lines = []
    for path, message in problems:
        origin = next((n for p, n in origins.items() if path[: len(p)] == p), None)
        suffix = f" (set by {origin})" if origin and "REGISTRY_" not in message else ""
        lines.append((_dotted(path) or "(root)", f"{message}{suffix}"))
    return [f"{where}: {message}" for where, message in sorted(set(lines))]


def _explain(error: jsonschema.ValidationError) -> list[tuple[KeyPath, str]]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        if path in (("storage",), ("auth",)):
            return []  # _selection_problems names the unknown driver and lists installed ones
        known = list((error.schema.get("properties") or {}) if isinstance(error.schema, Mapping) else ())
        patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, Mapping) else {}
        extras = [k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns)]
        return [((*path, key), "unknown key" + _did_you_mean(str(key), known)) for key in extras]
    if error.validator == "required" and not path:
        if "'storage'" in error.message:
            return []  # _selection_problems says it with the installed drivers
        missing = [k for k in error.validator_value if k not in error.instance and repr(k) in error.message]
        return [((key,), "is required") for key in missing[:1]]
    if path == ("version",):
        return []  # _selection_problems says which versions exist
    if error.validator == "format" and error.validator_value == "go-duration":
        return [(path, f"{error.instance!r} is not a duration (write it like 500ms, 5s or 2h45m)")]
    return [(path, error.message)]


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choices(schema: Mapping[str, Any], section: str) -> list[str]:
    props = schema.get("properties", {}).get(section, {}).get("properties", {})
    reserved = STORAGE_KEYS if section == "storage" else {NO_AUTH}
    return sorted(k for k in props if k not in reserved)


def _selection_problems(
    config: Mapping[str, Any], schema: Mapping[str, Any], overrides: Mapping[str, KeyPath]
) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if "version" in config and config["version"] not in ("0.1", 0.1):
        problems.append((("version",), f"unsupported version {config['version']!r} (this registry reads 0.1)"))
    drivers = _choices(schema, "storage")
    installed = f"installed: {', '.join(drivers) or 'none'}"
    storage = config.get("storage")
    if storage is None or (isinstance(storage, Mapping) and not (set(storage) - STORAGE_KEYS)):
        problems.append((("storage",), f"no storage driver configured; configure exactly one ({installed})"))
    elif isinstance(storage, Mapping):
        chosen = [k for k in storage if k not in STORAGE_KEYS]
        problems += [(("storage",), f"unknown driver {k!r} ({installed})") for k in chosen if k not in drivers]
        if len(chosen) > 1:
            message = f"exactly one driver must be configured, found {len(chosen)}: {', '.join(map(str, chosen))}"
            from_env = sorted(n for n, p in overrides.items() if len(p) > 1 and p[0] == "storage" and p[1] in chosen)
            if from_env:
                message += f" ({', '.join(from_env)} added one; set REGISTRY_STORAGE=<driver> to switch drivers)"
            problems.append((("storage",), message))
    auth = config.get("auth")
    if isinstance(auth, Mapping):
        backends = _choices(schema, "auth")
        chosen = list(auth)
        installed = f"installed: {', '.join(backends) or 'none'}"
        problems += [
            (("auth",), f"unknown access controller {k!r} ({installed})")
            for k in chosen
            if k != NO_AUTH and k not in backends
        ]
        if len(chosen) > 1:
            problems.append(
                (
                    ("auth",),
                    f"at most one access controller may be configured, found {len(chosen)}: "
                    + ", ".join(map(str, chosen)),
                )
            )
    return problems


def _semantic_problems(config: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    http = config.get("http")
    if not isinstance(http, Mapping):
        return problems
    if http.get("net", "tcp") == "tcp" and isinstance(http.get("addr"), str):
        try:
            parse_addr(http["addr"])
        except ValueError as exc:
            problems.append((("http", "addr"), str(exc)))
    prefix = http.get("prefix")
    if isinstance(prefix, str) and prefix and not prefix.startswith("/"):
        problems.append((("http", "prefix"), f"{prefix!r} must start with '/'"))
    return problems


def _dotted(path: KeyPath) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


# ---------------------------------------------------------------------------------------------
# Accessors: typed values with Distribution's defaults. Each takes any mapping.
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


def http_host(config: Mapping[str, Any]) -> str | None:
    """``http.host``: the external base URL for generated URLs, or ``None`` to use the request's."""
    host = options_of(config, "http").get("host")
    return str(host).rstrip("/") if host else None


def http_secret(config: Mapping[str, Any]) -> str | None:
    """``http.secret``, or ``None`` (the app then generates one, as Distribution does)."""
    return options_of(config, "http").get("secret") or None


def relative_urls(config: Mapping[str, Any]) -> bool:
    """``http.relativeurls``: send relative Location headers. Default ``False``."""
    return options_of(config, "http").get("relativeurls") is True


def http_headers(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """``http.headers``, each header's values as a list: headers to add to every response."""
    headers = options_of(config, "http.headers")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in headers.items()}


def drain_timeout(config: Mapping[str, Any]) -> float:
    """``http.draintimeout`` in seconds: how long requests in flight may finish after SIGTERM. Default 10."""
    value = options_of(config, "http").get("draintimeout")
    return max(0.0, parse_duration(value)) if value is not None else DEFAULT_DRAIN_TIMEOUT


def catalog_max_entries(config: Mapping[str, Any]) -> int:
    """``catalog.maxentries``; 1000 when unset or not positive, as in Distribution."""
    value = options_of(config, "catalog").get("maxentries")
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_ENTRIES


def tags_max_tags(config: Mapping[str, Any]) -> int:
    """``tags.maxtags``; 1000 when unset or not positive, as in Distribution."""
    value = options_of(config, "tags").get("maxtags")
    return value if isinstance(value, int) and value > 0 else DEFAULT_MAX_ENTRIES


def log_level(config: Mapping[str, Any]) -> str:
    """``log.level``, else the deprecated ``loglevel``, else ``info``."""
    return str(options_of(config, "log").get("level") or config.get("loglevel") or "info")


def parse_duration(value: Any) -> float:
    """A Go duration (``500ms``, ``1h30m``) in seconds; a bare number is nanoseconds, as in Distribution.

    :raises ValueError: for anything else (Go also refuses a unitless string other than ``0``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}")
    if not isinstance(value, str):
        return value / 1e9
    text, sign = value.strip(), 1.0
    if text[:1] in ("+", "-"):
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:]
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {value!r}")
    return sign * total


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


# ---------------------------------------------------------------------------------------------
# Building what the configuration names
# ---------------------------------------------------------------------------------------------


def build_storage(
    config: Mapping[str, Any], pm: pluggy.PluginManager, environ: Mapping[str, str] = os.environ
) -> CheckedDriver:
    """Create the configured storage driver, wrapped in :func:`registry.storage.checked.checked`.

    ``filesystem`` without a ``rootdirectory`` gets :func:`default_data_dir`.

    :raises ConfigError: when the driver is not installed or its factory fails.
    """
    from registry.storage.checked import checked

    name = storage_driver_name(config)
    descriptor = _declared(pm, "registry_storage_drivers").get(name)
    if descriptor is None:
        installed = ", ".join(sorted(_declared(pm, "registry_storage_drivers"))) or "none"
        raise ConfigError([f"storage: unknown driver {name!r} (installed: {installed})"])
    params = storage_params(config)
    if name == "filesystem" and not params.get("rootdirectory"):
        params["rootdirectory"] = str(default_data_dir(environ))
    try:
        driver = descriptor.factory(params)
    except ConfigError:
        raise
    except Exception as exc:  # a missing SDK, unreachable endpoint...: refuse to start, saying why
        raise ConfigError([f"storage.{name}: the driver failed to start: {exc}"]) from exc
    from registry.storage.middleware import wrap

    return checked(wrap(driver, options_of(config, "middleware").get("storage"), pm))


def build_access_controller(config: Mapping[str, Any], pm: pluggy.PluginManager) -> AccessController | None:
    """Create the configured access controller, or return ``None`` for anonymous access.

    :raises ConfigError: when the backend is not installed or its factory fails.
    """
    name = auth_backend_name(config)
    if name is None:
        return None
    backends = _declared(pm, "registry_auth_backends")
    if name not in backends:
        installed = ", ".join(sorted(backends)) or "none"
        raise ConfigError([f"auth: unknown access controller {name!r} (installed: {installed})"])
    try:
        return backends[name].factory(auth_params(config))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError([f"auth.{name}: the access controller failed to start: {exc}"]) from exc


__all__ = [
    "CONFIGURATION_PATH_ENV",
    "DATA_DIR_ENV",
    "Config",
    "ConfigError",
    "apply_env_overrides",
    "auth_backend_name",
    "auth_params",
    "base_schema",
    "build_access_controller",
    "build_storage",
    "catalog_max_entries",
    "config_schema",
    "default_config",
    "default_data_dir",
    "delete_enabled",
    "drain_timeout",
    "http_addr",
    "http_headers",
    "http_host",
    "http_net",
    "http_prefix",
    "http_secret",
    "load_config",
    "log_level",
    "parse_addr",
    "parse_duration",
    "readonly_enabled",
    "redirect_disabled",
    "relative_urls",
    "storage_driver_name",
    "storage_params",
    "tags_max_tags",
    "validate",
]
