"""The wrapper every driver passes through: path validation, error normalization and call timing.

Like Distribution's ``base.Base``: whatever a driver does, the rest of the core sees only valid paths
going in and :class:`~registry.storage.driver.StorageError` subclasses coming out. Timing (for the
``registry_storage_call`` hook) is a separate subclass, chosen once when the wrapper is built, so
that a registry without metrics plugins pays nothing for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar

from registry.storage.driver import (
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    StorageDriver,
    StorageError,
    StorageUnavailableError,
)

log = logging.getLogger(__name__)

# Distribution's rule (storagedriver.PathRegexp): ASCII components, no empty ones, no trailing slash.
_PATH = re.compile(r"(/[A-Za-z0-9._-]+)+")

T = TypeVar("T")


def validate_path(path: str, *, root_ok: bool = False) -> str:
    """Return ``path`` if it obeys the path rules, else raise :class:`InvalidPathError`.

    ``.`` and ``..`` components are refused too, so a driver mapping paths onto a file system can
    never be steered outside its root.
    """
    if root_ok and path == "/":
        return path
    # fullmatch, not match: ``$`` would also accept a trailing newline ("/a\n").
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise InvalidPathError(f"invalid path: {path!r}", path=str(path))
    # A "." or ".." component always follows a "/": most paths are cleared without splitting.
    if "/." in path and any(part in (".", "..") for part in path.split("/")):
        raise InvalidPathError(f"invalid path: {path!r}", path=path)
    return path


def _normalized(name: str, call: Callable[[], T], path: str) -> T:
    try:
        return call()
    except Exception as exc:
        raise _error(name, path, exc)  # noqa: B904 - _error chains what it wraps


def _error(name: str, path: str, exc: Exception) -> StorageError:
    """What to raise for ``exc``, caught from driver ``name`` working on ``path``.

    A :class:`StorageError` comes out completed with both. A connection error or a timeout that a
    driver let through is still a backend failure that may pass: :class:`StorageUnavailableError`.
    Anything else is a driver bug or an SDK error the driver did not classify: a plain
    :class:`StorageError`, logged with its traceback, which clients see as a 500, not as "retry".
    """
    if isinstance(exc, StorageError):
        exc.driver = exc.driver or name
        exc.path = exc.path or path
        return exc
    err: StorageError
    if isinstance(exc, (ConnectionError, TimeoutError)):
        log.warning("storage driver %s failed on %s: %s: %s", name, path, type(exc).__name__, exc)
        err = StorageUnavailableError(f"{type(exc).__name__}: {exc}", path=path, driver=name)
    else:
        log.exception("storage driver %s failed on %s", name, path)
        err = StorageError(f"{type(exc).__name__}: {exc}", path=path, driver=name)
    err.__cause__ = exc
    return err


class _CheckedWriter(FileWriter):
    def __init__(self, name: str, path: str, inner: FileWriter) -> None:
        self._name, self._path, self._inner = name, path, inner

    def write(self, data: bytes) -> int:
        return _normalized(self._name, lambda: self._inner.write(data), self._path)

    @property
    def size(self) -> int:
        return self._inner.size

    def commit(self) -> None:
        _normalized(self._name, self._inner.commit, self._path)

    def cancel(self) -> None:
        _normalized(self._name, self._inner.cancel, self._path)

    def close(self) -> None:
        _normalized(self._name, self._inner.close, self._path)

    def adopt(self, file: BinaryIO) -> bool:
        return bool(_normalized(self._name, lambda: self._inner.adopt(file), self._path))


class CheckedDriver(StorageDriver):
    """Wraps ``inner``: validates every path and normalizes every error."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name or type(inner).__name__
        self.capabilities = inner.capabilities

    def _call(self, path: str, fn: Callable[[], T]) -> T:
        return _normalized(self.name, fn, path)

    # get_content and stat run on every manifest pull (tag link, revision link, manifest):
    # without _call's closure and extra frames.
    def get_content(self, path: str) -> bytes:
        validate_path(path)
        try:
            return self.inner.get_content(path)
        except Exception as exc:
            raise _error(self.name, path, exc)  # noqa: B904 - _error chains what it wraps

    def put_content(self, path: str, content: bytes) -> None:
        validate_path(path)
        self._call(path, lambda: self.inner.put_content(path, bytes(content)))

    def put_scratch(self, path: str, content: bytes) -> None:
        validate_path(path)
        self._call(path, lambda: self.inner.put_scratch(path, bytes(content)))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        validate_path(path)
        if offset < 0:
            raise InvalidOffsetError(f"negative offset {offset}", path=path, driver=self.name)
        return self._call(path, lambda: self.inner.reader(path, offset))

    def writer(self, path: str, append: bool = False) -> FileWriter:
        validate_path(path)
        inner = self._call(path, lambda: self.inner.writer(path, append))
        return _CheckedWriter(self.name, path, inner)

    def stat(self, path: str) -> FileInfo:
        validate_path(path, root_ok=True)
        try:
            return self.inner.stat(path)
        except Exception as exc:
            raise _error(self.name, path, exc)  # noqa: B904 - _error chains what it wraps

    def list(self, path: str) -> list[str]:
        validate_path(path, root_ok=True)
        return self._call(path, lambda: self.inner.list(path))

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        validate_path(path, root_ok=True)
        if after is not None:
            # A bound, not a path, but drivers put it in requests (S3's StartAfter): only a component.
            if not isinstance(after, str) or "/" in after:
                raise InvalidPathError(f"invalid name to list after: {after!r}", path=path)
            validate_path("/" + after)
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"list_page limit must be a positive integer, not {limit!r}")
        names, more = self._call(path, lambda: self.inner.list_page(path, after, limit))
        return list(names), bool(more)

    def move(self, source: str, dest: str) -> None:
        validate_path(source)
        validate_path(dest)
        self._call(source, lambda: self.inner.move(source, dest))

    def move_scratch(self, source: str, dest: str) -> None:
        validate_path(source)
        validate_path(dest)
        self._call(source, lambda: self.inner.move_scratch(source, dest))

    def spool_directory(self) -> str | None:
        return self._call("/", self.inner.spool_directory)

    def delete(self, path: str) -> None:
        validate_path(path)
        self._call(path, lambda: self.inner.delete(path))

    def redirect_url(self, method: str, path: str) -> str | None:
        validate_path(path)
        return self._call(path, lambda: self.inner.redirect_url(method, path))

    def walk(self, path: str) -> Iterator[FileInfo]:
        validate_path(path, root_ok=True)
        it = self._call(path, lambda: iter(self.inner.walk(path)))
        done = object()
        while True:
            item = self._call(path, lambda: next(it, done))
            if item is done:
                return
            yield item

    def close(self) -> None:
        self._call("/", self.inner.close)


#: Reports one driver call: ``(driver name, operation, seconds, error or None)``.
CallObserver = Callable[[str, str, float, "BaseException | None"], None]

#: The driver methods :class:`ObservedDriver` times (``walk`` is lazy: there is no one call to time);
#: a writer's methods are reported as ``writer.write``, ``writer.commit``...
OBSERVED_OPERATIONS = (
    "get_content", "put_content", "put_scratch", "reader", "writer", "stat", "list", "list_page", "move",
    "move_scratch", "delete", "redirect_url", "close",
)


def _timed(operation: str, plain: Callable[..., T], driver_name: Callable[[object], str]) -> Callable[..., T]:
    def method(self: object, *args: object, **kwargs: object) -> T:
        on_call = self._on_call  # type: ignore[attr-defined]
        started = time.perf_counter()
        try:
            result = plain(self, *args, **kwargs)
        except Exception as exc:
            on_call(driver_name(self), operation, time.perf_counter() - started, exc)
            raise
        on_call(driver_name(self), operation, time.perf_counter() - started, None)
        return result

    method.__name__ = method.__qualname__ = plain.__name__
    method.__doc__ = plain.__doc__
    return method


class _ObservedWriter(_CheckedWriter):
    """A :class:`_CheckedWriter` reporting its calls (``writer.commit`` is the one an object
    store's metrics want: it completes the multipart upload). It adds no state but ``_on_call``."""

    _on_call: CallObserver


class ObservedDriver(CheckedDriver):
    """A :class:`CheckedDriver` that reports every call's duration and error to ``on_call``."""

    def __init__(self, inner: StorageDriver, on_call: CallObserver) -> None:
        super().__init__(inner)
        self._on_call = on_call

    def writer(self, path: str, append: bool = False) -> FileWriter:
        writer = CheckedDriver.writer(self, path, append)
        if type(writer) is _CheckedWriter:
            # The same object, timed: the subclass adds no state, so switching the class is safe.
            writer.__class__ = _ObservedWriter
            writer._on_call = self._on_call  # type: ignore[attr-defined]
        return writer


# Generated rather than written out: whatever methods the contract has (it is still growing), timed.
for _operation in OBSERVED_OPERATIONS:
    _plain = vars(ObservedDriver).get(_operation) or getattr(CheckedDriver, _operation, None)
    if _plain is not None:
        setattr(ObservedDriver, _operation, _timed(_operation, _plain, lambda d: d.name))
for _name, _value in list(vars(_CheckedWriter).items()):
    if not _name.startswith("_") and callable(_value):
        setattr(_ObservedWriter, _name, _timed(f"writer.{_name}", _value, lambda w: w._name))


def checked(driver: StorageDriver, on_call: CallObserver | None = None) -> CheckedDriver:
    """Wrap ``driver`` unless it is already wrapped; with ``on_call``, in an :class:`ObservedDriver`
    (re-wrapping the inner driver of a plain :class:`CheckedDriver`)."""
    if on_call is None:
        return driver if isinstance(driver, CheckedDriver) else CheckedDriver(driver)
    return ObservedDriver(driver.inner if isinstance(driver, CheckedDriver) else driver, on_call)


__all__ = ["OBSERVED_OPERATIONS", "CallObserver", "CheckedDriver", "ObservedDriver", "checked", "validate_path"]
