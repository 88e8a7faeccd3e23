"""A storage middleware that keeps everything under a prefix of the driver it wraps.

Storage path ``/x`` is ``<prefix>/x`` in the inner driver; ``/`` is ``<prefix>`` itself. Several
registries (tenants) can so share one bucket or directory without seeing each other's data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from registry.storage.checked import checked, validate_path
from registry.storage.driver import FileInfo, PathNotFoundError, StorageDriver
from registry.storage.middleware import StorageMiddleware, contract_members


class PrefixedDriver(StorageMiddleware):
    """Forwards every call to ``inner`` with ``prefix`` put in front of each storage path argument.

    The operations that return paths (``stat``, ``list``, ``walk``) take the prefix off again, and
    make the root of a tenant with nothing stored yet an empty directory. Every other operation of the
    contract is forwarded with its path arguments (the strings starting with ``/``) prefixed, made
    from the contract itself: an operation the contract gains later is prefixed too, rather than
    reaching the inner driver's unprefixed path.

    The inner driver is wrapped in :func:`registry.storage.checked.checked` like any driver the
    registry uses, so its errors come out normalized too, naming the inner path.
    """

    name = "prefixed"

    def __init__(self, inner: StorageDriver, prefix: str) -> None:
        super().__init__(checked(inner))
        self.prefix = validate_path(prefix)

    def _inner(self, path: str) -> str:
        return self.prefix if path == "/" else self.prefix + path

    def _outer(self, path: str) -> str:
        return path[len(self.prefix) :] or "/"

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

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        # Names, not paths: nothing to take off; only the empty tenant's root needs care, as in list.
        try:
            return self.inner.list_page(self._inner(path), after, limit)
        except PathNotFoundError:
            if path == "/":
                return [], False
            raise

    def walk(self, path: str) -> Iterator[FileInfo]:
        # The inner driver's walk, not the base class's list + stat: it may have a cheaper one.
        try:
            for info in self.inner.walk(self._inner(path)):
                yield dataclasses.replace(info, path=self._outer(info.path))
        except PathNotFoundError:
            if path != "/":
                raise


def _prefixing(attr: str) -> Callable[..., Any]:
    def forward(self: PrefixedDriver, *args: Any, **kwargs: Any) -> Any:
        args = tuple(self._inner(a) if isinstance(a, str) and a.startswith("/") else a for a in args)
        return getattr(self.inner, attr)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = attr
    return forward


for _attr, _is_method in contract_members(StorageDriver).items():
    if _is_method and _attr not in vars(PrefixedDriver):
        setattr(PrefixedDriver, _attr, _prefixing(_attr))
