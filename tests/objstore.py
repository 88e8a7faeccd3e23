"""An object-store-like storage driver for the tests (not shipped): S3's rules, in memory.

It exists so that the core and the exported driver suite are proven against the hardest backend the
contract must serve, before a real S3, Azure or RGW driver exists, and so that what an upload costs
there can be counted. The server side, :class:`ObjectStore`, behaves as S3 does where it matters:

- objects are immutable once written: a put replaces a whole object, nothing is appended or renamed;
- a move is a server-side copy (at most :data:`MAX_SINGLE_COPY` bytes in one copy, a multipart copy
  above) and a delete;
- multipart uploads: parts of at least :data:`MIN_PART` bytes except the last, at most
  :data:`MAX_PARTS` parts, the object appearing only when the upload is completed;
- nothing of an unfinished upload can be read.

:class:`ObjectStoreDriver` meets the storage contract on top of it the way a real object-store driver
would: a fresh writer buffers one part and becomes a multipart upload beyond it; an appending writer
resumes the path's multipart upload, keeping what does not fill a part as a small "tail" object next
to the path, so that every process can resume it and nothing lives in this process's memory. Its
writers detect a concurrent writer of the same upload (a version check standing in for comparing part
ETags) and raise :class:`~registry.storage.driver.ConflictError`. It declares only
``SERVER_COPY``: no turn-taking, no rename, no reading of uncommitted data.

Everything is counted in :attr:`ObjectStore.stats`: bytes stored (puts and parts), copies and the bytes
they copied, requests by kind.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import io
import itertools
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry.storage.driver import (
    Capability,
    ConflictError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    WriterBase,
)
from registry.storage.paging import delimited_page

MiB = 1 << 20
#: S3's smallest part, except the last of an upload.
MIN_PART = 5 * MiB
#: S3's most parts in one multipart upload.
MAX_PARTS = 10_000
#: S3's largest single (non-multipart) copy.
MAX_SINGLE_COPY = 5 * 1024 * MiB
#: A character no storage path contains: the driver's own keys (tails) can never collide with one.
_OWN = "~"


class ObjectStoreError(StorageError):
    """The object store refused a request (a rule of S3's was broken)."""


@dataclasses.dataclass
class _Multipart:
    key: str
    kind: str  # "append" (resumable, found by key) or "fresh" (a fresh writer's own)
    parts: dict[int, bytes] = dataclasses.field(default_factory=dict)
    version: int = 0


class ObjectStore:
    """The server: objects and multipart uploads, thread-safe, with S3's limits, counting everything."""

    def __init__(self, max_single_copy: int = MAX_SINGLE_COPY) -> None:
        self.objects: dict[str, tuple[bytes, datetime.datetime]] = {}
        self.uploads: dict[int, _Multipart] = {}
        self.max_single_copy = max_single_copy
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self.stats: collections.Counter[str] = collections.Counter()

    # -- objects ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        with self.lock:
            self.stats["put"] += 1
            self.stats["bytes_stored"] += len(data)
            self.objects[key] = (bytes(data), datetime.datetime.now(datetime.UTC))

    def get(self, key: str) -> bytes:
        with self.lock:
            self.stats["get"] += 1
            try:
                return self.objects[key][0]
            except KeyError:
                raise PathNotFoundError(path=key) from None

    def head(self, key: str) -> tuple[int, datetime.datetime] | None:
        with self.lock:
            self.stats["head"] += 1
            found = self.objects.get(key)
            return (len(found[0]), found[1]) if found else None

    def delete(self, key: str) -> bool:
        with self.lock:
            self.stats["delete"] += 1
            return self.objects.pop(key, None) is not None

    def keys(self, prefix: str) -> list[str]:
        with self.lock:
            self.stats["list"] += 1
            return sorted(k for k in self.objects if k.startswith(prefix))

    def list_delimited(self, prefix: str, start_after: str, max_keys: int) -> tuple[list[str], bool]:
        """``ListObjectsV2`` with delimiter ``/``: the entries under ``prefix`` (``name/`` for a common
        prefix) with keys after ``start_after``, in key order, at most ``max_keys``; and whether more
        follow. Every key starting with a returned common prefix counts as read (S3's continuation)."""
        with self.lock:
            self.stats["list"] += 1
            keys = sorted(k for k in self.objects if k.startswith(prefix) and k > start_after)
        entries: list[str] = []
        for key in keys:
            rest = key[len(prefix):]
            entry = rest.split("/", 1)[0] + "/" if "/" in rest else rest
            if entries and entries[-1] == entry:
                continue
            if prefix + entry <= start_after:
                continue  # a common prefix that start_after points inside: already returned
            if len(entries) == max_keys:
                return entries, True
            entries.append(entry)
        return entries, False

    def copy(self, source: str, dest: str) -> None:
        """A server-side copy: one request up to the single-copy limit, a multipart copy above."""
        with self.lock:
            data = self.objects.get(source)
            if data is None:
                raise PathNotFoundError(path=source)
            size = len(data[0])
            self.stats["copies"] += 1
            self.stats["bytes_copied"] += size
            self.stats["copy_requests"] += 1 if size <= self.max_single_copy else -(-size // self.max_single_copy)
            self.objects[dest] = (data[0], datetime.datetime.now(datetime.UTC))

    # -- multipart uploads -----------------------------------------------------------------------

    def create_multipart(self, key: str, kind: str) -> int:
        with self.lock:
            self.stats["create_multipart"] += 1
            upload_id = next(self._ids)
            self.uploads[upload_id] = _Multipart(key, kind)
            return upload_id

    def find_multipart(self, key: str, kind: str) -> int | None:
        with self.lock:
            self.stats["list_multipart"] += 1
            found = [i for i, u in self.uploads.items() if u.key == key and u.kind == kind]
            return max(found) if found else None

    def multipart(self, upload_id: int) -> _Multipart:
        with self.lock:
            try:
                return self.uploads[upload_id]
            except KeyError:
                raise ObjectStoreError(f"no such upload {upload_id}") from None

    def upload_parts(self, upload_id: int, version: int | None, parts: list[bytes]) -> int:
        """Add ``parts`` after the upload's last part; with ``version``, only if nobody else added or
        removed parts since the caller saw that version (else :class:`ConflictError`). Returns the
        new version."""
        with self.lock:
            upload = self.multipart(upload_id)
            if version is not None and upload.version != version:
                raise ConflictError(f"upload {upload_id} changed since version {version}", path=upload.key)
            start = max(upload.parts, default=0) + 1
            if start - 1 + len(parts) > MAX_PARTS:
                raise ObjectStoreError(f"more than {MAX_PARTS} parts", path=upload.key)
            for number, data in enumerate(parts, start):
                self.stats["upload_part"] += 1
                self.stats["bytes_stored"] += len(data)
                upload.parts[number] = bytes(data)
            upload.version += 1
            return upload.version

    def complete(self, upload_id: int, version: int | None = None) -> None:
        with self.lock:
            upload = self.multipart(upload_id)
            if version is not None and upload.version != version:
                raise ConflictError(f"upload {upload_id} changed since version {version}", path=upload.key)
            numbers = sorted(upload.parts)
            for number in numbers[:-1]:
                if len(upload.parts[number]) < MIN_PART:
                    raise ObjectStoreError(f"part {number} is smaller than {MIN_PART} (EntityTooSmall)",
                                           path=upload.key)
            self.stats["complete"] += 1
            data = b"".join(upload.parts[n] for n in numbers)
            self.objects[upload.key] = (data, datetime.datetime.now(datetime.UTC))
            del self.uploads[upload_id]

    def abort(self, upload_id: int) -> None:
        with self.lock:
            self.stats["abort"] += 1
            self.uploads.pop(upload_id, None)

    def uploads_under(self, key: str) -> list[int]:
        with self.lock:
            return [i for i, u in self.uploads.items() if u.key == key or u.key.startswith(key + "/")]


class ObjectStoreDriver(StorageDriver):
    """The storage contract on :class:`ObjectStore`, as a real object-store driver would meet it.

    :param part_size: how much a writer buffers before it sends a part (at least :data:`MIN_PART`).
    """

    name = "objstore"
    capabilities = Capability.SERVER_COPY | Capability.PAGED_LIST

    def __init__(self, store: ObjectStore | None = None, part_size: int = MIN_PART) -> None:
        self.store = store or ObjectStore()
        self.part_size = max(part_size, MIN_PART)

    # -- reading ---------------------------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        return self.store.get(path)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        data = self.store.get(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffsetError(f"offset {offset} outside 0..{len(data)}", path=path)
        return io.BytesIO(data[offset:])

    def stat(self, path: str) -> FileInfo:
        found = self.store.head(path)
        if found is not None:
            return FileInfo(path, found[0], False, found[1])
        if path == "/" or self._children(path):
            return FileInfo(path, 0, True, None)
        raise PathNotFoundError(path=path)

    def list(self, path: str) -> list[str]:
        children = self._children(path)
        if not children and path != "/":
            raise PathNotFoundError(path=path)
        return children

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """As an S3 driver pages: delimited listings in key order from ``after``, then
        :func:`delimited_page`'s fix-up to name order."""
        prefix = "/" if path == "/" else path + "/"
        names, more, any_entry = delimited_page(
            self._entries(prefix, prefix + after if after else "", limit + 2),
            lambda name: bool(self.store.list_delimited(prefix + name + "/", "", 1)[0]),
            after, limit, keep=lambda name: _OWN not in name,
        )
        if not any_entry and path != "/" and (after is None or not self.store.list_delimited(prefix, "", 1)[0]):
            raise PathNotFoundError(path=path)
        return names, more

    def _entries(self, prefix: str, start_after: str, max_keys: int) -> Iterator[str]:
        while True:
            entries, truncated = self.store.list_delimited(prefix, start_after, max_keys)
            yield from entries
            if not truncated or not entries:
                return
            # Past the last entry, and everything below it when it is a common prefix.
            start_after = prefix + entries[-1] + ("\U0010ffff" if entries[-1].endswith("/") else "")

    def _children(self, path: str) -> list[str]:
        prefix = "/" if path == "/" else path + "/"
        names = {key[len(prefix):].split("/", 1)[0] for key in self.store.keys(prefix)}
        return sorted(prefix + n for n in names if _OWN not in n)

    # -- writing ---------------------------------------------------------------------------------

    def put_content(self, path: str, content: bytes) -> None:
        self._refuse_directory(path)
        self.store.put(path, content)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        if not append:
            self._refuse_directory(path)
            return _FreshWriter(self, path)
        return _AppendWriter(self, path)

    def move(self, source: str, dest: str) -> None:
        if self.store.head(source) is None:
            raise PathNotFoundError(path=source)
        self._refuse_directory(dest)
        self.store.copy(source, dest)
        self.store.delete(source)

    def delete(self, path: str) -> None:
        found = self.store.delete(path)
        found = self.store.delete(_tail(path)) or found
        for key in self.store.keys(path + "/"):
            found = self.store.delete(key) or found
        for upload_id in self.store.uploads_under(path):
            self.store.abort(upload_id)
            found = True
        if not found:
            raise PathNotFoundError(path=path)

    def _refuse_directory(self, path: str) -> None:
        if self.store.keys(path + "/"):
            raise StorageError("a directory exists at this path", path=path)


def _tail(path: str) -> str:
    """The small object holding what an unfinished append did not fill a part with."""
    return f"{path}{_OWN}tail"


class _Writer(WriterBase):
    def __init__(self, driver: ObjectStoreDriver, path: str) -> None:
        self._driver, self._store, self._path = driver, driver.store, path
        self._buffer = bytearray()
        self._stored = 0  # bytes already in parts

    @property
    def size(self) -> int:
        return self._stored + len(self._buffer)

    def write(self, data: bytes) -> int:
        self._check_open()
        self._buffer += data
        while len(self._buffer) >= 2 * self._driver.part_size:
            self._send(bytes(self._buffer[: self._driver.part_size]))
            del self._buffer[: self._driver.part_size]
        return len(data)

    def _send(self, part: bytes) -> None:
        raise NotImplementedError


class _FreshWriter(_Writer):
    """One put when the content fits a part; a multipart upload of its own beyond that."""

    def __init__(self, driver: ObjectStoreDriver, path: str) -> None:
        super().__init__(driver, path)
        self._upload: int | None = None

    def _send(self, part: bytes) -> None:
        if self._upload is None:
            self._upload = self._store.create_multipart(self._path, "fresh")
        self._store.upload_parts(self._upload, None, [part])
        self._stored += len(part)

    def _finish(self) -> None:
        if self._upload is None:
            self._store.put(self._path, bytes(self._buffer))
        else:
            self._store.upload_parts(self._upload, None, [bytes(self._buffer)] if self._buffer else [])
            self._store.complete(self._upload)

    def _discard(self) -> None:
        if self._upload is not None:
            self._store.abort(self._upload)


class _AppendWriter(_Writer):
    """Resumes the path's multipart upload: its parts, then its tail object, then this writer's bytes.

    Opening it lists the upload and reads the tail (under one part); new full parts are sent at
    :meth:`close` together, only if the upload is still the version this writer resumed.
    """

    def __init__(self, driver: ObjectStoreDriver, path: str) -> None:
        super().__init__(driver, path)
        store = self._store
        self._new_parts: list[bytes] = []
        with store.lock:
            upload_id = store.find_multipart(path, "append")
            if upload_id is None:
                committed = store.head(path)
                if committed is None:
                    raise PathNotFoundError(path=path)
                # Continue a committed file: its content is the upload's start.
                upload_id = store.create_multipart(path, "append")
                content = store.get(path)
                if len(content) >= MIN_PART:
                    store.stats["copies"] += 1  # an UploadPartCopy of the object as part 1
                    store.stats["bytes_copied"] += len(content)
                    store.multipart(upload_id).parts[1] = content
                    store.multipart(upload_id).version += 1
                    content = b""
                elif content:
                    store.put(_tail(path), content)  # the upload must show it to the next writer too
                self._tail_data = content
            else:
                tail = store.head(_tail(path))
                self._tail_data = store.get(_tail(path)) if tail else b""
            upload = store.multipart(upload_id)
            self._upload, self._version = upload_id, upload.version
            self._stored = sum(len(p) for p in upload.parts.values())
        self._buffer = bytearray(self._tail_data)

    def _send(self, part: bytes) -> None:
        # Held back until close: sent only if nobody resumed the upload meanwhile.
        self._new_parts.append(part)
        self._stored += len(part)

    def close(self) -> None:
        if self._ended:
            return
        self._ended = "closed"
        store = self._store
        if len(self._buffer) >= MIN_PART:
            # A part of its own (under two part sizes, by write's rule): only a rest under S3's
            # minimum waits as the tail, to be stored again in the next part.
            self._send(bytes(self._buffer))
            self._buffer.clear()
        with store.lock:
            if not self._new_parts and bytes(self._buffer) == self._tail_data:
                return  # nothing written (a look at the size): nothing to store, nothing to conflict
            store.upload_parts(self._upload, self._version, self._new_parts)
            if self._buffer:
                store.put(_tail(self._path), bytes(self._buffer))
            else:
                store.delete(_tail(self._path))

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"
        store = self._store
        with store.lock:
            parts = [*self._new_parts, bytes(self._buffer)] if self._buffer else self._new_parts
            version = store.upload_parts(self._upload, self._version, parts)
            store.complete(self._upload, version)
            store.delete(_tail(self._path))
        self._ended = "committed"

    def cancel(self) -> None:
        if self._ended == "committed":
            return
        self._ended = "cancelled"
        self._store.abort(self._upload)
        self._store.delete(_tail(self._path))
        self._store.delete(self._path)


def create_driver(params: Mapping[str, Any] | None) -> ObjectStoreDriver:
    return ObjectStoreDriver(part_size=int((params or {}).get("partsize") or MIN_PART))


class Plugin:
    """Declares ``objstore`` to a plugin manager (tests register it; it has no entry point)."""

    @hookimpl
    def registry_storage_drivers(self) -> list[DriverDescriptor]:
        return [DriverDescriptor(
            name="objstore", factory=create_driver,
            description="In-memory object store with S3's rules (tests only).",
            schema={"type": ["object", "null"], "properties": {"partsize": {"type": "integer"}},
                    "additionalProperties": False},
        )]
