"""The ``inmemory`` driver: a process-local dict, for tests and experiments.

It registers through the same entry-point group as every other plugin (see ``pyproject.toml``).
"""

from __future__ import annotations

import datetime
import io
import threading
from typing import BinaryIO

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry.storage.driver import (
    Capability,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class _Writer(FileWriter):
    def __init__(self, driver: InMemoryDriver, path: str, start: bytes, append: bool) -> None:
        self._driver, self._path, self._append = driver, path, append
        self._buf = bytearray(start)
        self._done = False
        self._committed = False
        self._released = False

    def _release(self) -> None:
        if self._append and not self._released:
            self._released = True
            self._driver._end_append(self._path)

    def write(self, data: bytes) -> int:
        if self._done:
            raise StorageError("writer already committed, cancelled or closed", path=self._path)
        self._buf += data
        return len(data)

    @property
    def size(self) -> int:
        return len(self._buf)

    def commit(self) -> None:
        if self._done:
            raise StorageError("writer already committed, cancelled or closed", path=self._path)
        try:
            self._driver._store(self._path, bytes(self._buf))
        finally:
            self._release()
        self._done = self._committed = True

    def cancel(self) -> None:
        if self._committed:  # the contract: cancel after commit keeps the content
            return
        if self._append:
            self._driver._discard(self._path)
        self._done = True
        self._release()

    def close(self) -> None:
        """A fresh writer's content is dropped; an appending writer's is kept for the next one."""
        if self._done:
            return
        self._done = True
        try:
            if self._append:
                self._driver._store(self._path, bytes(self._buf))
        finally:
            self._release()


class InMemoryDriver(StorageDriver):
    """Files live in a dict of path → (bytes, mtime); directories are implied by their files."""

    name = "inmemory"
    #: One appending writer per path at a time (within the process, which is all that shares it),
    #: moves that copy nothing, appends that readers see once the writer is closed, and reads from memory.
    capabilities = (Capability.EXCLUSIVE_APPEND | Capability.RENAME | Capability.READ_UNCOMMITTED
                    | Capability.LOCAL_READS)

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, datetime.datetime]] = {}
        self._lock = threading.RLock()
        # Paths with an open appending writer: one at a time per path, and move waits for it,
        # as the file system driver's locks do (see the StorageDriver.writer contract).
        self._appending: set[str] = set()
        self._appenders_done = threading.Condition(self._lock)

    def _wait_for_appender(self, path: str) -> None:
        self._appenders_done.wait_for(lambda: path not in self._appending, timeout=600)

    def _end_append(self, path: str) -> None:
        with self._lock:
            self._appending.discard(path)
            self._appenders_done.notify_all()

    def _store(self, path: str, content: bytes) -> None:
        with self._lock:
            if self._is_dir(path):
                raise StorageError("a directory exists at this path", path=path)
            self._files[path] = (content, _now())

    def _discard(self, path: str) -> None:
        with self._lock:
            self._files.pop(path, None)

    def _is_dir(self, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        return any(p.startswith(prefix) for p in self._files)

    def get_content(self, path: str) -> bytes:
        with self._lock:
            try:
                return self._files[path][0]
            except KeyError:
                raise PathNotFoundError(path=path) from None

    def put_content(self, path: str, content: bytes) -> None:
        self._store(path, bytes(content))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        data = self.get_content(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffsetError(f"offset {offset} outside 0..{len(data)}", path=path)
        return io.BytesIO(data[offset:])

    def writer(self, path: str, append: bool = False) -> FileWriter:
        with self._lock:
            start = b""
            if append:
                self._wait_for_appender(path)
                if path not in self._files:
                    raise PathNotFoundError(path=path)
                start = self._files[path][0]
                self._appending.add(path)
            elif self._is_dir(path):
                raise StorageError("a directory exists at this path", path=path)
            return _Writer(self, path, start, append)

    def stat(self, path: str) -> FileInfo:
        with self._lock:
            if path in self._files:
                data, mtime = self._files[path]
                return FileInfo(path, len(data), False, mtime)
            if path == "/" or self._is_dir(path):
                return FileInfo(path, 0, True, None)
            raise PathNotFoundError(path=path)

    def list(self, path: str) -> list[str]:
        with self._lock:
            prefix = "/" if path == "/" else path + "/"
            children = {prefix + p[len(prefix):].split("/", 1)[0] for p in self._files if p.startswith(prefix)}
            if not children and path != "/":
                raise PathNotFoundError(path=path)
            return sorted(children)

    def move(self, source: str, dest: str) -> None:
        with self._lock:
            self._wait_for_appender(source)
            if source not in self._files:
                raise PathNotFoundError(path=source)
            if self._is_dir(dest):
                raise StorageError("a directory exists at the destination", path=dest)
            content, _ = self._files.pop(source)
            self._files[dest] = (content, _now())

    def delete(self, path: str) -> None:
        with self._lock:
            prefix = path + "/"
            doomed = [p for p in self._files if p == path or p.startswith(prefix)]
            if not doomed:
                raise PathNotFoundError(path=path)
            for p in doomed:
                del self._files[p]


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="inmemory",
            description="Process-local memory; for tests (data is lost on exit).",
            factory=lambda params: InMemoryDriver(),
            schema={"type": ["object", "null"], "additionalProperties": False, "properties": {}},
        )
    ]


