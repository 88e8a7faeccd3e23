"""Blob upload sessions, stateless across processes.

Everything about an upload lives in storage under ``_uploads/<id>/`` in Distribution's layout: the
data so far, ``startedat``, and our resumable SHA-256 state at the offset it covers. Any process
sharing the storage can continue any upload, and a restart loses nothing. When no usable hash state
exists (another OpenSSL build, a crash between data and state), the data so far is re-hashed: slower,
never wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import BinaryIO

from registry.digests import Digest
from registry.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid
from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageDriver
from registry.storage.hashstate import RESUMABLE, ResumableSha256
from registry.storage.store import Store, started_at

log = logging.getLogger(__name__)

#: Bytes read from the request body per write: large enough that per-call overhead vanishes,
#: small enough that memory stays flat whatever the blob size.
CHUNK = 1 << 20


def new_upload_id() -> str:
    return str(uuid.uuid4())


class Uploads:
    """Start, append to, inspect, finish and cancel upload sessions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver: StorageDriver = store.driver

    def start(self, name: str) -> str:
        upload_id = new_upload_id()
        self.driver.put_content(paths.upload_started_at(name, upload_id), started_at())
        self.driver.put_content(paths.upload_data(name, upload_id), b"")
        return upload_id

    def size(self, name: str, upload_id: str) -> int:
        """Bytes received so far; raises :class:`BlobUploadUnknown`."""
        try:
            info = self.driver.stat(paths.upload_data(name, upload_id))
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        return info.size

    def cancel(self, name: str, upload_id: str) -> None:
        try:
            self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None

    def _load_hasher(self, name: str, upload_id: str, offset: int, data: str | None = None) -> ResumableSha256 | None:
        if not RESUMABLE:
            return None
        if offset == 0:
            return ResumableSha256()
        try:
            state = self.driver.get_content(paths.upload_hashstate(name, upload_id, "sha256", offset))
            return ResumableSha256.from_state(state)
        except (PathNotFoundError, ValueError):
            pass
        # No state for this offset: rebuild it from the data (one read of what was uploaded).
        hasher = ResumableSha256()
        with self.driver.reader(data or paths.upload_data(name, upload_id), 0) as src:
            _copy(src, hasher.update, limit=offset)
        return hasher

    def _save_hasher(self, name: str, upload_id: str, hasher: ResumableSha256, old: int, new: int) -> None:
        self.driver.put_content(paths.upload_hashstate(name, upload_id, "sha256", new), hasher.state())
        if old and old != new:
            with contextlib.suppress(PathNotFoundError):
                self.driver.delete(paths.upload_hashstate(name, upload_id, "sha256", old))

    def append(self, name: str, upload_id: str, body: BinaryIO, length: int | None) -> int:
        """Append the request body; returns the new size. ``length`` bounds what is read."""
        try:
            writer = self.driver.writer(paths.upload_data(name, upload_id), append=True)
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        try:
            # The driver lets one appending writer in at a time, so the offset is the writer's, and
            # the hash state loaded for it covers exactly the bytes before ours.
            start = offset = writer.size
            hasher = self._load_hasher(name, upload_id, offset)

            def sink(chunk: bytes) -> None:
                writer.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)

            written = _copy(body, sink, limit=length)
            if length is not None and written != length:
                raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
            writer.commit()
        except BaseException:
            writer.close()
            raise
        writer.close()
        new_size = start + written
        if hasher is not None and written:
            self._save_hasher(name, upload_id, hasher, offset, new_size)
        return new_size

    def finish(self, name: str, upload_id: str, expected: Digest, body: BinaryIO | None, length: int | None) -> int:
        """Append an optional last chunk, check the digest, move the data into place and link it.

        On a digest mismatch the upload is cancelled (as Distribution does) and :class:`DigestInvalid`
        raised. Returns the blob's size.
        """
        if body is not None and length:
            self.append(name, upload_id, body, length)
        # Take the data out of every writer's reach before checking it (the driver's move waits for
        # an appending writer to finish): bytes a racing PATCH adds can then never be moved into
        # place under a digest that was checked without them.
        data = paths.upload_committing(name, upload_id)
        try:
            self.driver.move(paths.upload_data(name, upload_id), data)
        except PathNotFoundError:
            pass  # a PUT that failed after this step is being retried: its data waits at `data`
        try:
            size = self.driver.stat(data).size
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        actual = self._digest(name, upload_id, expected.algorithm, size, data)
        if actual != expected.hex:
            self.cancel(name, upload_id)
            raise DigestInvalid(
                f"digest mismatch: upload has {expected.algorithm}:{actual}, request said {expected}",
                detail={"expected": str(expected), "actual": f"{expected.algorithm}:{actual}"},
            )
        if self.store.blob_size(expected) == size:
            # Already stored (pushed by someone else): keep the existing copy untouched.
            pass
        else:
            self.driver.move(data, paths.blob_data(expected))
        self.store.link_layer(name, expected)
        with contextlib.suppress(PathNotFoundError):
            self.driver.delete(paths.upload_dir(name, upload_id))
        return size

    def _digest(self, name: str, upload_id: str, algorithm: str, size: int, data: str) -> str:
        if algorithm == "sha256":
            hasher = self._load_hasher(name, upload_id, size, data)
            if hasher is not None:
                return hasher.hexdigest()
        h = hashlib.new(algorithm)
        with self.driver.reader(data, 0) as src:
            _copy(src, h.update, limit=size)
        return h.hexdigest()


def _copy(src: BinaryIO, sink: Callable[[bytes], object], limit: int | None) -> int:
    """Feed ``src`` to ``sink`` in :data:`CHUNK` pieces, at most ``limit`` bytes; returns the count."""
    total = 0
    while limit is None or total < limit:
        want = CHUNK if limit is None else min(CHUNK, limit - total)
        chunk = src.read(want)
        if not chunk:
            break
        sink(chunk)
        total += len(chunk)
    return total
