"""The operations subcommands of ``registry``: ``garbage-collect``, ``scrub`` and
``delete-repository`` (docs/operations.md). Each loads the configuration as ``registry serve`` does
and works on the configured storage through its driver.

Exit status: 0 success; 1 an unusable configuration, a storage failure or (``delete-repository``)
deletes disabled; 2 a usage error; 3 ``scrub`` found corrupt content, or ``delete-repository`` an
unknown repository; 4 ``garbage-collect`` finished, but some deletions failed (see the errors).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from registry.config import ConfigError, build_storage, delete_enabled, load_config, parse_duration
from registry.ops.progress import Progress
from registry.ops.quota import attach_quotas
from registry.storage.driver import StorageError
from registry.storage.store import Store

log = logging.getLogger("registry.ops")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FOUND_BAD, EXIT_PARTIAL = 0, 1, 2, 3, 4


def add_commands(commands: Any, config_help: str) -> None:
    """Add the subcommands to ``registry``'s subparsers."""
    gc = commands.add_parser(
        "garbage-collect",
        help="delete blobs and manifests that nothing references",
        description="Mark every blob and manifest reachable from a tag (following indexes and referrers), "
        "then delete the rest. Safe while the registry serves pushes: anything written after the run "
        "started, or within the grace period before, is kept. See docs/operations.md.",
    )
    gc.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    gc.add_argument("-d", "--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    gc.add_argument("-m", "--delete-untagged", action="store_true",
                    help="also delete manifests no tag reaches (never an index's children or a kept "
                    "manifest's referrers), and layer links no kept manifest uses")
    gc.add_argument("--grace", metavar="DURATION", default="1h",
                    help="keep anything written less than this long before the run started (default 1h; "
                    "0 keeps only what is written during the run, and may fail pushes in flight)")
    gc.add_argument("--settle", metavar="DURATION", default="2s",
                    help="pause between unlinking and the final check, for requests in flight (default 2s)")
    gc.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    gc.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    gc.set_defaults(handler=_garbage_collect, parser=gc)

    scrub = commands.add_parser(
        "scrub",
        help="re-hash stored blobs and manifests, report corruption",
        description="Re-hash every stored blob (streaming) and check every manifest revision; report any "
        "whose content does not match its digest. Exits 3 when something is bad.",
    )
    scrub.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    scrub.add_argument("--quarantine", action="store_true",
                       help="move corrupt blobs to _quarantine/ in the storage, so they are no longer served")
    scrub.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    scrub.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    scrub.set_defaults(handler=_scrub, parser=scrub)

    delete = commands.add_parser(
        "delete-repository",
        help="delete a repository's tags, manifests and layer links",
        description="Delete repository NAME: its tags, manifests, layer links and uploads (blobs are left "
        "to garbage-collect). Requires storage.delete.enabled.",
    )
    delete.add_argument("name", metavar="NAME", help="the repository, e.g. library/alpine")
    delete.add_argument("config", nargs="?", metavar="CONFIG", help=config_help)
    delete.set_defaults(handler=_delete_repository, parser=delete)


def _open(args: argparse.Namespace) -> tuple[dict[str, Any], Store] | int:
    from registry.cli import _refuse, setup_logging
    from registry.plugins import create_plugin_manager

    pm = create_plugin_manager()
    try:
        config = load_config(args.config, os.environ, pm)
        setup_logging(config)
        driver = build_storage(config, pm)
    except ConfigError as exc:
        return _refuse(exc, args.config or os.environ.get("REGISTRY_CONFIGURATION_PATH"))
    # Deletes through a store with the quota counters attached give the space back.
    return config, attach_quotas(Store(driver), config)


def _quiet(args: argparse.Namespace) -> None:
    if args.quiet:  # as Distribution's --quiet: warnings and errors only
        logging.getLogger("registry.ops").setLevel(logging.WARNING)


def _duration(value: str, what: str) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"{what}: {exc}"]) from None


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr if args.json else sys.stdout)


def _garbage_collect(args: argparse.Namespace) -> int:
    from registry.ops.gc import GarbageCollector

    opened = _open(args)
    if isinstance(opened, int):
        return opened
    _, store = opened
    _quiet(args)
    try:
        grace, settle = _duration(args.grace, "--grace"), _duration(args.settle, "--settle")
    except ConfigError as exc:
        print(f"registry garbage-collect: {exc.errors[0]}", file=sys.stderr)
        return EXIT_USAGE
    gc = GarbageCollector(store, dry_run=args.dry_run, delete_untagged=args.delete_untagged, grace=grace,
                          settle=settle, progress=Progress(enabled=None if not args.quiet else False))
    try:
        result = gc.run()
    except StorageError as exc:
        print(f"registry garbage-collect: storage failed, stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.driver.close()
    if args.dry_run and not args.quiet:
        for item in result.deleted_revisions:
            _say(args, f"manifest eligible for deletion: {item}")
        for item in result.deleted_blobs:
            _say(args, f"blob eligible for deletion: {item}")
    _say(args, ("dry run: " if args.dry_run else "") + result.summary())
    if args.json:
        doc = {k: v for k, v in vars(result).items() if k not in ("deleted_blobs", "deleted_revisions")}
        print(json.dumps(doc))
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_PARTIAL if result.errors else EXIT_OK


def _scrub(args: argparse.Namespace) -> int:
    from registry.ops.scrub import scrub

    opened = _open(args)
    if isinstance(opened, int):
        return opened
    _, store = opened
    _quiet(args)
    try:
        result = scrub(store, quarantine=args.quarantine, progress=Progress(enabled=None if not args.quiet else False))
    except StorageError as exc:
        print(f"registry scrub: storage failed, stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.driver.close()
    for line in result.corrupt:
        print(f"corrupt blob {line}", file=sys.stderr)
    for line in result.broken:
        print(f"broken revision {line}", file=sys.stderr)
    for line in result.quarantined:
        print(f"quarantined {line}", file=sys.stderr)
    for line in result.errors:
        print(f"error: {line}", file=sys.stderr)
    _say(args, result.summary())
    if args.json:
        print(json.dumps(dataclasses.asdict(result)))
    if result.bad:
        return EXIT_FOUND_BAD
    return EXIT_ERROR if result.errors else EXIT_OK


def _delete_repository(args: argparse.Namespace) -> int:
    from registry.grammar import NAME_RE
    from registry.ops.repodelete import RepositoryUnknownError, delete_repository

    if not NAME_RE.match(args.name):
        print(f"registry delete-repository: {args.name[:200]!r} is not a valid repository name", file=sys.stderr)
        return EXIT_USAGE
    opened = _open(args)
    if isinstance(opened, int):
        return opened
    config, store = opened
    try:
        if not delete_enabled(config):
            print("registry delete-repository: deletion is disabled (set storage.delete.enabled: true)",
                  file=sys.stderr)
            return EXIT_ERROR
        try:
            done = delete_repository(store, args.name)
        except RepositoryUnknownError:
            print(f"registry delete-repository: repository {args.name!r} is not known to this registry",
                  file=sys.stderr)
            return EXIT_FOUND_BAD
        except StorageError as exc:
            print(f"registry delete-repository: storage failed, stopped (run it again to finish): "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_ERROR
    finally:
        store.driver.close()
    print(f"deleted repository {done.name}: {done.tags} tags, {done.manifests} manifests, {done.layers} layer links "
          "(run garbage-collect to free the blobs)")
    return EXIT_OK
