"""Blob upload sessions, stateless across processes, on any driver the contract allows.

Everything about an upload lives in storage under ``_uploads/<id>/`` in Distribution's layout: the
data so far, ``startedat``, and (on drivers whose appending writers take turns) our resumable SHA-256
state at the offset it covers. Any process sharing the storage can continue any upload, and a
restart loses nothing.

The data is written as an object store needs it (:mod:`registry.storage.driver`): one appending
writer per chunk, closed and never committed, so a chunk costs what it holds and not everything
before it again; at the final PUT one commit and one move into place. An upload sent in one request
(``POST ?digest=`` with a body, or a PUT with the body of an empty upload) is written straight to
its blob path, hashed on the way and committed only when the digest matches: no move at all.

How the digest is checked at the end depends on the driver (:class:`Capability`):

- with ``EXCLUSIVE_APPEND`` the saved hash state of the offset is trustworthy (the driver let one
  writer in at a time), and with ``RENAME`` the data is first set aside, out of every writer's
  reach, by a rename that copies nothing;
- without them, the committed data is read once and hashed: the digest is verified over the bytes
  actually stored, whatever concurrent writers in other processes did.

Errors are storage errors (:class:`UploadError` and its subclasses); the handlers map them to the
protocol's error codes.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO

from registry.digests import Digest
from registry.storage import paths
from registry.storage.driver import (
    Capability,
    ConflictError,
    FileWriter,
    PathNotFoundError,
    StorageDriver,
    StorageError,
)
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

#: Locks serializing one process's requests on one upload (drivers without EXCLUSIVE_APPEND); a
#: fixed set, picked by hash, so that nothing grows with the number of uploads.
_LOCK_STRIPES = 64


class UploadError(StorageError):
    """Base of what :class:`Uploads` raises about the upload itself (not the storage)."""


class UploadUnknownError(UploadError):
    """No such upload session (finished, cancelled, purged, or never started)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id} is not known")
        self.upload_id = upload_id


class UploadOffsetError(UploadError):
    """A chunk claims an offset other than where the upload stands (``size``), or another writer
    changed the upload meanwhile: the client should ask where it stands and go on from there."""

    def __init__(self, claimed: int | None, size: int | None) -> None:
        where = f"offset {size}" if size is not None else "another offset (a concurrent request wrote to it)"
        super().__init__(f"the chunk at offset {claimed} does not continue the upload at {where}")
        self.claimed, self.size = claimed, size


class UploadSizeError(UploadError):
    """The body held fewer bytes than its ``Content-Length`` said, or (``length`` ``None``) a body
    of unknown length ended before its end (``why``)."""

    def __init__(self, received: int, length: int | None, why: str = "") -> None:
        if length is None:
            super().__init__(f"received {received} bytes, then the body ended early: {why or 'incomplete'}")
        else:
            super().__init__(f"received {received} bytes, Content-Length said {length}")
        self.received, self.length = received, length
        #: A hasher over the upload up to what was received, when the chunk had one.
        self.hasher: ResumableSha256 | None = None


class UploadBudgetError(UploadError):
    """A body of unknown length went past the bytes it was allowed to bring (``budget``: what a quota
    leaves, :func:`registry.ops.quota.body_budget`): reading stopped at the read that would have
    passed it, which was not stored. ``written`` bytes of the body were stored, ``received`` read."""

    def __init__(self, written: int, received: int, budget: int) -> None:
        super().__init__(f"the body brought more than the {budget} bytes it may add ({received} read)")
        self.written, self.received, self.budget = written, received, budget


class DigestMismatchError(UploadError):
    """The uploaded bytes do not have the digest the client named; nothing was stored."""

    def __init__(self, expected: Digest, actual: str) -> None:
        self.expected, self.actual = str(expected), f"{expected.algorithm}:{actual}"
        super().__init__(f"digest mismatch: upload has {self.actual}, request said {self.expected}")


def new_upload_id() -> str:
    return str(uuid.uuid4())


def is_adoptable(body: BinaryIO) -> bool:
    """Whether ``body`` is a spooled request body a driver may adopt (:meth:`FileWriter.adopt`):
    the server marks such files (``registry.spool.SpoolFile``); storage needs no server import."""
    return bool(getattr(body, "adoptable", False))


class Uploads:
    """Start, append to, inspect, finish and cancel upload sessions."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.driver: StorageDriver = store.driver
        caps = self.driver.capabilities
        # Hash states saved per offset are only trustworthy when one writer at a time wrote the data.
        self.exclusive = Capability.EXCLUSIVE_APPEND in caps
        self.rename = Capability.RENAME in caps
        self.read_uncommitted = Capability.READ_UNCOMMITTED in caps
        # The bytes of an upload below an offset never change, so a state for (upload, offset) can
        # be kept as long as wanted; an upload that is gone is simply never asked for again.
        self._states: collections.OrderedDict[tuple[str, str, int], bytes] = collections.OrderedDict()
        self._states_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    @contextlib.contextmanager
    def _turn(self, name: str, upload_id: str) -> Iterator[None]:
        """One request of this process at a time on an upload, where the driver does not take turns
        itself: two appending writers of one upload in one process would race over its offset."""
        if self.exclusive:
            yield
            return
        with self._stripes[hash((name, upload_id)) % _LOCK_STRIPES]:
            yield

    # -- sessions --------------------------------------------------------------------------------

    def start(self, name: str) -> str:
        upload_id = new_upload_id()
        # Scratch writes: a session a machine crash loses is answered BLOB_UPLOAD_UNKNOWN and the
        # client starts again; nothing about it is trusted without checking.
        self.driver.put_scratch(paths.upload_started_at(name, upload_id), started_at())
        self.driver.put_scratch(paths.upload_data(name, upload_id), b"")
        return upload_id

    def size(self, name: str, upload_id: str) -> int:
        """Bytes received so far; raises :class:`UploadUnknownError`."""
        data = paths.upload_data(name, upload_id)
        if self.read_uncommitted:
            try:
                return self.driver.stat(data).size
            except PathNotFoundError:
                raise UploadUnknownError(upload_id) from None
        # Readers see the data as of its last commit (never, for an unfinished upload): ask a writer.
        with self._turn(name, upload_id):
            writer = self._writer(data, upload_id)
            try:
                return writer.size
            finally:
                writer.close()

    def cancel(self, name: str, upload_id: str) -> None:
        try:
            self.driver.delete(paths.upload_dir(name, upload_id))
        except PathNotFoundError:
            raise UploadUnknownError(upload_id) from None

    def _writer(self, data: str, upload_id: str) -> FileWriter:
        try:
            return self.driver.writer(data, append=True)
        except PathNotFoundError:
            raise UploadUnknownError(upload_id) from None

    # -- hash states (drivers with EXCLUSIVE_APPEND) ----------------------------------------------

    def _load_hasher(self, name: str, upload_id: str, offset: int, data: str | None = None) -> ResumableSha256 | None:
        """A hasher covering the upload's first ``offset`` bytes, or ``None`` when there is no
        trustworthy way to get one without reading more than the caller can afford."""
        if not RESUMABLE or not self.exclusive:
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
        if data is None and not self.read_uncommitted:
            return None  # the data so far cannot be read before it is committed
        # No usable state for this offset: rebuild it from the data (one read of what was uploaded).
        hasher = ResumableSha256()
        with self.driver.reader(data or paths.upload_data(name, upload_id), 0) as src:
            if _copy(src, hasher.update, limit=offset) != offset:
                return None
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

    # -- chunks ----------------------------------------------------------------------------------

    def append(self, name: str, upload_id: str, body: BinaryIO, length: int | None, offset: int | None = None,
               budget: int | None = None) -> int:
        """Append the request body; returns the new size. ``length`` bounds what is read; ``offset``,
        when given, is where the client says the chunk starts (checked against the stored size by
        the writer that appends, so no other request can slip in between). ``budget`` bounds a body
        of unknown length (``length`` ``None``): past it, :class:`UploadBudgetError` (what was
        written stays; the caller discards the upload)."""
        start, written, hasher = self._chunk(name, upload_id, body, length, offset, budget)
        if hasher is not None and written:
            self._save_hasher(name, upload_id, hasher, start, start + written)
        return start + written

    def _chunk(
        self, name: str, upload_id: str, body: BinaryIO, length: int | None, offset: int | None,
        budget: int | None = None,
    ) -> tuple[int, int, ResumableSha256 | None]:
        """Write one chunk through its own appending writer, closed and not committed; returns the
        offset it started at, the bytes written, and a hasher covering the upload up to its end (or
        ``None``)."""
        with self._turn(name, upload_id):
            writer = self._writer(paths.upload_data(name, upload_id), upload_id)
            try:
                start = writer.size
                if offset is not None and offset != start:
                    raise UploadOffsetError(offset, start)
                written, hasher = self._write_chunk(name, upload_id, writer, body, length, budget)
            except UploadSizeError as exc:
                # The body ended early (a connection broken mid-body, with streamed bodies): what
                # arrived is kept, and so is the hash over it, so that the client's resumed chunk
                # does not make us read it all again.
                self._close(writer, start)
                if exc.hasher is not None and exc.received and writer.size == start + exc.received:
                    self._save_hasher(name, upload_id, exc.hasher, start, writer.size)
                raise
            except BaseException:
                writer.close()  # what was written is kept: the upload's size tells the client
                raise
            self._close(writer, start)
        return start, written, hasher

    @staticmethod
    def _close(writer: FileWriter, offset: int) -> None:
        try:
            writer.close()
        except ConflictError as exc:
            raise UploadOffsetError(offset, None) from exc

    def _write_chunk(
        self, name: str, upload_id: str, writer: FileWriter, body: BinaryIO, length: int | None,
        budget: int | None = None,
    ) -> tuple[int, ResumableSha256 | None]:
        """Write the body through ``writer`` (open, not yet closed); returns the bytes written and a
        hasher covering the upload up to the writer's new size, or ``None``."""
        start = writer.size
        if start == 0 and is_adoptable(body):
            adopted = self._adopt(writer, body, length, hashed=self.exclusive)
            if adopted is not None:
                return adopted
        hasher = self._load_hasher(name, upload_id, start)
        try:
            written = _write_body(writer, body, length, hasher, budget)
        except UploadSizeError as exc:
            exc.hasher = hasher  # it covers exactly what was written (see _chunk)
            raise
        return written, hasher

    def _adopt(
        self, writer: FileWriter, body: BinaryIO, length: int | None, *, hashed: bool
    ) -> tuple[int, ResumableSha256 | None] | None:
        """Let the driver take the spooled body as the writer's content (no second write of every
        byte), then hash it if ``hashed``; ``None`` when the driver copies instead."""
        size = os.fstat(body.fileno()).st_size
        if not size or (length is not None and size != length) or not writer.adopt(body):
            return None
        # Hashed after the driver took it, so that the disk writes it meanwhile.
        hasher = ResumableSha256() if RESUMABLE and hashed else None
        if hasher is not None:
            body.seek(0)
            _copy(body, hasher.update, limit=size)
        return size, hasher

    # -- finishing -------------------------------------------------------------------------------

    def put_blob(self, name: str, expected: Digest, body: BinaryIO, length: int | None,
                 budget: int | None = None) -> int:
        """Store a whole blob sent in one request straight at its blob path (a content-addressed
        put: hashed as it is written, committed only if the digest matches, never moved) and link
        it into ``name``. Returns its size; raises :class:`DigestMismatchError`, and
        :class:`UploadBudgetError` (nothing stored) for a body of unknown length past ``budget``."""
        writer = self.driver.writer(paths.blob_data(expected))
        try:
            adopted = self._adopt(writer, body, length, hashed=False) if is_adoptable(body) else None
            if adopted is not None:
                size = adopted[0]
                body.seek(0)
                actual, _ = _hash_stream(body, expected.algorithm, size)
            else:
                hasher = hashlib.new(expected.algorithm)
                size = _write_body(writer, body, length, hasher, budget)
                actual = hasher.hexdigest()
            if actual != expected.hex:
                raise DigestMismatchError(expected, actual)
            self.store.admit_layer(name, expected, size)  # over a quota: the writer discards it
            if self.store.blob_size(expected) != size:
                writer.commit()
            # else: already stored (pushed by someone else); keep that copy untouched.
        finally:
            writer.close()
        self.store.link_layer(name, expected)
        return size

    def finish(
        self, name: str, upload_id: str, expected: Digest, body: BinaryIO | None, length: int | None,
        offset: int | None = None, budget: int | None = None,
    ) -> int:
        """Append an optional last chunk, check the digest, move the data into place and link it.

        ``length`` is the last chunk's length: ``0`` for none, ``None`` to read ``body`` to its end,
        at most ``budget`` bytes of it (:class:`UploadBudgetError` past them; the caller discards
        the upload).

        ``offset``, when given with a body, is where the client says the last chunk starts. On a
        digest mismatch the upload is cancelled (as Distribution does) and
        :class:`DigestMismatchError` raised. Returns the blob's size.
        """
        if body is not None and length != 0 and offset in (None, 0) and self._is_empty(name, upload_id):
            # Everything in this one request: no upload data to commit, check and move.
            try:
                size = self.put_blob(name, expected, body, length, budget)
            except DigestMismatchError:
                with contextlib.suppress(UploadUnknownError):
                    self.cancel(name, upload_id)
                raise
            with contextlib.suppress(PathNotFoundError):
                self.driver.delete(paths.upload_dir(name, upload_id))
            return size
        if self.rename and self.exclusive:
            return self._finish_aside(name, upload_id, expected, body, length, offset, budget)
        return self._finish_in_place(name, upload_id, expected, body, length, offset, budget)

    def _is_empty(self, name: str, upload_id: str) -> bool:
        if self.read_uncommitted:
            try:
                return self.driver.stat(paths.upload_data(name, upload_id)).size == 0
            except PathNotFoundError:
                raise UploadUnknownError(upload_id) from None
        return self.size(name, upload_id) == 0

    def _finish_aside(
        self, name: str, upload_id: str, expected: Digest, body: BinaryIO | None, length: int | None,
        offset: int | None, budget: int | None = None,
    ) -> int:
        """Finish on a driver with turn-taking appenders and free renames (a file system)."""
        hasher, covered = None, -1
        if body is not None and length != 0:
            start, written, hasher = self._chunk(name, upload_id, body, length, offset, budget)
            covered = start + written
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
            raise UploadUnknownError(upload_id) from None
        if hasher is not None and covered == size and expected.algorithm == "sha256":
            actual = hasher.hexdigest()
        else:
            actual = self._digest(name, upload_id, expected.algorithm, size, data)
        self._check(name, upload_id, expected, actual)
        return self._place(name, upload_id, expected, data, size)

    def _finish_in_place(
        self, name: str, upload_id: str, expected: Digest, body: BinaryIO | None, length: int | None,
        offset: int | None, budget: int | None = None,
    ) -> int:
        """Finish on any driver: commit the data once, check its digest, move it once."""
        data = paths.upload_data(name, upload_id)
        with self._turn(name, upload_id):
            writer = self._writer(data, upload_id)
            try:
                start = writer.size
                hasher, written = None, 0
                if body is not None and length != 0:
                    if offset is not None and offset != start:
                        raise UploadOffsetError(offset, start)
                    written, hasher = self._write_chunk(name, upload_id, writer, body, length, budget)
                elif self.exclusive:
                    hasher = self._load_hasher(name, upload_id, start)
                size = start + written
                try:
                    writer.commit()
                except ConflictError as exc:
                    raise UploadOffsetError(offset if offset is not None else start, None) from exc
            except BaseException:
                self._close(writer, start)
                raise
            writer.close()
        if hasher is not None and self.exclusive and expected.algorithm == "sha256":
            # The writer that committed held the upload alone, from the state it loaded on.
            actual = hasher.hexdigest()
        else:
            # The digest over the bytes actually stored: one read of the committed data.
            with self.driver.reader(data, 0) as src:
                actual, size = _hash_stream(src, expected.algorithm, None)
        self._check(name, upload_id, expected, actual)
        return self._place(name, upload_id, expected, data, size)

    def _check(self, name: str, upload_id: str, expected: Digest, actual: str) -> None:
        if actual != expected.hex:
            with contextlib.suppress(UploadUnknownError):
                self.cancel(name, upload_id)
            raise DigestMismatchError(expected, actual)

    def _place(self, name: str, upload_id: str, expected: Digest, data: str, size: int) -> int:
        """Move checked data into place (unless the blob is already stored), link it, clean up."""
        self.store.admit_layer(name, expected, size)  # over a quota: nothing moved, nothing linked
        if self.store.blob_size(expected) != size:
            self.driver.move(data, paths.blob_data(expected))
        # else: already stored (pushed by someone else): keep the existing copy untouched.
        self.store.link_layer(name, expected)
        with contextlib.suppress(PathNotFoundError):
            self.driver.delete(paths.upload_dir(name, upload_id))
        return size

    def _digest(self, name: str, upload_id: str, algorithm: str, size: int, data: str) -> str:
        if algorithm == "sha256":
            hasher = self._load_hasher(name, upload_id, size, data)
            if hasher is not None:
                return hasher.hexdigest()
        with self.driver.reader(data, 0) as src:
            return _hash_stream(src, algorithm, size)[0]


def _write_body(writer: FileWriter, body: BinaryIO, length: int | None,
                hasher: ResumableSha256 | hashlib._Hash | None, budget: int | None = None) -> int:
    """Copy the body into ``writer`` (and ``hasher``); raises :class:`UploadSizeError` when the body
    ends before ``length``, and :class:`UploadBudgetError` before writing the read that takes a body
    of unknown length past ``budget``."""
    if hasher is None:
        sink: Callable[[bytes], object] = writer.write
    else:
        def sink(chunk: bytes) -> None:
            writer.write(chunk)
            hasher.update(chunk)

    if length is None and budget is not None:
        store, stored = sink, [0]

        def sink(chunk: bytes) -> None:
            # Checked before the write: what is stored never passes the budget.
            if stored[0] + len(chunk) > budget:
                raise UploadBudgetError(stored[0], stored[0] + len(chunk), budget)
            store(chunk)
            stored[0] += len(chunk)

    written = _copy(body, sink, limit=length)
    if length is not None and written != length:
        raise UploadSizeError(written, length)
    if length is None and not getattr(body, "complete", True):
        # A body of unknown length (the server's stream of a chunked body) that ended before its
        # last chunk: the connection broke, or the framing was malformed.
        raise UploadSizeError(written, None, getattr(body, "broken", ""))
    return written


def _hash_stream(src: BinaryIO, algorithm: str, limit: int | None) -> tuple[str, int]:
    """The hex digest of ``src`` (at most ``limit`` bytes) and the number of bytes it held."""
    h = hashlib.new(algorithm)
    count = _copy(src, h.update, limit=limit)
    return h.hexdigest(), count


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
