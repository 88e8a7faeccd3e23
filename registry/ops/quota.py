"""Quotas: usage counters kept in the storage itself, and the checks that refuse a push over a limit.

Usage is counted as ``registry du`` counts it (:mod:`registry.ops.usage`): the bytes of the distinct
blobs and manifests linked in a repository (``_layers`` and ``_manifests/revisions`` links), each
once per repository. The counters change where links change, in :class:`registry.storage.store.Store`
(``link_layer``, ``unlink_layer``, ``put_manifest``, ``delete_manifest``), so a push never walks the
tree; with no quota rule configured the store has no :class:`Quotas` and does no counter I/O at all.

Layout: ``repositories/<p>/_usage/<writer>`` for every leading path ``p`` of a repository name (for
``team-a/web/api``: ``team-a``, ``team-a/web``, ``team-a/web/api``). Each file holds two integers,
``own tree``: the bytes this writer added to the repository named ``p`` itself, and to every
repository at or below ``p``. The usage of ``p`` is the sum over its files. A writer is one process
(``w-<host>-<pid>``): only it rewrites its file (read, add, write back, under a lock of its own), so
processes sharing a bucket never lose each other's updates on a storage without compare-and-swap.
``registry du --rebuild`` recomputes every counter by a walk and writes one ``base`` file per path.

How exact it is (also in docs/quotas.md):

- Counting is exact for pushes that do not race: each link change adds or subtracts its bytes once.
- A blob upload's bytes are reserved (checked and counted) at its final request, before its data
  is stored or moved, in one step per process: pushes in one process never over-admit. Across
  processes, a reservation is visible once its counter file is written (milliseconds): pushes
  reserving in that window may each pass, so a limit can be over-admitted by at most the blobs
  reserved at the same moment in other processes.
- The same blob linked into one repository by two pushes at the same instant can be counted twice
  (over-counted, never under-counted); a crash between counting and linking also over-counts.
  ``registry du --rebuild`` makes the counters exact again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageDriver
from registry.storage.store import QuotaExceededError

if TYPE_CHECKING:
    from registry.config.settings import QuotaRule
    from registry.digests import Digest
    from registry.storage.store import Store

log = logging.getLogger(__name__)

#: The counter file ``registry du --rebuild`` writes (writers' files start with ``w-``).
BASE = "base"

_STRIPES = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def writer_id() -> str:
    """This process's counter file name: host and pid (two live processes never share both)."""
    host = _UNSAFE.sub("-", socket.gethostname()).strip("-.")[:80] or "host"
    return f"w-{host}-{os.getpid()}"


def namespaces(name: str) -> list[str]:
    """Every leading path of ``name``, the name itself last: ``a/b`` -> ``["a", "a/b"]``."""
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def human_size(n: int) -> str:
    """``10485760`` -> ``10.0 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_counter(raw: bytes) -> tuple[int, int]:
    """A counter file's ``own tree``; ``(0, 0)`` for a damaged one (logged; a rebuild repairs it)."""
    try:
        own, tree = raw.decode("ascii").split()
        return int(own), int(tree)
    except (UnicodeDecodeError, ValueError):
        log.warning("ignoring a damaged usage counter file (%r); run `registry du --rebuild`", raw[:40])
        return 0, 0


def read_usage(driver: StorageDriver, path_name: str) -> tuple[int, int]:
    """``(own, tree)`` bytes of the repository or namespace ``path_name``: the sum of its counter
    files, never below 0 (a delete of something counted before quotas were on goes below)."""
    try:
        files = driver.list(paths.usage_dir(path_name))
    except PathNotFoundError:
        return 0, 0
    own = tree = 0
    for f in files:
        try:
            o, t = parse_counter(driver.get_content(f))
        except PathNotFoundError:  # a rebuild replaced it meanwhile
            continue
        own, tree = own + o, tree + t
    return max(own, 0), max(tree, 0)


class Quotas:
    """Usage counters and quota checks over one storage, for :class:`~registry.storage.store.Store`.

    Thread-safe; any number of processes may share the storage (see the module docstring).
    """

    def __init__(self, driver: StorageDriver, rules: Sequence[QuotaRule]) -> None:
        self.driver = driver
        self.rules = tuple(rules)
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        # A check and the count it admits are one step in this process: per first name component,
        # which every repository and namespace a rule may limit for a name shares.
        self._admit_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._pending = threading.local()
        self._writer = ("", -1)
        self._applicable: dict[str, list[tuple[QuotaRule, str]]] = {}

    # -- counters --------------------------------------------------------------------------------

    def writer(self) -> str:
        pid = os.getpid()
        if self._writer[1] != pid:  # a forked child must not rewrite its parent's file
            self._writer = (writer_id(), pid)
        return self._writer[0]

    def add(self, name: str, delta: int) -> None:
        """Add ``delta`` bytes to repository ``name`` and to each namespace above it."""
        if not delta:
            return
        writer = self.writer()
        for p in namespaces(name):
            path = paths.usage_file(p, writer)
            with self._locks[hash(path) % _STRIPES]:
                try:
                    own, tree = parse_counter(self.driver.get_content(path))
                except PathNotFoundError:
                    own = tree = 0
                if p == name:
                    own += delta
                tree += delta
                self.driver.put_content(path, f"{own} {tree}\n".encode())

    def forget_repository(self, name: str) -> int:
        """Give back everything repository ``name`` holds (its own bytes, from it and from every
        namespace above it): what a repository delete calls before removing the repository's
        directory, whose ``_usage`` goes with it. Returns the bytes given back."""
        own = self.usage(name)[0]
        self.add(name, -own)
        return own

    def usage(self, name: str) -> tuple[int, int]:
        return read_usage(self.driver, name)

    # -- checks ----------------------------------------------------------------------------------

    def applicable(self, name: str) -> list[tuple[QuotaRule, str]]:
        """The rules limiting ``name``, each with what it limits (the repository, or a namespace)."""
        found = self._applicable.get(name)
        if found is None:
            found = []
            for rule in self.rules:
                if rule.scope == "namespace":
                    found += [(rule, p) for p in namespaces(name) if rule.matches(p)]
                elif rule.matches(name):
                    found.append((rule, name))
            if len(self._applicable) > 4096:
                self._applicable.clear()
            self._applicable[name] = found
        return found

    def check(self, name: str, extra: int) -> None:
        """Raise :class:`QuotaExceededError` if ``extra`` more bytes in ``name`` would take it, or a
        namespace above it, over a limit."""
        for rule, subject, used in self._limits(name):
            if used + extra > rule.limit:
                raise _refusal(rule, subject, used, extra)

    def _limits(self, name: str) -> Iterator[tuple[QuotaRule, str, int]]:
        """Each rule limiting ``name``, with what it limits and that subject's usage now."""
        seen: dict[str, tuple[int, int]] = {}
        for rule, subject in self.applicable(name):
            if subject not in seen:
                seen[subject] = self.usage(subject)
            own, tree = seen[subject]
            yield rule, subject, tree if rule.scope == "namespace" else own

    def headroom(self, name: str) -> int | None:
        """The bytes ``name`` may still grow by under every rule limiting it (``0`` when it is at or
        over a limit); ``None`` when no rule limits it."""
        rooms = [rule.limit - used for rule, _, used in self._limits(name)]
        return max(min(rooms), 0) if rooms else None

    def refusal(self, name: str, extra: int) -> QuotaExceededError:
        """The refusal of ``extra`` more bytes in ``name``: that of the first rule they go over, or of
        the rule with the least room left when none does now (usage went down meanwhile: a body
        of unknown length is refused once it passed the room measured when it started)."""
        tightest: tuple[int, QuotaRule, str, int] | None = None
        for rule, subject, used in self._limits(name):
            if used + extra > rule.limit:
                return _refusal(rule, subject, used, extra)
            if tightest is None or rule.limit - used < tightest[0]:
                tightest = (rule.limit - used, rule, subject, used)
        if tightest is None:
            raise ValueError(f"no quota rule limits {name!r}")
        return _refusal(*tightest[1:], extra)

    def _admitting(self, name: str) -> threading.Lock:
        return self._admit_locks[hash(name.partition("/")[0]) % _STRIPES]

    def _check_and_add(self, name: str, size: int) -> None:
        if self.applicable(name):
            with self._admitting(name):
                self.check(name, size)
                self.add(name, size)
        else:
            self.add(name, size)

    def _reservations(self) -> dict[tuple[str, Digest], int]:
        pending = getattr(self._pending, "map", None)
        if pending is None:
            pending = self._pending.map = {}
        return pending

    def reserve(self, store: Store, name: str, d: Digest, size: int) -> None:
        """Check and count ``size`` bytes for blob ``d`` in ``name`` now, before its data arrives, so
        that pushes running at the same time see each other (one step in this process, a few
        milliseconds apart across processes). The link that follows in this thread uses the
        reservation; :meth:`release` gives back one that was not used."""
        if self.counted(store, name, d):
            return
        self._check_and_add(name, size)
        self._reservations()[(name, d)] = size

    def release(self, name: str, d: Digest) -> None:
        """Give back the reservation of ``d`` in ``name`` if the link did not use it."""
        size = self._reservations().pop((name, d), None)
        if size:
            self.add(name, -size)

    def counted(self, store: Store, name: str, d: Digest) -> bool:
        """Whether ``d``'s bytes are already counted in ``name`` (as a layer or a manifest)."""
        return store.has_layer_link(name, d) or store.has_manifest(name, d)

    def check_blob(self, store: Store, name: str, d: Digest | None, size: int) -> None:
        """Check a blob of ``size`` bytes about to be stored (``d`` when known): nothing if it is
        already counted in ``name``."""
        if not self.applicable(name):
            return
        if d is not None and self.counted(store, name, d):
            return
        self.check(name, size)

    # -- what Store calls where links change ------------------------------------------------------

    def admit_layer(self, store: Store, name: str, d: Digest, size: int) -> None:
        reserved = self._reservations().get((name, d))
        if reserved is not None and reserved >= size:
            return
        self.check_blob(store, name, d, size - (reserved or 0))

    def count_layer(self, store: Store, name: str, d: Digest) -> int:
        reserved = self._reservations().pop((name, d), None)
        if reserved is not None:
            size = store.blob_size(d) or 0
            if size != reserved:  # the upload was not the size it said
                self.add(name, size - reserved)
            return size
        if self.counted(store, name, d):
            return 0
        size = store.blob_size(d) or 0
        if size:
            self._check_and_add(name, size)
        return size

    def layer_bytes(self, store: Store, name: str, d: Digest) -> int:
        if not store.has_layer_link(name, d) or store.has_manifest(name, d):
            return 0
        return store.blob_size(d) or 0

    def count_manifest(self, store: Store, name: str, d: Digest, size: int) -> int:
        if self.counted(store, name, d):
            return 0
        self._check_and_add(name, size)
        return size

    def manifest_bytes(self, store: Store, name: str, d: Digest) -> int:
        if store.has_layer_link(name, d) or not store.has_manifest(name, d):
            return 0
        return store.blob_size(d) or 0


def _refusal(rule: QuotaRule, subject: str, used: int, extra: int) -> QuotaExceededError:
    kind = "namespace" if rule.scope == "namespace" else "repository"
    return QuotaExceededError(
        f"quota exceeded: {kind} {subject!r} uses {human_size(used)} ({used} bytes) of its "
        f"{human_size(rule.limit)} ({rule.limit} bytes) limit, and this push needs "
        f"{human_size(extra)} ({extra} bytes) more (rule {rule.describe()})",
        detail={"rule": rule.index, "pattern": rule.pattern, "scope": rule.scope,
                kind: subject, "limit": rule.limit, "usage": used, "requested": extra},
    )


def attach_quotas(store: Store, config: Mapping[str, Any]) -> Store:
    """Give ``store`` the configuration's quota counters (nothing without ``quotas:`` rules): what
    any tool that links or unlinks through the store (the API, garbage collection, a repository
    delete) calls, so that its changes are counted and give space back. Returns ``store``."""
    from registry.config.model import Config
    from registry.config.settings import quota_rules

    rules = config.settings.quotas if isinstance(config, Config) else quota_rules(config)
    if rules:
        store.quota = Quotas(store.driver, rules)
    return store


@contextlib.contextmanager
def reservation(store: Store, name: str, d: Digest, size: int | None) -> Iterator[None]:
    """Reserve ``size`` bytes for blob ``d`` in ``name`` while the block stores and links it
    (:meth:`Quotas.reserve`), giving back what the link did not use; nothing without a rule for
    ``name`` or with ``size`` ``None``. Raises :class:`QuotaExceededError` before the block runs."""
    quota = store.quota
    if quota is None or size is None or not quota.applicable(name):
        yield
        return
    quota.reserve(store, name, d, size)
    try:
        yield
    finally:
        quota.release(name, d)


def check_blob(store: Store, name: str, d: Digest | None, size: int) -> None:
    """The handlers' early check of a declared size (``Content-Length``): nothing without quotas."""
    quota = store.quota
    if quota is not None:
        quota.check_blob(store, name, d, size)


def body_budget(store: Store, name: str, d: Digest | None, before: int) -> int | None:
    """The most bytes a body of unknown length (a streamed chunked body) may bring into ``name``
    when ``before`` bytes of the blob are stored already (an upload's offset): the upload layer
    stops reading it past this (:class:`registry.storage.uploads.UploadBudgetError`) instead of
    storing it whole and refusing it after. ``None``, with no storage call, when no rule limits
    ``name``; ``None`` too for a blob ``d`` already counted in ``name`` (it adds no bytes)."""
    quota = store.quota
    if quota is None or not quota.applicable(name):
        return None
    if d is not None and quota.counted(store, name, d):
        return None
    room = quota.headroom(name)
    return None if room is None else max(room - before, 0)


def refusal(store: Store, name: str, needed: int) -> QuotaExceededError:
    """The ``DENIED`` refusal of a body that went past its :func:`body_budget`: ``needed`` is the
    blob's bytes with the read that went past it (what it needs at least)."""
    if store.quota is None:
        raise ValueError("no quotas: nothing can refuse a body")
    return store.quota.refusal(name, needed)
