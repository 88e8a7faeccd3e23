"""Repository-level operations on top of a storage driver: blobs, links, manifests, tags, referrers.

Every method takes names, tags and digests that the handlers have already validated; paths come
from :mod:`registry.storage.paths` only.
"""

from __future__ import annotations

import bisect
import datetime
import functools
from collections.abc import Iterator
from typing import BinaryIO

from registry.digests import Digest, parse_digest
from registry.manifests import ManifestCache
from registry.storage import paths
from registry.storage.driver import Capability, PathNotFoundError, StorageDriver, StorageError
from registry.storage.listcache import ListCache, contains


class CorruptLinkError(StorageError):
    """A link file (tag, revision, layer, referrer) holds something other than a digest: storage was
    damaged or edited by hand. Not a driver failure, and a retry will not help."""


class Store:
    """The registry's data model over one (checked) driver. Thread-safe. What it remembers cannot go
    stale (manifest bytes by digest, directory listings revalidated on every use), so any number of
    processes can share one storage."""

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
        self._link(paths.layer_link(name, d), d)

    def unlink_layer(self, name: str, d: Digest) -> bool:
        return self._unlink(paths.layer_link(name, d).rsplit("/", 1)[0])

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
        self.put_blob(d, content)
        self._link(paths.revision_link(name, d), d)

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
        return self._unlink(paths.revision_dir(name, d))

    def delete_revision(self, name: str, d: Digest) -> bool:
        """Delete the revision link only, leaving tags alone: garbage collection removes untagged
        manifests, and a tag a client writes to one meanwhile must not go with it (the collector
        then restores the revision, see :mod:`registry.ops.gc`)."""
        return self._unlink(paths.revision_dir(name, d))

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

        Walks the tree in sorted order and skips whole subtrees that sort before ``last``, so a page
        costs only the directories it shows, however many repositories there are. Path order, not
        plain string order, is what a depth-first walk yields (``a``, ``a/b``, ``a-b``).
        """
        after = tuple(last.split("/")) if last else None
        for count, repo in enumerate(self._walk_repos(paths.REPOSITORIES, (), after)):
            if limit is not None and count >= limit:
                return
            yield "/".join(repo)

    @functools.cached_property
    def _listings(self) -> ListCache:
        # Every use revalidates it against the storage, so processes sharing the storage still see
        # each other's changes at once.
        return ListCache(self.driver)

    def _walk_repos(
        self, path: str, prefix: tuple[str, ...], after: tuple[str, ...] | None
    ) -> Iterator[tuple[str, ...]]:
        try:
            names = self._listings.names(path)
        except PathNotFoundError:
            return
        # A repository directory holds _layers, _manifests or _uploads; name components never
        # start with "_", so the two cannot be confused. Only uploads (a push that failed or never
        # finished) is not a repository yet, as in Distribution's catalog.
        is_repo = contains(names, "_layers") or contains(names, "_manifests")
        if prefix and is_repo and (after is None or prefix > after):
            yield prefix
        start, depth = 0, len(prefix)
        if after is not None and len(after) > depth and after[:depth] == prefix:
            # Children before after's next component hold only names before `after`: bisect past
            # them instead of comparing a tuple per child of a 100,000-entry directory. Elsewhere
            # the walk only enters subtrees that sort wholly after `after`.
            start = bisect.bisect_left(names, after[depth])
        for i in range(start, len(names)):
            n = names[i]
            if not n.startswith("_"):
                yield from self._walk_repos(f"{path}/{n}", prefix + (n,), after)


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

