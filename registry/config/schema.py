"""The configuration's JSON schema: the core's, composed with every installed plugin's parts.

``registry/schemas/config.json`` gets each storage driver's schema at ``storage.<name>``, each access
controller's at ``auth.<name>`` and each ``registry_config_schemas()`` fragment at its dotted path.
The walking helpers at the end follow ``$ref`` with the ``referencing`` library (what jsonschema
itself resolves with), so the environment overrides read the schema exactly as validation does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from registry.config.model import NO_AUTH, STORAGE_KEYS, ConfigError
from registry.plugins import by_name, create_plugin_manager

if TYPE_CHECKING:
    import pluggy
    from referencing._core import Resolver

#: Base URI of a plugin's fragment without its own ``$id``, so that its ``#/$defs/...`` stay inside it.
FRAGMENT_BASE = "https://registry.invalid/schemas/config/"


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
        for name, descriptor in sorted(declared(pm, hook).items()):
            if name in reserved:
                raise ConfigError([f"{section}: a plugin declares {name!r}, which is a reserved key there"])
            props[section]["properties"][name] = _fragment(descriptor.schema, f"{section}.{name}")
    from registry.storage.middleware import compose_schema

    compose_schema(schema, pm)
    for dotted, fragments in plugin_sections(pm):
        for fragment in fragments:
            _graft(schema, dotted, _fragment(fragment, dotted))
    return schema


def plugin_sections(pm: pluggy.PluginManager) -> list[tuple[str, list[Any]]]:
    """Every dotted path a plugin declares through ``registry_config_schemas``, with its fragments
    (one per declaring plugin), in declaration order."""
    found: dict[str, list[Any]] = {}
    for result in pm.hook.registry_config_schemas():
        for dotted, fragment in (result or {}).items():
            found.setdefault(dotted, []).append(fragment)
    return list(found.items())


def declared(pm: pluggy.PluginManager, hook: str) -> dict[str, Any]:
    """The descriptors a declaration hook returns, by name.

    :raises ConfigError: when two plugins declare one name.
    """
    try:
        return by_name(pm, hook)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None


def choices(schema: Mapping[str, Any], section: str) -> list[str]:
    """The drivers (``storage``) or access controllers (``auth``) the schema knows, sorted."""
    props = schema.get("properties", {}).get(section, {}).get("properties", {})
    reserved = STORAGE_KEYS if section == "storage" else {NO_AUTH}
    return sorted(k for k in props if k not in reserved)


def _fragment(schema: Any, dotted: str) -> Any:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError([f"{dotted}: the plugin's schema is invalid: {exc.message}"]) from None
    if isinstance(schema, Mapping) and "$id" not in schema:
        return {**copy.deepcopy(dict(schema)), "$id": f"{FRAGMENT_BASE}{dotted}.json"}
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
            # A section shared through $defs gets its own copy, so the graft changes only this path.
            target, _ = deref(child, resolver_for(schema))
            child = props[part] = copy.deepcopy(target)
        node = child
    props = node.setdefault("properties", {})
    # Two declarations of one section must both hold, so neither is lost.
    props[last] = {"allOf": [props[last], fragment]} if last in props else fragment


# ---------------------------------------------------------------------------------------------
# Walking a schema (for the environment overrides)
# ---------------------------------------------------------------------------------------------


def resolver_for(schema: Mapping[str, Any]) -> Resolver:
    """A resolver for ``$ref`` inside ``schema``, its embedded ``$id`` resources included."""
    resource = DRAFT202012.create_resource(schema)
    uri = resource.id() or ""
    return Registry().with_resource(uri, resource).crawl().resolver(base_uri=uri)


def deref(node: Any, resolver: Resolver) -> tuple[Mapping[str, Any], Resolver]:
    """``node`` with its ``$ref`` (and the target's, up to 32) merged in, and the resolver for what
    that node refers to; a boolean schema gives ``{}``, an unresolvable reference nothing more."""
    if not isinstance(node, Mapping):
        return {}, resolver
    if "$id" in node:
        resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
    for _ in range(32):
        if "$ref" not in node:
            break
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        try:
            resolved = resolver.lookup(node["$ref"])
        except Unresolvable:
            return siblings, resolver
        target = resolved.contents if isinstance(resolved.contents, Mapping) else {}
        node, resolver = {**target, **siblings}, resolved.resolver
    return node, resolver


def _subschemas(node: Mapping[str, Any], resolver: Resolver) -> list[tuple[Mapping[str, Any], Resolver]]:
    found = [(node, resolver)]
    for sub in node.get("allOf", ()):
        found.extend(_subschemas(*deref(sub, resolver)))
    return found


def properties(node: Mapping[str, Any], resolver: Resolver) -> dict[str, tuple[Any, Resolver]]:
    """The properties a (dereferenced) node declares, its ``allOf`` parts included: name ->
    (schema, resolver for it); the first declaration of a name wins."""
    props: dict[str, tuple[Any, Resolver]] = {}
    for sub, sub_resolver in _subschemas(node, resolver):
        for key, value in (sub.get("properties") or {}).items():
            props.setdefault(key, (value, sub_resolver))
    return props


def keyword(node: Mapping[str, Any], resolver: Resolver, name: str, default: Any) -> Any:
    """The first value of keyword ``name`` in ``node`` or its ``allOf`` parts."""
    for sub, _ in _subschemas(node, resolver):
        if name in sub:
            return sub[name]
    return default


def types(node: Mapping[str, Any], resolver: Resolver) -> set[str]:
    """The JSON types a node allows (empty: any)."""
    declared_type = keyword(node, resolver, "type", None)
    if declared_type is None:
        return set()
    return {declared_type} if isinstance(declared_type, str) else set(declared_type)
