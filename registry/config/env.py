"""``REGISTRY_<SECTION>_<KEY>`` environment overrides, resolved against the composed schema."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import yaml

from registry.config.model import STORAGE_KEYS, KeyPath, dotted
from registry.config.schema import choices, deref, keyword, properties, resolver_for, types

if TYPE_CHECKING:
    from referencing._core import Resolver

log = logging.getLogger(__name__)

#: Prefix of the environment variables that override configuration keys.
ENV_PREFIX = "REGISTRY_"
#: Path of the configuration file when none is given on the command line (Distribution honours it too).
CONFIGURATION_PATH_ENV = "REGISTRY_CONFIGURATION_PATH"
#: Directory of the registry's own data (the default storage keeps it there).
DATA_DIR_ENV = "REGISTRY_DATA_DIR"
#: ``REGISTRY_*`` variables that are ours rather than configuration overrides: never warned about.
OWN_ENV_VARS = frozenset({CONFIGURATION_PATH_ENV, DATA_DIR_ENV})


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
    resolver = resolver_for(schema)
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in OWN_ENV_VARS:
            continue
        words = name[len(ENV_PREFIX) :].split("_")
        deepest: list[Any] = [(), words]
        found = None if "" in words else _resolve(schema, resolver, data, words, (), deepest)
        if found is None:
            log.warning("ignoring environment variable %s: %s", name, _unresolved(deepest, schema))
            ignored.append(name)
            continue
        path, leaf, leaf_resolver = found
        _assign(data, path, _env_value(environ[name], leaf, leaf_resolver))
        overrides[name] = path
    return overrides, ignored


def _unresolved(deepest: list[Any], schema: Mapping[str, Any]) -> str:
    path, words = deepest
    where = f"under {dotted(path)!r}" if path else "at the top level"
    message = f"it names no configuration key (nothing {where} matches {'_'.join(words)!r})"
    if path in (("storage",), ("auth",)):
        message += f"; installed: {', '.join(choices(schema, path[0])) or 'none'}"
    return message


def _resolve(
    node: Any, resolver: Resolver, data: Any, words: list[str], path: KeyPath, deepest: list[Any]
) -> tuple[KeyPath, Any, Resolver] | None:
    node, resolver = deref(node, resolver)
    if not words:
        return path, node, resolver
    if len(path) >= len(deepest[0]):
        deepest[:] = [path, words]
    allowed = types(node, resolver)
    if isinstance(data, list) or (allowed and "array" in allowed and "object" not in allowed):
        if not words[0].isdigit():
            return None
        index, items = int(words[0]), data if isinstance(data, list) else []
        if index > len(items):  # Distribution also refuses to skip elements
            return None
        child = items[index] if index < len(items) else None
        items_schema = keyword(node, resolver, "items", {})
        return _resolve(items_schema, resolver, child, words[1:], (*path, index), deepest)
    props = properties(node, resolver)
    by_lower = {key.lower(): key for key in props}
    present = {str(key).lower(): key for key in data} if isinstance(data, Mapping) else {}
    additional = keyword(node, resolver, "additionalProperties", None)
    for n in range(1, len(words) + 1):
        candidate = "_".join(words[:n]).lower()
        if candidate in by_lower:
            key = by_lower[candidate]
            child_schema, child_resolver = props[key]
        elif candidate in present:
            key = present[candidate]
            child_schema = additional if isinstance(additional, Mapping) else {}
            child_resolver = resolver
        else:
            continue
        child = data.get(key) if isinstance(data, Mapping) else None
        found = _resolve(child_schema, child_resolver, child, words[n:], (*path, key), deepest)
        if found is not None:
            return found
    if isinstance(additional, Mapping):
        # A map of free keys (http.headers, log.fields): Distribution lower-cases the key.
        key = words[0].lower()
        child = data.get(key) if isinstance(data, Mapping) else None
        return _resolve(additional, resolver, child, words[1:], (*path, key), deepest)
    if additional is not False and _is_parameters(path):
        # A driver's parameters are a free map in Distribution; a driver schema that does not list
        # the key still gets it, as one key (REGISTRY_STORAGE_AZURE_MAX_RETRIES -> max_retries).
        return (*path, "_".join(words).lower()), {}, resolver
    return None


def _is_parameters(path: KeyPath) -> bool:
    return len(path) == 2 and path[0] in ("storage", "auth") and path[1] not in STORAGE_KEYS


def _env_value(raw: str, schema: Any, resolver: Resolver) -> Any:
    allowed = types(*deref(schema, resolver))
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation then reports the key, naming the variable
    if "string" in allowed and (parsed is None or not _has_type(parsed, allowed)):
        return raw  # a string key keeps "123", "true" or "#x" as written
    return parsed


def _has_type(value: Any, allowed: set[str]) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    return not allowed or any(checks.get(t, lambda v: True)(value) for t in allowed)


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
