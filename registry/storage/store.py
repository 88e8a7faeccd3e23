"""Repository-level operations on top of a storage driver: blobs, links, manifests, tags, referrers.

Every method takes names, tags and digests that the handlers have already validated; paths come
from :mod:`registry.storage.paths` only.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from registry.digests import Digest, parse_digest
from registry.manifests import ManifestCache
from registry.storage import paths
from registry.storage.driver import Capability, PathNotFoundError, StorageDriver, StorageError
from registry.storage.listcache import ListCache, contains


class CorruptLinkError(StorageError):
    """A link file (tag, revision, layer, referrer) holds something other than a digest: storage was
    damaged or edited by hand. Not a driver failure, and a retry will not help."""


class QuotaExceededError(StorageError):
    """A write would take a repository or namespace over its quota; nothing was written.

    ``detail`` says which rule, the limit, the usage and the bytes asked for (the handlers send it
    with ``DENIED``)."""

    def __init__(self, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


class Store:
    """The registry's data model over one (checked) driver. Thread-safe. What it remembers cannot go
    stale (manifest bytes by digest, directory listings revalidated on every use), so any number of
    processes can share one storage."""

    #: Usage counters and quota checks (:class:`registry.ops.quota.Quotas`), set when quota rules
    #: are configured; ``None`` means no counter I/O at all.
    quota: Any = None

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    # -- global blobs ---------------------------------------------------------------------------

    def blob_size(self, d: Digest) -> int | None:
        """Size of the blob's data, or ``None`` when the blob is not stored."""
        try:
            info = self.driver.stat(paths.blob_data(d))
        except PathNotFoundError:
            return None
        return None if info.is_dir else info.size

    def open_blob(self, d: Digest, offset: int = 0) -> BinaryIO:
        return self.driver.reader(paths.blob_data(d), offset)

    def read_blob(self, d: Digest) -> bytes:
        return self.driver.get_content(paths.blob_data(d))

    def put_blob(self, d: Digest, content: bytes) -> None:
        """Store small content (manifests) under its digest, unless it is already there."""
        if self.blob_size(d) != len(content):
            self.driver.put_content(paths.blob_data(d), content)

    def blob_redirect(self, method: str, d: Digest) -> str | None:
        """A URL the client may fetch the blob from directly, asked only of a driver declaring
        :attr:`Capability.REDIRECT` (a whole-blob GET is on the hot path)."""
        if not self._redirects:
            return None
        return self.driver.redirect_url(method, paths.blob_data(d))

    @functools.cached_property
    def _redirects(self) -> bool:
        return Capability.REDIRECT in self.driver.capabilities

    # -- links -----------------------------------------------------------------------------------

    def _read_link(self, path: str) -> Digest | None:
        try:
            raw = self.driver.get_content(path)
        except PathNotFoundError:
            return None
        d = _link_digest(raw)
        if d is None:
            raise CorruptLinkError(f"corrupt link file: {raw[:100]!r}", path=path)
        return d

    def _link(self, path: str, d: Digest) -> None:
        self.driver.put_content(path, str(d).encode())

    def _unlink(self, path: str) -> bool:
        try:
            self.driver.delete(path)
        except PathNotFoundError:
            return False
        return True

    # -- repositories -----------------------------------------------------------------------------

    def repository_exists(self, name: str) -> bool:
        """Whether something was pushed to ``name``: an upload session alone does not count, so a
        failed push to a new name (which leaves an empty ``_uploads`` on disk) does not create it."""
        for sub in (paths.layers_dir(name), paths.manifests_dir(name)):
            try:
                if self.driver.stat(sub).is_dir:
                    return True
            except PathNotFoundError:
                continue
        return False

    # -- layers (blobs linked into a repository) --------------------------------------------------

    def layer_size(self, name: str, d: Digest) -> int | None:
        """Size of a blob the repository may serve (a layer, config or manifest), else ``None``."""
        for link in (paths.layer_link(name, d), paths.revision_link(name, d)):
            try:
                self.driver.stat(link)
            except PathNotFoundError:
                continue
            return self.blob_size(d)
        return None

    def link_layer(self, name: str, d: Digest) -> None:
        """Link a stored blob into ``name``; with quotas, counted first (raises
        :class:`QuotaExceededError` and links nothing when over a limit)."""
        quota = self.quota
        counted = quota.count_layer(self, name, d) if quota is not None else 0
        try:
            self._link(paths.layer_link(name, d), d)
        except BaseException:
            if counted:
                quota.add(name, -counted)
            raise

    def admit_layer(self, name: str, d: Digest, size: int) -> None:
        """Raise :class:`QuotaExceededError` if linking ``size`` more bytes as ``d`` into ``name``
        would go over a quota: asked before an upload's data is put in place."""
        if self.quota is not None:
            self.quota.admit_layer(self, name, d, size)

    def unlink_layer(self, name: str, d: Digest) -> bool:
        quota = self.quota
        freed = quota.layer_bytes(self, name, d) if quota is not None else 0
        gone = self._unlink(paths.layer_link(name, d).rsplit("/", 1)[0])
        if gone and freed:
            quota.add(name, -freed)
        return gone

    def has_layer_link(self, name: str, d: Digest) -> bool:
        try:
            self.driver.stat(paths.layer_link(name, d))
        except PathNotFoundError:
            return False
        return True

    # -- manifests -------------------------------------------------------------------------------

    def has_manifest(self, name: str, d: Digest) -> bool:
        try:
            self.driver.stat(paths.revision_link(name, d))
        except PathNotFoundError:
            return False
        return True

    def get_manifest(self, name: str, d: Digest) -> bytes | None:
        """The manifest's bytes if the repository has it (its revision link, checked every time, so
        a delete takes effect at once, also one by another process), else ``None``."""
        if not self.has_manifest(name, d):
            return None
        raw = self._manifest_cache.get(d)
        if raw is None:
            try:
                raw = self.read_blob(d)
            except PathNotFoundError:
                return None
            self._manifest_cache.put(d, raw)
        return raw

    @functools.cached_property
    def _manifest_cache(self) -> ManifestCache:
        # Content-addressed bytes cannot go stale; see ManifestCache.
        return ManifestCache()

    def put_manifest(self, name: str, d: Digest, content: bytes) -> None:
        """Store and link a manifest; with quotas, counted first (raises :class:`QuotaExceededError`
        and stores nothing when over a limit)."""
        quota = self.quota
        counted = quota.count_manifest(self, name, d, len(content)) if quota is not None else 0
        try:
            self.put_blob(d, content)
            self._link(paths.revision_link(name, d), d)
        except BaseException:
            if counted:
                quota.add(name, -counted)
            raise

    def delete_manifest(self, name: str, d: Digest) -> bool:
        """Delete the revision and every tag that points at it (as Distribution does).

        The tags go first: a storage failure part-way leaves the manifest with fewer tags, never a
        tag pointing at a manifest the repository no longer has, and a retried delete finishes.
        """
        if not self.has_manifest(name, d):
            return False
        try:
            tags = self.tags(name)
        except PathNotFoundError:  # no tag at all: the repository was pushed to by digest only
            tags = []
        for tag in tags:
            if self.resolve_tag(name, tag) == d:
                self._unlink(paths.tag_dir(name, tag))
        return self.delete_revision(name, d)

    def delete_revision(self, name: str, d: Digest) -> bool:
        """Delete the revision link only, leaving tags alone: garbage collection removes untagged
        manifests, and a tag a client writes to one meanwhile must not go with it (the collector
        then restores the revision, see :mod:`registry.ops.gc`). With quotas, the bytes are given
        back."""
        quota = self.quota
        freed = quota.manifest_bytes(self, name, d) if quota is not None else 0
        gone = self._unlink(paths.revision_dir(name, d))
        if gone and freed:
            quota.add(name, -freed)
        return gone

    # -- tags ------------------------------------------------------------------------------------

    def resolve_tag(self, name: str, tag: str) -> Digest | None:
        return self._read_link(paths.tag_current_link(name, tag))

    def tag(self, name: str, tag: str, d: Digest) -> None:
        # The index entry first: Distribution's GC and tag lookups read both.
        self._link(paths.tag_index_link(name, tag, d), d)
        self._link(paths.tag_current_link(name, tag), d)

    def untag(self, name: str, tag: str) -> bool:
        return self._unlink(paths.tag_dir(name, tag))

    def tags(self, name: str) -> list[str]:
        """Sorted tag names; raises :class:`PathNotFoundError` when the repository has none."""
        return sorted(p.rsplit("/", 1)[1] for p in self.driver.list(paths.tags_dir(name)))

    def tags_page(self, name: str, last: str | None, limit: int) -> tuple[list[str], bool]:
        """At most ``limit`` (at least 1) sorted tag names after ``last``, and whether more follow;
        raises :class:`PathNotFoundError` when the repository has no tags. A page a time from a
        driver with :attr:`Capability.PAGED_LIST`, however many tags there are."""
        bound = _listing_bound(last) if last else ""
        page: list[str] = []
        for tag in self._children(paths.tags_dir(name), bound or None, limit + 1):
            if last and tag <= last:
                continue  # a bound cut short from an odd `last`
            if len(page) == limit:
                return page, True
            page.append(tag)
        return page, False

    # -- referrers -------------------------------------------------------------------------------

    def add_referrer(self, name: str, subject: Digest, referrer: Digest) -> None:
        self._link(paths.referrer_link(name, subject, referrer), referrer)

    def remove_referrer(self, name: str, subject: Digest, referrer: Digest) -> None:
        self._unlink(paths.referrer_link(name, subject, referrer).rsplit("/", 1)[0])

    def referrers(self, name: str, subject: Digest) -> list[Digest]:
        found = []
        base = paths.referrers_dir(name, subject)
        try:
            algorithms = self.driver.list(base)
        except PathNotFoundError:
            return []
        for alg_dir in algorithms:
            for entry in self.driver.list(alg_dir):
                d = self._read_link(entry + "/link")
                if d is not None and self.has_manifest(name, d):
                    found.append(d)
        return found

    # -- catalog ---------------------------------------------------------------------------------

    def repositories(self, last: str | None = None, limit: int | None = None) -> Iterator[str]:
        """Repository names in path order (component by component), after ``last``.

        Walks the tree in sorted order and never lists what sorts before ``last``: it descends along
        ``last``'s components, then lists only the siblings after each of them, so a page costs the
        directories it shows, however many repositories there are. On a driver with
        :attr:`Capability.PAGED_LIST` each directory is read a page at a time (a flat bucket of
        100,000 repositories costs a page of listing, not the whole level); otherwise each directory
        is listed whole (large ones cached, see :class:`ListCache`). Path order, not plain string
        order, is what a depth-first walk yields (``a``, ``a/b``, ``a-b``).
        """
        after = tuple(last.split("/")) if last else None
        # Enough names per listing call for the page (each child holds at least one repository,
        # unless it is only an unfinished upload), and enough to see a leaf repository's _layers,
        # _manifests and _uploads in one call.
        size = _MAX_LISTING if limit is None else min(max(limit + 1, 8), _MAX_LISTING)
        for count, repo in enumerate(self._walk_repos(paths.REPOSITORIES, (), after, size)):
            if limit is not None and count >= limit:
                return
            yield "/".join(repo)

    @functools.cached_property
    def _listings(self) -> ListCache:
        # Every use revalidates it against the storage, so processes sharing the storage still see
        # each other's changes at once.
        return ListCache(self.driver)

    def _children(self, path: str, after: str | None, size: int) -> Iterator[str]:
        """Child names of ``path`` after ``after``, in order; the first page is read at once, so a
        missing directory raises :class:`PathNotFoundError` here."""
        if Capability.PAGED_LIST not in self.driver.capabilities:
            names = self._listings.names(path)  # one listing, whatever the page size
            start = 0 if after is None else bisect.bisect_right(names, after)
            return itertools.islice(names, start, None)
        names, more = self.driver.list_page(path, after, size)

        def rest(names: Sequence[str], more: bool) -> Iterator[str]:
            while True:
                yield from names
                if not more or not names:
                    return
                names, more = self.driver.list_page(path, names[-1], size)

        return rest(names, more)

    def _walk_repos(
        self, path: str, prefix: tuple[str, ...], after: tuple[str, ...] | None, size: int
    ) -> Iterator[tuple[str, ...]]:
        depth = len(prefix)
        if after is not None and len(after) > depth and after[:depth] == prefix:
            # On the way to `after`: this directory and every child before after's next component
            # sort before it. Descend into that component, then list only the siblings after it.
            yield from self._resume(path, prefix, after, size)
            return
        # Everything here sorts after `after`, but this directory itself when it is `after`.
        try:
            children = self._children(path, None, size)
            first = list(itertools.islice(children, size))
        except PathNotFoundError:
            return
        if prefix and prefix != after and self._is_repository(path, first, size):
            yield prefix
        for name in itertools.chain(first, children):
            if not name.startswith("_"):
                yield from self._walk_repos(f"{path}/{name}", prefix + (name,), after, size)

    def _resume(
        self, path: str, prefix: tuple[str, ...], after: tuple[str, ...], size: int
    ) -> Iterator[tuple[str, ...]]:
        target = after[len(prefix)]
        bound = _listing_bound(target)
        if bound and bound == target and not target.startswith("_"):
            yield from self._walk_repos(f"{path}/{target}", prefix + (target,), after, size)
        try:
            siblings = self._children(path, bound or None, size)
        except PathNotFoundError:
            return
        for name in siblings:
            # With a bound cut short from an odd `last`, names up to `target` still come: skip them.
            if name > target and not name.startswith("_"):
                yield from self._walk_repos(f"{path}/{name}", prefix + (name,), after, size)

    def _is_repository(self, path: str, first: list[str], size: int) -> bool:
        # A repository directory holds _layers, _manifests or _uploads; name components never
        # start with "_", so the two cannot be confused. Only uploads (a push that failed or never
        # finished) is not a repository yet, as in Distribution's catalog. "_" sorts after digits
        # and capitals, before small letters: the first page usually shows it.
        if len(first) < size or first[-1] > "_manifests":
            return contains(first, "_layers") or contains(first, "_manifests")
        # Many children sorting before "_" (digits): look right after "_" instead of reading them all.
        names = list(itertools.islice(self._children(path, "_", 2), 2))
        return "_layers" in names or "_manifests" in names


#: Most names one listing call asks for (S3's MaxKeys limit).
_MAX_LISTING = 1000
#: Longest path component the walk passes to a driver as a bound (longer ones cannot name a
#: repository directory: a whole repository name is at most 255 characters).
_MAX_COMPONENT = 255
_COMPONENT = re.compile(r"[A-Za-z0-9._-]*")


def _listing_bound(component: str) -> str:
    """A valid path component ``b`` (or ``""``: from the first) with every name after ``component``
    also after ``b``: ``component`` itself when it is valid, else its longest valid start, so that
    anything a client sends as ``last`` is only compared, never put in a request."""
    bound = _COMPONENT.match(component[:_MAX_COMPONENT]).group()
    if bound in (".", ".."):
        return "-"  # the smallest valid component; "." and ".." name no directory
    return bound


@functools.lru_cache(maxsize=4096)
def _link_digest(raw: bytes) -> Digest | None:
    # A tag link is read on every pull by tag and holds one of few digests: parse each once.
    try:
        return parse_digest(raw.decode("ascii").strip())
    except Exception:  # parse_digest's error is an HTTP-layer class, which storage must not name
        return None


def started_at() -> bytes:
    """Distribution's ``startedat`` file content (RFC 3339, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()

