"""``registry garbage-collect``: mark and sweep, safe while the registry serves pushes.

**Mark.** In every repository, the roots are its tags (every manifest revision as well, unless
``delete_untagged``), plus every revision whose link was written after the *cutoff* (the run's start
by the storage's own clock, less the grace period). From the roots the mark follows an index's
children and, for every kept manifest, its referrers (manifests whose ``subject`` it is), so that a
multi-arch image keeps all its platforms and a signed image its signatures, tagged or not. A kept
manifest keeps its own blob, its config and its layers; a layer link written after the cutoff keeps
its blob too (a push in flight that has not sent its manifest yet).

**Sweep.** Blobs of the global store that nothing marked and whose data is older than the cutoff
are the candidates. Then, in each repository, untagged revisions older than the cutoff are unlinked
(only with ``delete_untagged``; tags are never touched) and so are old layer links nothing kept
refers to (with ``delete_untagged``, or when their blob is a candidate). Every deletion re-reads the
modification time first and skips what was written meanwhile.

**Check, then delete blobs.** After a pause (``settle``, so that a manifest PUT which saw a blob
before the sweep has written its revision), the mark runs again over the storage as it is now; a
candidate marked this time (a push during the run that reused it) is kept. This second mark also
repairs what a push racing the sweep could have lost: a revision or layer link that a manifest
written during the run needs, whose blob is still stored, is linked again. Only then are the
remaining candidates deleted, each after a last look at its modification time.

Everything goes through the storage driver API and :class:`registry.storage.store.Store`, so it works
on every driver. The storage's clock is read by writing and stat-ing a probe file
(:func:`registry.storage.paths.gc_probe`), so a skewed local clock cannot make a new upload look old.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable

from registry.digests import Digest
from registry.ops.layout import References, iter_blob_entries, iter_repositories, linked_digests, references, utc
from registry.ops.progress import Progress
from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageDriver, StorageError
from registry.storage.store import CorruptLinkError, Store

log = logging.getLogger(__name__)

#: Default grace period, seconds: anything written more recently is never collected.
DEFAULT_GRACE = 3600.0
#: Default pause between the sweep of links and the second mark, seconds.
DEFAULT_SETTLE = 2.0
#: Modification times may be whole seconds (S3, Azure): the cutoff moves back by this much more.
CLOCK_SLACK = 1.0
#: Blob deletes in flight at once.
DEFAULT_WORKERS = 8


@dataclasses.dataclass
class GCResult:
    """What a run did (or, in a dry run, would do)."""

    dry_run: bool = False
    repositories: int = 0
    manifests_marked: int = 0
    blobs_marked: int = 0
    blobs_scanned: int = 0
    young_skipped: int = 0
    revisions_deleted: int = 0
    layer_links_deleted: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    rescued: int = 0
    repaired: int = 0
    seconds: float = 0.0
    deleted_blobs: list[str] = dataclasses.field(default_factory=list)
    deleted_revisions: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        would = "would delete" if self.dry_run else "deleted"
        free = "would free" if self.dry_run else "freed"
        return (f"{self.repositories} repositories, {self.manifests_marked} manifests and {self.blobs_marked} blobs "
                f"marked; {would} {self.revisions_deleted} manifests, {self.layer_links_deleted} layer links and "
                f"{self.blobs_deleted} blobs; {free} {self.bytes_freed} bytes ({_human(self.bytes_freed)}); "
                f"kept {self.young_skipped} items newer than the cutoff, {self.rescued} reused during the run; "
                f"{self.repaired} links repaired; {len(self.errors)} errors; {self.seconds:.2f}s")


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


@dataclasses.dataclass
class _RepoMark:
    name: str
    blobs: set[str]  # digests this repository keeps: kept manifests, their configs and layers
    young: set[str]  # blobs linked after the cutoff (a push in flight)
    manifests: int
    deletable: list[tuple[Digest, Digest | None]]  # untagged old revisions, with their subject
    orphans: list[Digest]  # old layer links no kept manifest refers to


def storage_now(driver: StorageDriver) -> datetime.datetime:
    """The storage's clock: the modification time of a probe file written now (removed at once);
    the local clock when the storage gives none."""
    probe = paths.gc_probe(uuid.uuid4().hex)
    local = datetime.datetime.now(datetime.UTC)
    try:
        driver.put_content(probe, b"garbage collection clock probe\n")
        try:
            stamp = utc(driver.stat(probe).mod_time)
        finally:
            driver.delete(probe)
    except StorageError as exc:
        log.warning("cannot read the storage's clock (%s); using the local clock", exc)
        return local
    return stamp or local


class GarbageCollector:
    """One run over ``store``. ``grace`` and ``settle`` are seconds."""

    def __init__(self, store: Store, *, dry_run: bool = False, delete_untagged: bool = False,
                 grace: float = DEFAULT_GRACE, settle: float = DEFAULT_SETTLE,
                 progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock_slack: float = CLOCK_SLACK, workers: int = DEFAULT_WORKERS) -> None:
        self.store, self.driver = store, store.driver
        self.dry_run, self.delete_untagged = dry_run, delete_untagged
        self.grace, self.settle = max(0.0, grace), max(0.0, settle)
        self.progress = progress or Progress(enabled=False)
        self.sleep = sleep
        self.clock_slack = clock_slack
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self.result = GCResult(dry_run=dry_run)
        self.cutoff = datetime.datetime.now(datetime.UTC)

    # -- helpers ---------------------------------------------------------------------------------

    def _young(self, path: str) -> bool | None:
        """Whether ``path`` was written after the cutoff; ``None`` when it is gone. A driver that
        gives no time makes everything young: never delete what cannot be dated."""
        try:
            mod_time = utc(self.driver.stat(path).mod_time)
        except PathNotFoundError:
            return None
        return mod_time is None or mod_time >= self.cutoff

    def _error(self, what: str, exc: Exception) -> None:
        message = f"{what}: {type(exc).__name__}: {exc}"
        log.error("%s", message)
        self.result.errors.append(message)

    # -- mark ------------------------------------------------------------------------------------

    def mark_repository(self, name: str, *, repair: bool = False) -> _RepoMark:
        store = self.store
        try:
            tags = store.tags(name)
        except PathNotFoundError:
            tags = []
        roots: set[Digest] = set()
        tagged: set[Digest] = set()
        retagged: set[Digest] = set()  # tags written during the run (found in the check phase only)
        for tag in tags:
            try:
                d = store.resolve_tag(name, tag)
            except CorruptLinkError as exc:
                self._error(f"{name}:{tag}: tag link", exc)
                continue
            if d is not None:
                roots.add(d)
                tagged.add(d)
                if repair and not self.dry_run and self._young(paths.tag_current_link(name, tag)) is not False:
                    retagged.add(d)
        revisions: list[Digest] = []
        young_revisions: set[Digest] = set()
        for d in linked_digests(self.driver, paths.revisions_dir(name)):
            if d in tagged:
                revisions.append(d)
                continue
            # Every revision is dated: Distribution deletes a manifest by removing its link file
            # only, leaving the directory, which is then no revision at all.
            young = self._young(paths.revision_link(name, d))
            if young is None:
                continue
            revisions.append(d)
            if young:
                young_revisions.add(d)
                roots.add(d)
            elif not self.delete_untagged:
                roots.add(d)
        revision_set = set(revisions)
        refs: dict[Digest, References | None] = {}

        def load(d: Digest) -> References | None:
            if d not in refs:
                try:
                    refs[d] = references(store.read_blob(d))
                except PathNotFoundError:
                    refs[d] = None
            return refs[d]

        referrers: dict[Digest, list[Digest]] = {}
        for d in revisions:
            r = load(d)
            if r is not None and r.subject is not None:
                referrers.setdefault(r.subject, []).append(d)
        kept: set[Digest] = set()
        stack = list(roots)
        while stack:
            d = stack.pop()
            if d in kept:
                continue
            kept.add(d)
            r = load(d)
            if r is not None:
                stack.extend(r.children)
            stack.extend(referrers.get(d, ()))
        blobs = {str(d) for d in kept}
        for d in kept:
            r = refs.get(d)
            if r is not None:
                blobs.update(str(b) for b in r.blobs)

        if repair and not self.dry_run:
            self._repair(name, retagged | young_revisions, revision_set, refs)

        deletable: list[tuple[Digest, Digest | None]] = []
        if self.delete_untagged:
            for d in revisions:
                if d not in kept:
                    r = refs.get(d)
                    deletable.append((d, r.subject if r is not None else None))
        young: set[str] = set()
        orphans: list[Digest] = []
        for d in linked_digests(self.driver, paths.layers_dir(name)):
            if str(d) in blobs:
                continue
            is_young = self._young(paths.layer_link(name, d))
            if is_young:
                young.add(str(d))
            elif is_young is False:  # None: a directory without its link (Distribution's blob delete)
                orphans.append(d)
        return _RepoMark(name, blobs, young, len(kept), deletable, orphans)

    def _repair(self, name: str, new: set[Digest], revisions: set[Digest],
                refs: dict[Digest, References | None]) -> None:
        """Relink what a manifest tagged or pushed during the run needs and the sweep may have
        unlinked in a race (only what is still stored): the revisions of an index's children, and
        every layer link of the manifests reached."""
        store = self.store
        seen: set[Digest] = set()
        stack = list(new)
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            if d not in revisions and not store.has_manifest(name, d):
                try:
                    raw = store.read_blob(d)
                except PathNotFoundError:
                    continue
                store.put_manifest(name, d, raw)
                self.result.repaired += 1
                log.warning("%s: relinked manifest %s, needed by a manifest written during the run", name, d)
            r = refs.get(d)
            if r is None:
                continue
            stack.extend(r.children)
            for b in r.blobs:
                if not store.has_layer_link(name, b) and store.blob_size(b) is not None:
                    store.link_layer(name, b)
                    self.result.repaired += 1
                    log.warning("%s: relinked layer %s, needed by manifest %s written during the run", name, b, d)

    def mark(self, *, repair: bool = False, phase: str = "mark") -> tuple[set[str], list[_RepoMark]]:
        marked: set[str] = set()
        marks: list[_RepoMark] = []
        count = manifests = 0
        for name in iter_repositories(self.store):
            try:
                m = self.mark_repository(name, repair=repair)
            except CorruptLinkError as exc:
                self._error(f"{name}: skipped", exc)
                # A repository we cannot read must not lose its blobs: keep everything it links.
                marked.update(str(d) for d in linked_digests(self.driver, paths.layers_dir(name)))
                marked.update(str(d) for d in linked_digests(self.driver, paths.revisions_dir(name)))
                continue
            marked |= m.blobs
            marked |= m.young
            manifests += m.manifests
            if m.deletable or m.orphans:
                m.blobs = set()  # only the sweep lists are needed later: bounded memory
                m.young = set()
                marks.append(m)
            count += 1
            self.progress.update(phase, count, extra=f"repositories, {len(marked)} blobs marked")
        self.progress.done()
        if phase == "mark":
            self.result.repositories, self.result.manifests_marked = count, manifests
            self.result.blobs_marked = len(marked)
        return marked, marks

    # -- sweep -----------------------------------------------------------------------------------

    def candidates(self, marked: set[str]) -> dict[Digest, int]:
        found: dict[Digest, int] = {}
        for scanned, (d, info, walked) in enumerate(iter_blob_entries(self.driver), 1):
            self.progress.update("scan blobs", scanned, extra=f"{len(found)} unreferenced")
            self.result.blobs_scanned = scanned
            if str(d) in marked:
                continue
            if not walked:  # a walk's listing dated the data already (a stat's worth, fetched in bulk)
                try:
                    info = self.driver.stat(paths.blob_data(d))
                except PathNotFoundError:
                    info = None
            if info is None:
                continue  # a blob directory without data (being written, or quarantined)
            mod_time = utc(info.mod_time)
            if mod_time is None or mod_time >= self.cutoff:
                self.result.young_skipped += 1
                continue
            found[d] = info.size
        self.progress.done()
        return found

    def sweep_repositories(self, marks: list[_RepoMark], candidates: dict[Digest, int]) -> None:
        store = self.store
        for i, m in enumerate(marks, 1):
            self.progress.update("sweep repositories", i, len(marks))
            for d, subject in m.deletable:
                link = paths.revision_link(m.name, d)
                if self.dry_run:
                    self._count_revision(m.name, d)
                    continue
                if self._young(link) is not False:
                    self.result.young_skipped += 1
                    continue
                try:
                    if store.delete_revision(m.name, d):
                        self._count_revision(m.name, d)
                        if subject is not None:
                            store.remove_referrer(m.name, subject, d)
                except StorageError as exc:
                    self._error(f"{m.name}@{d}: deleting the revision", exc)
            if m.deletable and not self.dry_run:
                self._forget_in_tag_histories(m.name, {d for d, _ in m.deletable})
            for d in m.orphans:
                if not (self.delete_untagged or d in candidates):
                    continue
                if self.dry_run:
                    self.result.layer_links_deleted += 1
                    continue
                if self._young(paths.layer_link(m.name, d)) is not False:
                    self.result.young_skipped += 1
                    continue
                try:
                    if store.unlink_layer(m.name, d):
                        self.result.layer_links_deleted += 1
                except StorageError as exc:
                    self._error(f"{m.name}: unlinking layer {d}", exc)
        self.progress.done()

    def _forget_in_tag_histories(self, name: str, deleted: set[Digest]) -> None:
        """Remove deleted manifests from the tags' histories (``tags/<tag>/index``), as
        Distribution's collector does, so that no link is left to a manifest that is gone."""
        try:
            tags = self.store.tags(name)
        except PathNotFoundError:
            return
        for tag in tags:
            for d in linked_digests(self.driver, paths.tag_index_dir(name, tag)):
                if d in deleted and not self.store.has_manifest(name, d):
                    try:
                        self.driver.delete(paths.tag_index_link(name, tag, d).rsplit("/", 1)[0])
                    except PathNotFoundError:
                        pass

    def _count_revision(self, name: str, d: Digest) -> None:
        self.result.revisions_deleted += 1
        self.result.deleted_revisions.append(f"{name}@{d}")
        if not self.dry_run:  # a dry run lists them itself
            log.info("%s: deleted manifest %s", name, d)

    def _delete_blob(self, d: Digest) -> bool:
        """Delete one candidate after a last look at its date; whether it was deleted."""
        if self.dry_run:
            return True
        if self._young(paths.blob_data(d)) is not False:
            with self._lock:
                self.result.young_skipped += 1
            return False
        try:
            self.driver.delete(paths.blob_dir(d))
        except PathNotFoundError:
            return False
        except StorageError as exc:
            with self._lock:
                self._error(f"deleting blob {d}", exc)
            return False
        return True

    def delete_blobs(self, candidates: dict[Digest, int]) -> None:
        """Delete the candidates, ``workers`` at a time: one storage round trip each (an object
        store's latency, a file system's directory sync), so in parallel."""
        total = len(candidates)
        ordered = sorted(candidates.items())
        with concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="gc-delete") as pool:
            for i, ((d, size), deleted) in enumerate(
                    zip(ordered, pool.map(self._delete_blob, [d for d, _ in ordered]), strict=True), 1):
                self.progress.update("delete blobs", i, total)
                if not deleted:
                    continue
                self.result.blobs_deleted += 1
                self.result.bytes_freed += size
                self.result.deleted_blobs.append(str(d))
                if not self.dry_run:
                    log.info("deleted blob %s (%d bytes)", d, size)
        self.progress.done()

    # -- the run ---------------------------------------------------------------------------------

    def run(self, now: datetime.datetime | None = None) -> GCResult:
        """Collect; ``now`` replaces the storage's clock (tests)."""
        started = time.monotonic()
        now = utc(now) or storage_now(self.driver)
        self.cutoff = now - datetime.timedelta(seconds=self.grace + self.clock_slack)
        log.info("garbage collection: cutoff %s (storage clock %s, grace %gs)", self.cutoff.isoformat(),
                 now.isoformat(), self.grace)
        marked, marks = self.mark()
        candidates = self.candidates(marked)
        self.sweep_repositories(marks, candidates)
        swept = self.result.revisions_deleted or self.result.layer_links_deleted
        if not self.dry_run and (candidates or swept):  # also to repair what a racing push needs
            self.sleep(self.settle)
            again, _ = self.mark(repair=True, phase="check")
            rescued = [d for d in candidates if str(d) in again]
            for d in rescued:
                del candidates[d]
                log.info("blob %s was reused during the run: kept", d)
            self.result.rescued = len(rescued)
        self.delete_blobs(candidates)
        self.result.seconds = time.monotonic() - started
        return self.result


def collect_garbage(store: Store, now: datetime.datetime | None = None, **options: object) -> GCResult:
    """Run :class:`GarbageCollector` over ``store`` with ``options`` (its keyword arguments)."""
    return GarbageCollector(store, **options).run(now)  # type: ignore[arg-type]
