"""Validation: every problem with a configuration, one line each, prefixed with its key path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jsonschema

from registry.config.durations import parse_duration
from registry.config.model import NO_AUTH, STORAGE_KEYS, KeyPath, dotted
from registry.config.schema import choices, config_schema
from registry.config.settings import parse_addr

if TYPE_CHECKING:
    import pluggy

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
        lines.append((dotted(path) or "(root)", f"{message}{suffix}"))
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


def _selection_problems(
    config: Mapping[str, Any], schema: Mapping[str, Any], overrides: Mapping[str, KeyPath]
) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if "version" in config and config["version"] not in ("0.1", 0.1):
        problems.append((("version",), f"unsupported version {config['version']!r} (this registry reads 0.1)"))
    drivers = choices(schema, "storage")
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
        backends = choices(schema, "auth")
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
    from registry.proxy.settings import proxy_problems

    problems: list[tuple[KeyPath, str]] = [(("proxy",), p.removeprefix("proxy: ").removeprefix("proxy."))
                                           for p in proxy_problems(config)]
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
