"""Blob upload sessions, stateless across processes.

Everything about an upload lives in storage under ``_uploads/<id>/`` in Distribution's layout: the
data so far, ``startedat``, and our resumable SHA-256 state at the offset it covers. Any process
sharing the storage can continue any upload, and a restart loses nothing. When no usable hash state
exists (another OpenSSL build, a crash between data and state), the data so far is re-hashed: slower,
never wrong.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import BinaryIO

from registry.digests import Digest
from registry.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid
from registry.spool import SpoolFile
from registry.storage import paths
from registry.storage.driver import FileWriter, PathNotFoundError, StorageDriver
from registry.storage.hashstate import RESUMABLE, ResumableSha256
from registry.storage.store import Store, started_at

log = logging.getLogger(__name__)

#: Bytes read from the request body per write: large enough that per-call overhead vanishes,
#: small enough that memory stays flat whatever the blob size.
CHUNK = 1 << 20


#: Uploads smaller than this keep their hash state in this process's memory only: should the next
#: request reach another process (or a restarted one), re-hashing at most this much costs less than
#: creating a state file on every chunk of every small layer.
STATE_FILE_MIN = 16 << 20

#: Hash states remembered in memory, by repository, upload and offset (~150 bytes each).
MEMORY_STATES = 1024


def new_upload_id() -> str:
    return str(uuid.uuid4())


class Uploads:
    """Start, append to, inspect, finish and cancel upload sessions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver: StorageDriver = store.driver
        # The bytes of an upload below an offset never change, so a state for (upload, offset) can
        # be kept as long as wanted; an upload that is gone is simply never asked for again.
        self._states: collections.OrderedDict[tuple[str, str, int], bytes] = collections.OrderedDict()
        self._states_lock = threading.Lock()

    def start(self, name: str) -> str:
        upload_id = new_upload_id()
        # Scratch writes: a session a machine crash loses is answered BLOB_UPLOAD_UNKNOWN and the
        # client starts again; nothing about it is trusted without checking.
        self.driver.put_scratch(paths.upload_started_at(name, upload_id), started_at())
        self.driver.put_scratch(paths.upload_data(name, upload_id), b"")
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
        with self._states_lock:
            state = self._states.get((name, upload_id, offset))
        try:
            if state is None:
                state = self.driver.get_content(paths.upload_hashstate(name, upload_id, "sha256", offset))
            return ResumableSha256.from_state(state, offset)
        except (PathNotFoundError, ValueError):
            pass
        # No usable state for this offset: rebuild it from the data (one read of what was uploaded).
        hasher = ResumableSha256()
        with self.driver.reader(data or paths.upload_data(name, upload_id), 0) as src:
            _copy(src, hasher.update, limit=offset)
        return hasher

    def _save_hasher(self, name: str, upload_id: str, hasher: ResumableSha256, old: int, new: int) -> None:
        state = hasher.state()
        with self._states_lock:
            self._states.pop((name, upload_id, old), None)
            self._states[(name, upload_id, new)] = state
            while len(self._states) > MEMORY_STATES:
                self._states.popitem(last=False)
        if new < STATE_FILE_MIN:
            return  # no state file below this size, so none at `old` either
        self.driver.put_scratch(paths.upload_hashstate(name, upload_id, "sha256", new), state)
        if old >= STATE_FILE_MIN and old != new:
            with contextlib.suppress(PathNotFoundError):
                self.driver.delete(paths.upload_hashstate(name, upload_id, "sha256", old))

    def append(self, name: str, upload_id: str, body: BinaryIO, length: int | None) -> int:
        """Append the request body; returns the new size. ``length`` bounds what is read."""
        return self._append(name, upload_id, body, length, save_state=True)[0]

    def _append(
        self, name: str, upload_id: str, body: BinaryIO, length: int | None, *, save_state: bool
    ) -> tuple[int, ResumableSha256 | None]:
        """Append; returns the new size and a hasher covering the data up to it (``None`` when not
        resumable). ``save_state`` keeps the hasher's state for a later request."""
        try:
            writer = self.driver.writer(paths.upload_data(name, upload_id), append=True)
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        try:
            # The driver lets one appending writer in at a time, so the offset is the writer's, and
            # the hash state loaded for it covers exactly the bytes before ours.
            start = offset = writer.size
            adopted = self._adopt(writer, body, length) if start == 0 and isinstance(body, SpoolFile) else None
            if adopted is not None:
                written, hasher = adopted
            else:
                hasher = self._load_hasher(name, upload_id, offset)

                def sink(chunk: bytes) -> None:
                    writer.write(chunk)
                    if hasher is not None:
                        hasher.update(chunk)

                written = _copy(body, sink, limit=length)
                if length is not None and written != length:
                    raise SizeInvalid(f"received {written} bytes, Content-Length said {length}")
                # Not durable yet: the move into place at the end of the upload is. A chunk a machine
                # crash loses shows in the upload's size (or in the digest), never in a stored blob.
                writer.commit_scratch()
        except BaseException:
            writer.close()
            raise
        writer.close()
        new_size = start + written
        if save_state and hasher is not None and written:
            self._save_hasher(name, upload_id, hasher, offset, new_size)
        return new_size, hasher

    def _adopt(
        self, writer: FileWriter, body: SpoolFile, length: int | None
    ) -> tuple[int, ResumableSha256 | None] | None:
        """Let the driver take the spooled body as the upload's data (no second write of every
        byte), then hash it; ``None`` when the driver copies instead."""
        size = os.fstat(body.fileno()).st_size
        if not size or (length is not None and size != length) or not writer.adopt(body):
            return None
        # Hashed after the driver took it, so that the disk writes it meanwhile. Another PATCH may
        # append to the adopted file as soon as the writer is closed: hash only what was ours.
        hasher = ResumableSha256() if RESUMABLE else None
        if hasher is not None:
            body.seek(0)
            _copy(body, hasher.update, limit=size)
        return size, hasher

    def finish(self, name: str, upload_id: str, expected: Digest, body: BinaryIO | None, length: int | None) -> int:
        """Append an optional last chunk, check the digest, move the data into place and link it.

        On a digest mismatch the upload is cancelled (as Distribution does) and :class:`DigestInvalid`
        raised. Returns the blob's size.
        """
        hasher, covered = None, -1
        if body is not None and length:
            # No hash state saved: the hasher is used right below, and a retried PUT re-hashes.
            covered, hasher = self._append(name, upload_id, body, length, save_state=False)
        # Take the data out of every writer's reach before checking it (the driver's move waits for
        # an appending writer to finish): bytes a racing PATCH adds can then never be moved into
        # place under a digest that was checked without them. A crash may undo this move: the
        # data is then back at `data`, and a retried PUT moves it again.
        data = paths.upload_committing(name, upload_id)
        try:
            self.driver.move_scratch(paths.upload_data(name, upload_id), data)
        except PathNotFoundError:
            pass  # a PUT that failed after this step is being retried: its data waits at `data`
        try:
            size = self.driver.stat(data).size
        except PathNotFoundError:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        if hasher is not None and covered == size and expected.algorithm == "sha256":
            actual = hasher.hexdigest()
        else:
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
