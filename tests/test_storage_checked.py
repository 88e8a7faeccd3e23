"""The checked wrapper: path validation, and error normalization proven with a fake for faults.

No real backend fails on demand with an arbitrary exception, so these tests use ``FaultyDriver``, a
deliberately broken driver (the one fake in the storage tests, named as such).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from registry.storage.checked import CheckedDriver, checked, validate_path
from registry.storage.driver import (
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    StorageThrottledError,
    StorageUnavailableError,
)
from registry.storage.inmemory import InMemoryDriver


class FaultyWriter(FileWriter):
    """A writer whose every method raises ``fault`` (when set)."""

    def __init__(self, fault: BaseException | None) -> None:
        self.fault = fault

    def _act(self) -> None:
        if self.fault is not None:
            raise self.fault

    def write(self, data: bytes) -> int:
        self._act()
        return len(data)

    @property
    def size(self) -> int:
        return 0

    def commit(self) -> None:
        self._act()

    def cancel(self) -> None:
        self._act()

    def close(self) -> None:
        self._act()


class FaultyDriver(StorageDriver):
    """A fake for faults: records every call, then raises ``fault`` (when set) or does nothing."""

    name = "faulty"

    def __init__(self, fault: BaseException | None = None, writer_fault: BaseException | None = None) -> None:
        self.fault, self.writer_fault = fault, writer_fault
        self.calls: list[tuple] = []
        self.walk_fails_after: int | None = None

    def _act(self, *call: object) -> None:
        self.calls.append(call)
        if self.fault is not None:
            raise self.fault

    def get_content(self, path: str) -> bytes:
        self._act("get_content", path)
        return b""

    def put_content(self, path: str, content: bytes) -> None:
        self._act("put_content", path, content)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        self._act("reader", path, offset)
        return io.BytesIO()

    def writer(self, path: str, append: bool = False) -> FileWriter:
        self._act("writer", path, append)
        return FaultyWriter(self.writer_fault)

    def stat(self, path: str) -> FileInfo:
        self._act("stat", path)
        return FileInfo(path, 0, True)

    def list(self, path: str) -> list[str]:
        self._act("list", path)
        return []

    def move(self, source: str, dest: str) -> None:
        self._act("move", source, dest)

    def delete(self, path: str) -> None:
        self._act("delete", path)

    def redirect_url(self, method: str, path: str) -> str | None:
        self._act("redirect_url", method, path)
        return None

    def walk(self, path: str) -> Iterator[FileInfo]:
        if self.walk_fails_after is None:
            self._act("walk", path)
        for n in range(3):
            if n == self.walk_fails_after:
                raise OSError("connection reset mid-listing")
            yield FileInfo(f"{path}/{n}", n, False)

    def close(self) -> None:
        self._act("close")


OPERATIONS = {
    "get_content": lambda s: s.get_content("/a/b"),
    "put_content": lambda s: s.put_content("/a/b", b"x"),
    "reader": lambda s: s.reader("/a/b", 0),
    "writer": lambda s: s.writer("/a/b"),
    "stat": lambda s: s.stat("/a/b"),
    "list": lambda s: s.list("/a/b"),
    "move": lambda s: s.move("/a/b", "/c/d"),
    "delete": lambda s: s.delete("/a/b"),
    "redirect_url": lambda s: s.redirect_url("GET", "/a/b"),
    "walk": lambda s: list(s.walk("/a/b")),
    "close": lambda s: s.close(),
}


# -- validate_path ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/a", "/a/b", "/-", "/_", "/...", "/.a", "/a..b", "/A-Z.0_9/x"])
def test_valid_paths(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "/", "a", "a/b", "/a/", "//a", "/a//b", "/.", "/..", "/a/./b", "/a/../b", "/é", "/a b", "/a\x00",
     "/a\\b", "/a\n", "\n/a", "/a:b", None, b"/a"],
)  # fmt: skip
def test_invalid_paths(path: object) -> None:
    with pytest.raises(InvalidPathError):
        validate_path(path)  # type: ignore[arg-type]


def test_root_only_where_allowed() -> None:
    assert validate_path("/", root_ok=True) == "/"
    with pytest.raises(InvalidPathError):
        validate_path("/")


# -- the wrapper ------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize(
    "fault", [OSError("disk on fire"), KeyError("x"), RuntimeError("SDK bug"), ValueError("bad")], ids=type
)
def test_unexpected_errors_become_storage_errors(
    operation: str, fault: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver bug: a plain StorageError (the client gets 500, not "retry"), logged with its traceback."""
    storage = checked(FaultyDriver(fault))
    with caplog.at_level(logging.ERROR, logger="registry.storage.checked"), pytest.raises(StorageError) as info:
        OPERATIONS[operation](storage)
    error = info.value
    assert type(error) is StorageError
    assert error.driver == "faulty"
    assert error.__cause__ is fault
    assert type(fault).__name__ in str(error)
    assert error.path == ("/" if operation == "close" else "/a/b")
    assert "storage driver faulty failed" in caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize(
    "fault", [ConnectionResetError("reset by peer"), ConnectionRefusedError("refused"), TimeoutError("read timed out"),
              BrokenPipeError("broken pipe")], ids=type
)
def test_connection_errors_and_timeouts_become_unavailable(
    operation: str, fault: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection error or timeout a driver let through is still the backend's transient failure
    (503 and retry), logged without a traceback: it is not a bug."""
    storage = checked(FaultyDriver(fault))
    with caplog.at_level(logging.WARNING, logger="registry.storage.checked"), \
            pytest.raises(StorageUnavailableError) as info:
        OPERATIONS[operation](storage)
    error = info.value
    assert type(error) is StorageUnavailableError
    assert (error.driver, error.__cause__) == ("faulty", fault)
    assert error.path == ("/" if operation == "close" else "/a/b")
    assert "storage driver faulty failed" in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize("cls", [StorageUnavailableError, StorageThrottledError])
def test_transient_errors_a_driver_raises_keep_their_type_and_hint(cls: type[StorageUnavailableError]) -> None:
    storage = checked(FaultyDriver(cls("SlowDown", retry_after=7.5)))
    with pytest.raises(cls) as info:
        storage.put_content("/a/b", b"x")
    assert (type(info.value), info.value.retry_after, info.value.driver) == (cls, 7.5, "faulty")
    assert issubclass(StorageThrottledError, StorageUnavailableError)  # code that retries one retries both


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_storage_errors_keep_their_type_and_gain_context(operation: str, caplog: pytest.LogCaptureFixture) -> None:
    storage = checked(FaultyDriver(PathNotFoundError()))
    with pytest.raises(PathNotFoundError) as info:
        OPERATIONS[operation](storage)
    assert info.value.driver == "faulty"
    assert info.value.path == ("/" if operation == "close" else "/a/b")
    assert caplog.text == ""  # an expected outcome, not a bug: nothing logged


def test_storage_errors_keep_what_the_driver_said() -> None:
    storage = checked(FaultyDriver(PathNotFoundError("gone", path="/inner/a/b", driver="s3")))
    with pytest.raises(PathNotFoundError) as info:
        storage.get_content("/a/b")
    assert (str(info.value), info.value.path, info.value.driver) == ("gone", "/inner/a/b", "s3")


def test_interrupts_are_not_swallowed() -> None:
    storage = checked(FaultyDriver(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        storage.stat("/a")


@pytest.mark.parametrize("method", ["write", "commit", "cancel", "close"])
def test_writer_errors_are_normalized(method: str) -> None:
    storage = checked(FaultyDriver(writer_fault=OSError("ENOSPC")))
    writer = storage.writer("/upload")
    with pytest.raises(StorageError) as info:
        writer.write(b"x") if method == "write" else getattr(writer, method)()
    assert (info.value.driver, info.value.path) == ("faulty", "/upload")
    assert isinstance(info.value.__cause__, OSError)


def test_walk_failing_midway_yields_what_it_had_then_a_storage_error() -> None:
    """What the walk yielded stays yielded; then a plain StorageError (an OSError is no connection error:
    the exception's class decides, not its text)."""
    driver = FaultyDriver()
    driver.walk_fails_after = 2
    seen = []
    with pytest.raises(StorageError) as info:
        for item in checked(driver).walk("/dir"):
            seen.append(item.path)
    assert seen == ["/dir/0", "/dir/1"]
    assert info.value.driver == "faulty" and type(info.value) is StorageError


def test_invalid_paths_and_offsets_never_reach_the_driver() -> None:
    driver = FaultyDriver()
    storage = checked(driver)
    for operation in (
        lambda: storage.get_content("relative"),
        lambda: storage.put_content("/a/", b""),
        lambda: storage.move("/a", "/b/../c"),
        lambda: storage.move("/a/../b", "/c"),
        lambda: list(storage.walk("//")),
    ):
        with pytest.raises(InvalidPathError) as info:
            operation()
        assert info.value.driver == ""  # refused by the wrapper, before any driver
    with pytest.raises(InvalidOffsetError) as offset_error:
        storage.reader("/a", -1)
    assert offset_error.value.driver == "faulty"
    assert driver.calls == []


def test_put_content_hands_the_driver_bytes() -> None:
    driver = FaultyDriver()
    storage = checked(driver)
    storage.put_content("/a", bytearray(b"ab"))
    storage.put_content("/b", memoryview(b"cd"))
    assert [(c[2], type(c[2])) for c in driver.calls] == [(b"ab", bytes), (b"cd", bytes)]


def test_checked_wraps_once_and_names_the_driver() -> None:
    storage = checked(InMemoryDriver())
    assert checked(storage) is storage
    assert storage.name == "inmemory"

    class Nameless(FaultyDriver):
        name = ""

    assert CheckedDriver(Nameless()).name == "Nameless"
