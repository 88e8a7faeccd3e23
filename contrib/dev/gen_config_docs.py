"""Write docs/config-reference.md from the configuration schemas (every option, type, default, meaning).

The schema is the one ``registry config schema`` prints, composed from ``registry/schemas/config.json``
and the schema of every plugin this repository ships (``registry_plugins/*`` and
``contrib/plugins/*``, loaded from their entry points, so whatever else is installed changes
nothing). Defaults come from the schemas' ``default`` keywords, else from the code that applies
them (``CODE_DEFAULTS`` below imports each from where it is used), so the page cannot drift.

Run: ``python contrib/dev/gen_config_docs.py`` (``--check`` exits 1 when docs/config-reference.md is
stale, naming the command that regenerates it).
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "docs" / "config-reference.md"

HEADER = """# Configuration reference

Generated from the configuration schemas by `contrib/dev/gen_config_docs.py`; do not edit by hand
(`make docs-reference` regenerates it, and `make test` fails while it is stale). The schema is
`registry/schemas/config.json` composed with the schemas of the plugins this repository ships, as
`registry config schema` prints it when they are installed. How the file is read, the environment
overrides and what each part does: [Configuration](configuration.md).

A key under `storage:` names the storage driver and one under `auth:` the access controller; their
own keys follow under `storage.<driver>` and `auth.<controller>`. Durations are Go's (`500ms`,
`5s`, `2h45m`; a bare number is nanoseconds); the `http.waitress` settings are waitress's, in
seconds and bytes. *Accepted, not acted on* means the key is validated and kept for plugins, and
named in the start-up warning while nothing acts on it.

"""


def shipped_plugin_modules() -> list[tuple[str, str]]:
    """(distribution, module) of every plugin this repository ships, from the pyproject files."""
    found = [("registry", "registry.storage.inmemory")]
    for pyproject in sorted([*ROOT.glob("registry_plugins/*/pyproject.toml"),
                             *ROOT.glob("contrib/plugins/*/pyproject.toml")]):
        project = tomllib.loads(pyproject.read_text())["project"]
        for module in project.get("entry-points", {}).get("registry.plugins", {}).values():
            found.append((project["name"], module.split(":")[0]))
    return found


def _waitress_defaults() -> dict[str, Any]:
    from waitress.adjustments import Adjustments

    from registry.serve import WAITRESS_DEFAULTS

    adj = Adjustments()
    names = [name for name, _ in Adjustments._params]
    defaults = {name: getattr(adj, name) for name in names if hasattr(adj, name)}
    defaults.update(WAITRESS_DEFAULTS)
    defaults["unix_socket_perms"] = format(defaults["unix_socket_perms"], "o")
    return defaults


def _seconds(value: float) -> str:
    hours, rest = divmod(int(value), 3600)
    return f"{hours}h" if hours and not rest else f"{value:g}s"


def code_defaults() -> dict[str, Any]:
    """Defaults the core applies in code for keys whose schema has no ``default``."""
    from registry import health
    from registry.config import settings
    from registry.storage import purge

    http = settings.HttpSettings()
    log = settings.LogSettings()
    storage = settings.StorageSettings(driver="-", params={})
    found: dict[str, Any] = {
        "log.level": log.level,
        "log.formatter": log.formatter,
        "log.accesslog.disabled": False,
        "storage.delete.enabled": storage.delete_enabled,
        "storage.maintenance.readonly.enabled": storage.readonly,
        "storage.redirect.disable": not storage.redirect,
        "storage.maintenance.uploadpurging.enabled": True,
        "storage.maintenance.uploadpurging.age": _seconds(purge.DEFAULT_AGE),
        "storage.maintenance.uploadpurging.interval": _seconds(purge.DEFAULT_INTERVAL),
        "storage.maintenance.uploadpurging.dryrun": False,
        "http.addr": "{}:{}".format(*settings.DEFAULT_HTTP_ADDR),
        "http.net": http.net,
        "http.prefix": http.prefix,
        "http.draintimeout": _seconds(settings.DEFAULT_DRAIN_TIMEOUT),
        "http.relativeurls": http.relative_urls,
        "health.storagedriver.enabled": False,
        "health.storagedriver.interval": _seconds(health.DEFAULT_INTERVAL),
        "health.storagedriver.threshold": health.DEFAULT_THRESHOLD,
        "catalog.maxentries": settings.DEFAULT_MAX_ENTRIES,
        "tags.maxtags": settings.DEFAULT_MAX_ENTRIES,
    }
    found.update({f"http.waitress.{k}": v for k, v in _waitress_defaults().items()})
    return found


#: A driver's or access controller's descriptor text, for a schema without a description of its own.
DESCRIPTIONS: dict[str, str] = {}


#: Each storage middleware: (distribution, description, options schema).
MIDDLEWARE: dict[str, tuple[str, str, Any]] = {}


def composed_schema() -> tuple[dict[str, Any], dict[str, str]]:
    """The composed schema, and which distribution declares each driver, controller or section."""
    from registry.config import config_schema
    from registry.config.schema import declared, plugin_sections
    from registry.plugins import create_plugin_manager

    modules = shipped_plugin_modules()
    plugins = [importlib.import_module(module) for _, module in modules]
    pm = create_plugin_manager(load_entry_points=False, plugins=plugins)
    owners: dict[str, str] = {}
    for (dist, _), plugin in zip(modules, plugins, strict=True):
        single = create_plugin_manager(load_entry_points=False, plugins=[plugin])
        for section, hook in (("storage", "registry_storage_drivers"), ("auth", "registry_auth_backends")):
            for name, descriptor in declared(single, hook).items():
                owners[f"{section}.{name}"] = dist
                DESCRIPTIONS[f"{section}.{name}"] = descriptor.description
        for path, _ in plugin_sections(single):
            owners[path] = dist
        from registry.storage.middleware import descriptors, options_schema

        for name, descriptor in descriptors(single).items():
            MIDDLEWARE[name] = (dist, descriptor.description, options_schema(descriptor))
    return config_schema(pm), owners


def _type(node: Mapping[str, Any], resolver: Any) -> str:
    from registry.config.schema import keyword, types

    kinds = sorted(types(node, resolver) - {"null"}) or (["any"] if "enum" not in node else [])
    text = " or ".join(kinds)
    enum = keyword(node, resolver, "enum", None)
    if enum:
        shown = dict.fromkeys(v if isinstance(v, str) else json.dumps(v) for v in enum)  # "0.1" and 0.1: once
        text = "one of " + ", ".join(f"`{v}`" for v in shown)
    fmt = keyword(node, resolver, "format", None)
    if fmt == "go-duration":
        text = "duration"
    if "array" in kinds:
        items = keyword(node, resolver, "items", None)
        if isinstance(items, Mapping):
            from registry.config.schema import deref

            item, item_resolver = deref(items, resolver)
            inner = _type(item, item_resolver)
            text = f"list of {inner}" if inner != "any" else "list"
    return text


def _cell(text: str) -> str:
    # Schema text is plain: a <placeholder> in it must show, not become an HTML tag.
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _default(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, set | frozenset):
        value = sorted(value)
    return f"`{json.dumps(value)}`"


def rows(node: Any, resolver: Any, path: str, defaults: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) for every property below ``node``, depth first."""
    from registry.config.schema import _subschemas, deref, keyword, properties

    node, resolver = deref(node, resolver)
    # Every declaration of a key (the core's and a plugin's, under allOf): merge_rows() combines them.
    declarations = [(name, value, sub_resolver) for sub, sub_resolver in _subschemas(node, resolver)
                    for name, value in (sub.get("properties") or {}).items()]
    for name, raw, child_resolver in declarations:
        dotted = f"{path}.{name}" if path else name
        child, child_resolver = deref(raw, child_resolver)
        # A shared definition's description (what a duration is) says nothing about this key.
        own = raw if isinstance(raw, Mapping) else {}
        description = own.get("description") or ("" if "$ref" in own else keyword(child, child_resolver,
                                                                                    "description", ""))
        default = keyword(child, child_resolver, "default", defaults.get(dotted, ...))
        yield dotted, _type(child, child_resolver), "" if default is ... else _default(default), description
        if properties(child, child_resolver):
            yield from rows(child, child_resolver, dotted, defaults)
        items = keyword(child, child_resolver, "items", None)
        if isinstance(items, Mapping):
            item, item_resolver = deref(items, child_resolver)
            if properties(item, item_resolver):
                yield from rows(item, item_resolver, f"{dotted}[]", defaults)
        extra = keyword(child, child_resolver, "additionalProperties", None)
        if isinstance(extra, Mapping):
            value, value_resolver = deref(extra, child_resolver)
            if properties(value, value_resolver):
                yield from rows(value, value_resolver, f"{dotted}.<name>", defaults)


def merge_rows(found: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """One row per key: the first declaration's type, the first default and description given."""
    merged: dict[str, list[str]] = {}
    for key, kind, default, description in found:
        row = merged.setdefault(key, [kind, default, description])
        row[1] = row[1] or default
        row[2] = row[2] or description
    return [(key, *row) for key, row in merged.items()]


def _table(found: list[tuple[str, str, str, str]], acted: frozenset[str], owned: bool) -> str:
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in found:
        note = description
        plain = key.replace("[]", "").replace(".<name>", "")
        if not owned and not _acted_on(plain, acted):
            note = f"{description} *Accepted, not acted on.*".strip()
        out.append(f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(note)} |")
    return "\n".join(out) + "\n"


def _acted_on(key: str, acted: frozenset[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:i]) in acted for i in range(1, len(parts) + 1)) or any(
        a.startswith(key + ".") for a in acted
    )


def render() -> str:
    from registry.config.schema import deref, resolver_for
    from registry.config.settings import CORE_ACTS_ON

    schema, owners = composed_schema()
    resolver = resolver_for(schema)
    defaults = code_defaults()
    acted = frozenset(CORE_ACTS_ON | set(owners))
    out = [HEADER]
    all_rows = merge_rows(list(rows(schema, resolver, "", defaults)))
    # Plugin parts get a section each, after the core's section they sit in.
    plugin_paths = sorted(owners, key=lambda p: (-p.count("."), p))

    def owner_of(key: str) -> str | None:
        for path in plugin_paths:
            if key == path or key.startswith(path + ".") or key.startswith(path + "["):
                return path
        return None

    top_keys = list(deref(schema, resolver)[0]["properties"])
    for top in top_keys:
        head = next(r for r in all_rows if r[0] == top)
        section = [r for r in all_rows if r[0].startswith(top + ".") and owner_of(r[0]) is None] or [head]
        out.append(f"## `{top}`\n\n")
        if head[3]:
            out.append(_cell(head[3]) + "\n\n")
        out.append(_table(section, acted, owned=False) + "\n")
        for path in sorted(p for p in owners if p == top or p.startswith(top + ".")):
            part = [r for r in all_rows if owner_of(r[0]) == path]
            if not part:
                continue
            out.append(f"### `{path}` ({owners[path]})\n\n")
            about = part[0][3] or DESCRIPTIONS.get(path, "")
            if about:
                out.append(_cell(about) + "\n\n")
            out.append(_table(part[1:], acted, owned=True) + "\n" if part[1:] else "No parameters.\n\n")
        if top == "middleware":
            for name, (dist, about, options) in sorted(MIDDLEWARE.items()):
                out.append(f"### `middleware.storage` entry `name: {name}` ({dist})\n\n{_cell(about)}\n\n")
                part = merge_rows(list(rows(options, resolver_for(options), "options", defaults)))
                out.append(_table(part, acted, owned=True) + "\n" if part else "No options.\n\n")
    return "".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.exists() and TARGET.read_text() == text:
            return 0
        print(f"{TARGET.relative_to(ROOT)} is stale: run `python contrib/dev/gen_config_docs.py`", file=sys.stderr)
        return 1
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
