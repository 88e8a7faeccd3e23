"""``registry du``: bytes per repository, and the walk that rebuilds the quota counters.

A repository's usage is the bytes of the distinct blobs linked in it: its layers and configs
(``_layers``) and its manifests (``_manifests/revisions``), each digest once even when it is linked
both ways. The total counts a blob shared by several repositories once. Everything goes through
the storage driver API (``list``, ``stat``, ``get_content``, ``put_content``, ``delete``), so it works
on every driver: file system, S3/RGW, Azure.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from registry.digests import Digest, parse_digest
from registry.ops.layout import iter_blob_entries
from registry.ops.quota import BASE, human_size, namespaces
from registry.storage import paths
from registry.storage.driver import Capability, FileInfo, PathNotFoundError, StorageDriver, StorageError
from registry.storage.store import Store

if TYPE_CHECKING:
    import pluggy

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RepositoryUsage:
    """One repository's row: its bytes, its distinct blobs, and the linked ones whose data is gone."""

    name: str
    bytes: int = 0
    blobs: int = 0
    missing: int = 0


@dataclasses.dataclass
class UsageReport:
    """Per-repository usage and the total over them (each distinct blob once)."""

    repositories: list[RepositoryUsage]
    total_bytes: int
    total_blobs: int

    def to_dict(self) -> dict:
        return {
            "repositories": [dataclasses.asdict(r) for r in self.repositories],
            "total": {"bytes": self.total_bytes, "blobs": self.total_blobs,
                      "repositories": len(self.repositories)},
        }


def _digests_under(driver: StorageDriver, base: str) -> Iterator[Digest]:
    """The digests of ``<base>/<alg>/<hex>`` directories (link directories, named by digest): one
    walk on a driver with :attr:`Capability.FLAT_WALK`, else a listing per directory."""
    if Capability.FLAT_WALK in driver.capabilities:
        listing = ((info.path.rsplit("/", 2)[1], info.path) for info in _walk(driver, base)
                   if info.path.count("/") == base.count("/") + 2)
    else:
        listing = ((alg_dir.rsplit("/", 1)[1], entry) for alg_dir in _list(driver, base)
                   for entry in _list(driver, alg_dir))
    for alg, entry in listing:
        try:
            yield parse_digest(f"{alg}:{entry.rsplit('/', 1)[1]}")
        except Exception:  # not a digest: nothing the registry wrote; not counted
            log.warning("ignoring %s: not a digest's link directory", entry)


def _list(driver: StorageDriver, path: str) -> list[str]:
    try:
        return driver.list(path)
    except PathNotFoundError:
        return []


def _walk(driver: StorageDriver, path: str) -> Iterator[FileInfo]:
    try:
        yield from driver.walk(path)
    except PathNotFoundError:
        return


def linked_digests(driver: StorageDriver, name: str) -> set[Digest]:
    """Every digest linked in repository ``name``: layers, configs and manifest revisions."""
    found = set(_digests_under(driver, paths.layers_dir(name)))
    found.update(_digests_under(driver, f"{paths.manifests_dir(name)}/revisions"))
    return found


def walk_tree(driver: StorageDriver) -> Iterator[tuple[str, bool, bool]]:
    """Every directory under ``repositories/`` as ``(name, is_repository, has_counters)``, parents
    first, siblings sorted."""

    def walk(path: str, prefix: str) -> Iterator[tuple[str, bool, bool]]:
        try:
            children = sorted(c.rsplit("/", 1)[1] for c in driver.list(path))
        except PathNotFoundError:
            return
        if prefix:
            is_repo = "_layers" in children or "_manifests" in children
            yield prefix, is_repo, "_usage" in children
        for child in children:
            if not child.startswith("_"):
                yield from walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child)

    yield from walk(paths.REPOSITORIES, "")


def selected(name: str, prefixes: Sequence[str]) -> bool:
    """Whether ``name`` is one of ``prefixes`` or below one (``team-a`` selects ``team-a/web``)."""
    return not prefixes or any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)


def disk_usage(store: Store, prefixes: Sequence[str] = (),
               repositories: Iterable[str] | None = None) -> UsageReport:
    """Walk the repositories (all, or those at or below ``prefixes``) and sum their linked blobs.

    Each distinct blob is stat'ed once however many repositories link it (on a driver with
    :attr:`Capability.FLAT_WALK`, counting everything, its size is read from one walk of the blob
    store instead).
    """
    driver = store.driver
    names = repositories if repositories is not None else (n for n, repo, _ in walk_tree(driver) if repo)
    sizes: dict[Digest, int | None] = {}
    stored: dict[Digest, int] | None = None
    if not prefixes and Capability.FLAT_WALK in driver.capabilities:
        # Every blob's size from one walk of the blob store (a call per 1,000 blobs), instead of a
        # stat per blob; the whole registry is counted, so nearly every blob is needed anyway.
        stored = {e.digest: e.data.size for e in iter_blob_entries(driver) if e.data is not None}
    rows = []
    for name in names:
        if not selected(name, prefixes):
            continue
        row = RepositoryUsage(name)
        for d in linked_digests(driver, name):
            if d not in sizes:
                # Not walked: stored since the walk (a push meanwhile), or missing: ask.
                sizes[d] = stored[d] if stored is not None and d in stored else store.blob_size(d)
            size = sizes[d]
            row.blobs += 1
            if size is None:
                row.missing += 1
            else:
                row.bytes += size
        rows.append(row)
    rows.sort(key=lambda r: (-r.bytes, r.name))
    present = [s for s in sizes.values() if s is not None]
    return UsageReport(rows, sum(present), len(present))


def rebuild_counters(store: Store) -> UsageReport:
    """Recompute every quota counter from a walk: each repository's and namespace's ``_usage`` is
    replaced by one ``base`` file holding what the walk found.

    Pushes running meanwhile may be counted twice or not at all (a writer that read its counter
    before the rebuild writes it back after); run it when pushes are few, or run it again.
    """
    driver = store.driver
    tree = list(walk_tree(driver))
    report = disk_usage(store, repositories=[n for n, repo, _ in tree if repo])
    own = {r.name: r.bytes for r in report.repositories}
    totals: dict[str, int] = {}
    for name, size in own.items():
        for p in namespaces(name):
            totals[p] = totals.get(p, 0) + size
    # The new base first, then the writers' files: the counters are never lower than the truth
    # meanwhile (under-admitting), only briefly higher.
    for p, total in totals.items():
        driver.put_content(paths.usage_file(p, BASE), f"{own.get(p, 0)} {total}\n".encode())
    for name, _, has_counters in tree:
        if not has_counters:
            continue
        try:
            if name not in totals:  # nothing below it any more
                driver.delete(paths.usage_dir(name))
                continue
            for f in driver.list(paths.usage_dir(name)):
                if f.rsplit("/", 1)[1] != BASE:
                    driver.delete(f)
        except PathNotFoundError:
            pass
    return report


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def split_arguments(args: Sequence[str], is_file: Callable[[str], bool]) -> tuple[str | None, list[str]]:
    """``registry du [CONFIG] [REPO-PREFIX...]``: the first argument is the configuration when it
    names a file or ends in ``.yml``/``.yaml`` (a repository name can do neither: it has no upper
    case and a file is what the shell completed), the rest are prefixes."""
    if args and (args[0].endswith((".yml", ".yaml")) or is_file(args[0])):
        return args[0], list(args[1:])
    return None, list(args)


def format_table(report: UsageReport) -> list[tuple[str, str, str, str]]:
    """The human table, biggest first, with the total (shared blobs once) last."""
    rows = [("REPOSITORY", "SIZE", "BYTES", "BLOBS")]
    for r in report.repositories:
        blobs = f"{r.blobs}" + (f" ({r.missing} missing)" if r.missing else "")
        rows.append((r.name, human_size(r.bytes), str(r.bytes), blobs))
    rows.append((f"TOTAL ({len(report.repositories)} repositories, shared blobs once)",
                 human_size(report.total_bytes), str(report.total_bytes), str(report.total_blobs)))
    return rows


def run_du(config: Mapping[str, Any], pm: pluggy.PluginManager, prefixes: Sequence[str], *, as_json: bool,
           rebuild: bool, out: TextIO) -> int:
    """``registry du``: print the usage (and with ``rebuild`` first rewrite the quota counters)."""
    from registry.config import build_storage
    from registry.grammar import NAME_RE

    bad = [p for p in prefixes if not NAME_RE.match(p.rstrip("/"))]
    if bad:
        print(f"registry du: {bad[0]!r} is not a repository name or prefix", file=sys.stderr)
        return 2
    if rebuild and prefixes:
        print("registry du: --rebuild recomputes every counter; give no prefix", file=sys.stderr)
        return 2
    store = Store(build_storage(config, pm))
    try:
        report = rebuild_counters(store) if rebuild else disk_usage(store, prefixes)
    except StorageError as exc:
        print(f"registry du: the storage failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.driver.close()
    if as_json:
        print(json.dumps(report.to_dict(), indent=2), file=out)
        return 0
    rows = format_table(report)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))])
              .rstrip(), file=out)
    if rebuild:
        print(f"rebuilt the usage counters of {len(report.repositories)} repositories", file=out)
    return 0
