"""``registry scrub``: re-hash every stored blob (streamed, in constant memory) and check every
manifest revision, reporting whatever does not match its digest.

- A **corrupt blob**: its content hashes to another digest. With ``quarantine`` its data is moved
  to :func:`registry.storage.paths.quarantine_blob` (``_quarantine/blobs/<alg>/<hex>/data``), out
  of ``blobs/``: it is no longer served (pulls get 404 ``BLOB_UNKNOWN``; a client pushing the blob
  again stores a good copy) and an operator can still inspect it.
- A **broken revision**: a repository's manifest revision whose link does not hold its own digest,
  or whose manifest blob is missing or corrupt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

from registry.digests import Digest
from registry.ops.layout import iter_blobs, iter_repositories, linked_digests
from registry.ops.progress import Progress
from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageError
from registry.storage.store import Store

log = logging.getLogger(__name__)

#: Bytes read at a time while hashing: memory use is this, whatever the blob's size.
READ_SIZE = 1 << 20


@dataclasses.dataclass
class ScrubResult:
    blobs: int = 0
    bytes: int = 0
    revisions: int = 0
    corrupt: list[str] = dataclasses.field(default_factory=list)  # "digest: hashes to ..."
    broken: list[str] = dataclasses.field(default_factory=list)  # "repo@digest: why"
    quarantined: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def bad(self) -> bool:
        return bool(self.corrupt or self.broken)

    def summary(self) -> str:
        return (f"{self.blobs} blobs ({self.bytes} bytes) and {self.revisions} manifest revisions checked; "
                f"{len(self.corrupt)} corrupt blobs, {len(self.broken)} broken revisions, "
                f"{len(self.quarantined)} quarantined, {len(self.errors)} errors; {self.seconds:.2f}s")


def hash_blob(store: Store, d: Digest) -> tuple[str, int]:
    """The hex digest (by ``d``'s algorithm) and size of the blob's stored content, streamed."""
    hasher = hashlib.new(d.algorithm)
    size = 0
    with store.open_blob(d) as src:
        while True:
            chunk = src.read(READ_SIZE)
            if not chunk:
                break
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def scrub(store: Store, *, quarantine: bool = False, progress: Progress | None = None) -> ScrubResult:
    """Check every blob and revision of ``store``; see the module docstring."""
    progress = progress or Progress(enabled=False)
    driver = store.driver
    result = ScrubResult()
    started = time.monotonic()
    corrupt: set[Digest] = set()
    for d in iter_blobs(driver):
        try:
            actual, size = hash_blob(store, d)
        except PathNotFoundError:
            continue  # a blob directory without data: deleted meanwhile, or already quarantined
        except StorageError as exc:
            result.errors.append(f"{d}: {type(exc).__name__}: {exc}")
            continue
        result.blobs += 1
        result.bytes += size
        progress.update("scrub blobs", result.blobs, extra=f"{result.bytes >> 20} MiB, {len(result.corrupt)} bad")
        if actual == d.hex:
            continue
        corrupt.add(d)
        result.corrupt.append(f"{d}: content hashes to {d.algorithm}:{actual} ({size} bytes)")
        log.error("corrupt blob %s: content hashes to %s:%s", d, d.algorithm, actual)
        if quarantine:
            try:
                driver.move(paths.blob_data(d), paths.quarantine_blob(d))
                result.quarantined.append(str(d))
                log.warning("quarantined blob %s at %s", d, paths.quarantine_blob(d))
            except StorageError as exc:
                result.errors.append(f"{d}: quarantine failed: {type(exc).__name__}: {exc}")
    progress.done()
    for name in iter_repositories(store):
        for d in linked_digests(driver, paths.revisions_dir(name)):
            result.revisions += 1
            progress.update("scrub manifests", result.revisions)
            try:
                raw = driver.get_content(paths.revision_link(name, d))
            except PathNotFoundError:
                continue  # deleted meanwhile
            if raw.decode("ascii", "replace").strip() != str(d):
                result.broken.append(f"{name}@{d}: the revision link holds {raw[:100]!r}")
            elif d in corrupt:
                result.broken.append(f"{name}@{d}: the manifest blob is corrupt")
            elif store.blob_size(d) is None:
                result.broken.append(f"{name}@{d}: the manifest blob is missing")
    progress.done()
    for line in result.broken:
        log.error("broken revision %s", line)
    result.seconds = time.monotonic() - started
    return result
