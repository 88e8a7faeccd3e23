"""A storage driver that keeps everything under a prefix of another driver.

Storage path ``/x`` is ``<prefix>/x`` in the inner driver; ``/`` is ``<prefix>`` itself. Several
registries (tenants) can so share one bucket or directory without seeing each other's data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import BinaryIO

from registry.storage.checked import checked, validate_path
from registry.storage.driver import FileInfo, FileWriter, PathNotFoundError, StorageDriver


class PrefixedDriver(StorageDriver):
    """Delegates every call to ``inner`` with ``prefix`` put in front of the path.

    The inner driver is wrapped in :func:`registry.storage.checked.checked` like any driver the
    registry uses, so its errors come out normalized too.
    """

    name = "prefixed"

    def __init__(self, inner: StorageDriver, prefix: str) -> None:
        self.inner = checked(inner)
        self.prefix = validate_path(prefix)

    def _inner(self, path: str) -> str:
        return self.prefix if path == "/" else self.prefix + path

    def _outer(self, path: str) -> str:
        return path[len(self.prefix) :] or "/"

    def get_content(self, path: str) -> bytes:
        return self.inner.get_content(self._inner(path))

    def put_content(self, path: str, content: bytes) -> None:
        self.inner.put_content(self._inner(path), content)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        return self.inner.reader(self._inner(path), offset)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return self.inner.writer(self._inner(path), append)

    def stat(self, path: str) -> FileInfo:
        try:
            info = self.inner.stat(self._inner(path))
        except PathNotFoundError:
            if path == "/":  # nothing stored yet: the root of an empty driver still exists
                return FileInfo("/", 0, True, None)
            raise
        return dataclasses.replace(info, path=path)

    def list(self, path: str) -> list[str]:
        try:
            children = self.inner.list(self._inner(path))
        except PathNotFoundError:
            if path == "/":
                return []
            raise
        return [self._outer(child) for child in children]

    def move(self, source: str, dest: str) -> None:
        self.inner.move(self._inner(source), self._inner(dest))

    def delete(self, path: str) -> None:
        self.inner.delete(self._inner(path))

    def redirect_url(self, method: str, path: str) -> str | None:
        return self.inner.redirect_url(method, self._inner(path))

    def walk(self, path: str) -> Iterator[FileInfo]:
        # The inner driver's walk, not the base class's list + stat: it may have a cheaper one.
        try:
            for info in self.inner.walk(self._inner(path)):
                yield dataclasses.replace(info, path=self._outer(info.path))
        except PathNotFoundError:
            if path != "/":
                raise

    def close(self) -> None:
        self.inner.close()
