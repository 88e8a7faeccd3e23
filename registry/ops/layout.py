"""Enumerating the storage layout through the driver API only (no file system shortcut), so that
garbage collection, scrub and repository delete work on every driver.

Every name read from a listing is validated (a digest by :func:`registry.digests.parse_digest`, a
repository name by the spec's grammar) before it is used to build a path; anything else found in the
tree is skipped and logged, never deleted.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

from registry.digests import ALGORITHMS, Digest, parse_digest
from registry.errors import DigestInvalid
from registry.grammar import NAME_RE
from registry.storage import paths
from registry.storage.driver import Capability, FileInfo, PathNotFoundError, StorageDriver
from registry.storage.store import Store

log = logging.getLogger(__name__)


def _leaf(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _digest(algorithm: str, encoded: str, where: str) -> Digest | None:
    try:
        return parse_digest(f"{algorithm}:{encoded}")
    except DigestInvalid:
        log.warning("skipping %s: not a digest directory", where)
        return None


def list_children(driver: StorageDriver, path: str) -> list[str]:
    """Sorted child paths of ``path``; ``[]`` when it does not exist."""
    try:
        return sorted(driver.list(path))
    except PathNotFoundError:
        return []


def linked_digests(driver: StorageDriver, base: str) -> list[Digest]:
    """Digests of the ``<base>/<alg>/<hex>`` directories (layer links, manifest revisions): one
    walk on a driver with :attr:`Capability.FLAT_WALK` (a call per 1,000 links), else a listing
    per algorithm directory."""
    found = []
    if Capability.FLAT_WALK in driver.capabilities:
        cut = len(base) + 1
        try:
            for info in driver.walk(base):
                parts = info.path[cut:].split("/")
                if len(parts) == 1 and parts[0] not in ALGORITHMS:
                    log.warning("skipping %s: unknown digest algorithm", info.path)
                elif len(parts) == 2 and parts[0] in ALGORITHMS:
                    d = _digest(parts[0], parts[1], info.path)
                    if d is not None:
                        found.append(d)
        except PathNotFoundError:
            pass
        return found
    for alg_dir in list_children(driver, base):
        algorithm = _leaf(alg_dir)
        if algorithm not in ALGORITHMS:
            log.warning("skipping %s: unknown digest algorithm", alg_dir)
            continue
        for entry in list_children(driver, alg_dir):
            d = _digest(algorithm, _leaf(entry), entry)
            if d is not None:
                found.append(d)
    return found


class BlobEntry(NamedTuple):
    """A blob directory found in the blob store, and what the listing told of its ``data`` file."""

    digest: Digest
    #: The data file as the walk saw it (size and modification time), ``None`` when it saw none.
    data: FileInfo | None
    #: Whether ``data`` comes from a walk (``None`` then means: no data file); else the caller stats.
    walked: bool


def iter_blobs(driver: StorageDriver) -> Iterator[Digest]:
    """Every ``blobs/<alg>/<hex[:2]>/<hex>`` directory's digest, in path order, listed lazily (so
    memory stays bounded however many blobs)."""
    for entry in iter_blob_entries(driver):
        yield entry.digest


def iter_blob_entries(driver: StorageDriver) -> Iterator[BlobEntry]:
    """:func:`iter_blobs` with what the listing knows of each blob's data. A driver with
    :attr:`Capability.FLAT_WALK` is walked (a call per 1,000 objects, sizes and times included);
    any other is listed one two-character prefix directory at a time (a call per directory, and
    the caller stats what it needs)."""
    if Capability.FLAT_WALK in driver.capabilities:
        yield from _walk_blobs(driver)
        return
    for d in _list_blobs(driver):
        yield BlobEntry(d, None, False)


def _walk_blobs(driver: StorageDriver) -> Iterator[BlobEntry]:
    cut = len(paths.BLOBS) + 1
    skipped = ""  # an algorithm directory being skipped
    pending: Digest | None = None
    data: FileInfo | None = None
    try:
        for info in driver.walk(paths.BLOBS):
            parts = info.path[cut:].split("/")
            if len(parts) == 1:
                skipped = "" if parts[0] in ALGORITHMS else parts[0]
                if skipped:
                    log.warning("skipping %s: unknown digest algorithm", info.path)
                continue
            if skipped and parts[0] == skipped or len(parts) < 3:
                continue
            if len(parts) == 3:
                if pending is not None:
                    yield BlobEntry(pending, data, True)
                d = _digest(parts[0], parts[2], info.path)
                pending, data = (d, None) if d is not None and d.hex[:2] == parts[1] else (None, None)
            elif (len(parts) == 4 and parts[3] == "data" and not info.is_dir and pending is not None
                  and parts[2] == pending.hex):
                data = info
    except PathNotFoundError:
        pass  # no blob store (yet)
    if pending is not None:
        yield BlobEntry(pending, data, True)


def _list_blobs(driver: StorageDriver) -> Iterator[Digest]:
    for alg_dir in list_children(driver, paths.BLOBS):
        algorithm = _leaf(alg_dir)
        if algorithm not in ALGORITHMS:
            log.warning("skipping %s: unknown digest algorithm", alg_dir)
            continue
        for prefix_dir in list_children(driver, alg_dir):
            for entry in list_children(driver, prefix_dir):
                d = _digest(algorithm, _leaf(entry), entry)
                if d is not None and d.hex[:2] == _leaf(prefix_dir):
                    yield d


def iter_repositories(store: Store) -> Iterator[str]:
    """Every repository name (as the catalog lists them), skipping directories whose names the
    spec's grammar refuses (they cannot have been pushed through the API)."""
    for name in store.repositories():
        if NAME_RE.match(name):
            yield name
        else:
            log.warning("skipping repository directory %r: not a valid repository name", name)


class References(NamedTuple):
    """What a stored manifest refers to."""

    blobs: tuple[Digest, ...]  # config and layers (Docker schema 1: fsLayers)
    children: tuple[Digest, ...]  # an index's manifests
    subject: Digest | None


def _ref(desc: Any) -> Digest | None:
    if isinstance(desc, dict) and isinstance(desc.get("digest"), str):
        try:
            return parse_digest(desc["digest"])
        except DigestInvalid:
            return None
    return None


def references(raw: bytes) -> References | None:
    """The references of manifest bytes, or ``None`` when they are not a JSON manifest. Lighter than
    full validation: the registry validated what it stored, and a collector must read every
    manifest of the registry."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    blobs = [_ref(doc.get("config")), *(_ref(x) for x in doc.get("layers") or () if isinstance(x, dict))]
    for layer in doc.get("fsLayers") or ():  # Docker schema 1, which Distribution may hold
        if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str):
            blobs.append(_ref({"digest": layer["blobSum"]}))
    children = [_ref(x) for x in doc.get("manifests") or () if isinstance(x, dict)]
    return References(tuple(d for d in blobs if d is not None), tuple(d for d in children if d is not None),
                      _ref(doc.get("subject")))


def utc(value: datetime.datetime | None) -> datetime.datetime | None:
    """``value`` as an aware UTC time (drivers may give naive UTC times)."""
    if value is None:
        return None
    return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)
