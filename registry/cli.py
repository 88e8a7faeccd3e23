"""The ``registry`` command: ``serve``, ``plugins``, ``config check`` and ``config schema`` (and the
operations commands of :mod:`registry.ops.commands`).

Every command that reads a configuration takes its path as an optional argument, falling back to
``$REGISTRY_CONFIGURATION_PATH`` (as Distribution's ``registry serve`` does) and then to the built-in
defaults. Exit status: 0 on success, 1 for an unusable configuration, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from registry import __version__
from registry.config import (
    CONFIGURATION_PATH_ENV,
    Config,
    ConfigError,
    config_schema,
    describe_storage,
    load_config,
    log_level,
)
from registry.plugins import create_plugin_manager, describe_plugins, options_of

log = logging.getLogger("registry")

_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``registry`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        args.parser.print_help(sys.stderr)
        return 2
    setup_logging()
    return int(handler(args))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with a ``--help`` for the command and every subcommand."""
    parser = argparse.ArgumentParser(
        prog="registry",
        description="A container registry speaking the OCI Distribution API (a drop-in for CNCF Distribution).",
    )
    parser.set_defaults(parser=parser)
    parser.add_argument("--version", action="version", version=f"registry {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    config_help = (
        "path of config.yml (Distribution's format); default: $REGISTRY_CONFIGURATION_PATH, else the built-in defaults"
    )
    serve = commands.add_parser(
        "serve",
        help="serve the registry",
        description="Load and validate the configuration, then serve the registry with waitress until "
        "SIGTERM or SIGINT (requests in flight get http.draintimeout to finish).",
    )
    serve.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    serve.set_defaults(handler=_serve, parser=serve)

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins",
        description="List every installed plugin: its distribution, version, kind, drivers and hooks.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(handler=_plugins, parser=plugins)

    config = commands.add_parser(
        "config",
        help="check a configuration or print its schema",
        description="Work with configuration files.",
    )
    config.set_defaults(parser=config)
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND")
    check = config_commands.add_parser(
        "check",
        help="validate a configuration",
        description="Validate the configuration (file and REGISTRY_* overrides) against the schema of the "
        "installed plugins. Prints OK, or every error with its key path and exits 1.",
    )
    check.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    check.set_defaults(handler=_config_check, parser=check)
    schema = config_commands.add_parser(
        "schema",
        help="print the configuration's JSON schema",
        description="Print the JSON schema (draft 2020-12) of config.yml, composed with the installed "
        "plugins' parts (storage drivers, access controllers, plugin sections).",
    )
    schema.set_defaults(handler=_config_schema, parser=schema)

    demo = commands.add_parser(
        "demo-image",
        help="write a small OCI image layout to push (offline)",
        description="Write a one-file image (a tiny layer, its config and manifest) into an OCI image "
        "layout at DIRECTORY, tagged TAG, for `skopeo copy oci:DIRECTORY:TAG docker://...`. Needs no network.",
    )
    demo.add_argument(
        "directory", metavar="DIRECTORY", help="the layout's directory (created; an existing layout is added to)"
    )
    demo.add_argument("--tag", default="demo", help="the image's name in the layout (default: demo)")
    demo.add_argument("--arch", default=None, help="the image's architecture (default: this machine's)")
    demo.set_defaults(handler=_demo_image, parser=demo)
    du = commands.add_parser(
        "du",
        help="show the bytes stored per repository",
        description="Walk the storage and print the bytes of each repository (its layers, configs and "
        "manifests, each distinct blob once) and the total (a blob shared by several repositories "
        "once), biggest first. The first argument is the configuration if it is a file; the others "
        "are repository names or prefixes (team-a selects team-a and team-a/*). See docs/quotas.md.",
    )
    du.add_argument("args", nargs="*", metavar="[CONFIG] [REPO-PREFIX...]", help=config_help)
    du.add_argument("--json", action="store_true", help="print JSON instead of a table")
    du.add_argument("--rebuild", action="store_true",
                    help="recompute the quota usage counters from the walk (after enabling quotas on a "
                    "registry holding data, or to make them exact again)")
    du.set_defaults(handler=_du, parser=du)
    from registry.ops.commands import add_commands as add_ops_commands

    add_ops_commands(commands, config_help)  # garbage-collect, scrub, delete-repository
    return parser


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    pm = create_plugin_manager()
    try:
        config = load_config(args.config, os.environ, pm)
    except ConfigError as exc:
        return _refuse(exc, args.config or os.environ.get(CONFIGURATION_PATH_ENV))
    setup_logging(config)
    log.info("configuration: %s", config.source or "built-in defaults")
    try:
        from registry.app import create_app
        from registry.serve import refuse_unserved_tls

        refuse_unserved_tls(config)

        app = create_app(config, pm)  # calls registry_configure
    except ConfigError as exc:
        return _refuse(exc, config.source)

    from registry.serve import Server, run_until_signalled

    try:
        server = Server(app, config)
    except (OSError, ValueError) as exc:  # address in use, host that does not resolve...
        log.error("cannot listen on %s: %s", _addresses(config), exc)
        app.shutdown()
        return 1
    # Started once the listeners are bound, stopped once requests in flight have drained.
    app.startup()
    try:
        run_until_signalled(server, describe=describe_storage(config, pm))
    finally:
        app.shutdown()
    return 0


def _addresses(config: Config) -> str:
    http = options_of(config, "http")
    debug = options_of(config, "http.debug").get("addr")
    main = http.get("addr", "the default address")
    return f"{main} (or the debug address {debug})" if debug else str(main)


def _plugins(args: argparse.Namespace) -> int:
    infos = describe_plugins(create_plugin_manager())
    if args.json:
        rows: list[dict[str, Any]] = [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "kind": info.kind,
                "drivers": list(info.drivers),
                "auth": list(info.auth),
                "hooks": list(info.hooks),
                "descriptions": dict(info.descriptions),
            }
            for info in infos
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "DISTRIBUTION", "VERSION", "KIND", "DRIVERS", "HOOKS")]
    for info in infos:
        hooks = ", ".join(h.removeprefix("registry_") for h in info.hooks)
        drivers = ", ".join(info.drivers + info.auth) or "-"
        table.append((info.name, info.distribution, info.version, info.kind, drivers, hooks or "-"))
    _print_table(table, sys.stdout)
    # What each driver, access controller and middleware is, as its plugin describes it: the name
    # to put in config.yml, and why one would.
    described = [("DRIVER", "PLUGIN", "DESCRIPTION")]
    for info in infos:
        described.extend((name, info.name, text or "-") for name, text in sorted(info.descriptions.items()))
    if len(described) > 1:
        print()
        _print_table(described, sys.stdout)
    return 0


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, os.environ, create_plugin_manager())
        from registry.serve import refuse_unserved_tls

        refuse_unserved_tls(config)  # what `registry serve` would refuse, `config check` reports
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print("OK")
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    try:
        schema = config_schema(create_plugin_manager())
    except ConfigError as exc:
        return _refuse(exc, None)
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def _demo_image(args: argparse.Namespace) -> int:
    from registry.demo import write_demo_image

    try:
        image = write_demo_image(args.directory, tag=args.tag, arch=args.arch)
    except (ValueError, OSError) as exc:
        print(f"registry demo-image: {exc}", file=sys.stderr)
        return 1
    print(f"wrote oci:{image.directory}:{image.tag} ({image.manifest_digest})")
    return 0


def _du(args: argparse.Namespace) -> int:
    from registry.ops.usage import run_du, split_arguments

    path, prefixes = split_arguments(args.args, os.path.isfile)
    pm = create_plugin_manager()
    try:
        config = load_config(path, os.environ, pm)
        return run_du(config, pm, prefixes, as_json=args.json, rebuild=args.rebuild, out=sys.stdout)
    except ConfigError as exc:
        return _refuse(exc, path or os.environ.get(CONFIGURATION_PATH_ENV))


def _refuse(exc: ConfigError, source: str | None) -> int:
    print(f"registry: invalid configuration ({source or 'built-in defaults'}):", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)
    return 1


def _print_table(rows: Sequence[Sequence[str]], stream: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]), file=stream)


# ---------------------------------------------------------------------------------------------
# Logging: log.level, log.formatter and log.fields, to stderr as in Distribution
# ---------------------------------------------------------------------------------------------


def setup_logging(config: Mapping[str, Any] | None = None) -> None:
    """Send logs to stderr with the configuration's level, formatter (``text``, ``json``,
    ``logstash``) and fields (``info``, text and none before a configuration is loaded, so that
    warnings about it are seen). A plugin's lines (loggers under ``registry_<name>``) carry
    ``plugin=<name>``; access-log lines carry their fields (see :mod:`registry.app`)."""
    config = config if config is not None else Config()
    section = options_of(config, "log")
    fields = {str(k): v for k, v in options_of(config, "log.fields").items()}
    kind = section.get("formatter")
    if kind == "json":
        formatter: logging.Formatter = _JsonFormatter(fields)
    elif kind == "logstash":
        formatter = _LogstashFormatter(fields)
    else:
        formatter = _TextFormatter(fields)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(log_level(config), logging.INFO))


def _plugin_of(logger: str) -> str | None:
    """``registry_prometheus.plugin`` -> ``prometheus``: plugins' import packages are
    ``registry_<name>`` (the core's loggers are ``registry.*``)."""
    if logger.startswith("registry_"):
        return logger.partition(".")[0].removeprefix("registry_")
    return None


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    plugin = _plugin_of(record.name)
    if plugin:
        extra["plugin"] = plugin
    access = getattr(record, "access", None)
    if isinstance(access, dict):
        extra.update((k, v) for k, v in access.items() if v is not None)
    return extra


# A text value is quoted (as JSON) when it could be mistaken for another field or line.
_PLAIN = re.compile(r"[\w./:@{}+,;-]*")


def _text_value(value: Any, plain: Callable[[str], Any] = _PLAIN.fullmatch) -> str:
    if type(value) is int or type(value) is float:  # most of an access line: no need to look
        return str(value)
    text = str(value)
    return text if plain(text) else json.dumps(text)


_IN_MESSAGE = frozenset({"method", "route", "status"})


class _TextFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._suffix = "".join(f" {k}={_text_value(v)}" for k, v in fields.items())
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        # strftime once a second, not once a line: the access log writes many lines a second.
        second = int(record.created)
        cached, stamp = self._second
        if cached != second:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
            self._second = (second, stamp)
        return f"{stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        access = record.__dict__.get("access")
        if access is not None:
            # Every request writes one: the same line as below, without the general machinery (the
            # message already says the method, route and status).
            head = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
            return head + "".join([f" {k}={_text_value(v)}" for k, v in access.items()
                                   if v is not None and k not in _IN_MESSAGE]) + self._suffix
        extra = _record_fields(record)
        line = super().format(record)
        if extra:
            line += "".join([f" {k}={_text_value(v)}" for k, v in extra.items()])
        return line + self._suffix


class _JsonFormatter(logging.Formatter):
    def __init__(self, fields: Mapping[str, Any]) -> None:
        super().__init__()
        self._fields = dict(fields)

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_record_fields(record),
            **self._fields,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return entry

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record), default=str)


class _LogstashFormatter(_JsonFormatter):
    """Logstash's JSON event (``@timestamp``, ``@version``, ``message``), as Distribution's
    ``logstash`` formatter writes it."""

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(record)
        event = {"@timestamp": entry.pop("time"), "@version": "1", "message": entry.pop("msg"), **entry}
        return json.dumps(event, default=str)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
