"""The storage driver conformance suite: the contract of :mod:`registry.storage.driver`, as tests.

Like Distribution's ``testsuites`` package, one suite every driver adopts in a few lines. Subclass
:class:`DriverSuite` in a test module and provide a ``driver`` fixture (any scope)::

    import pytest
    from registry.testing.conformance import DriverSuite
    from registry_mydriver import MyDriver

    class TestMyDriver(DriverSuite):
        @pytest.fixture
        def driver(self, tmp_path):
            return MyDriver(root=tmp_path)

The suite talks to the driver through :func:`registry.storage.checked.checked`, as the registry does.
Every test works under its own random prefix (``/conformance-<hex>``) and never touches anything
else, so the suite can run against a bucket that holds other data; after each test the prefix is
deleted and the suite fails if anything is still there.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import pytest

from registry.storage.checked import CheckedDriver, checked
from registry.storage.driver import (
    Capability,
    ConflictError,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
)

KiB = 1024
MiB = 1024 * KiB

# Sizes of the round trips: empty, one byte, a page, a typical layer chunk, and one big enough that
# a driver holding whole files in memory or using multipart uploads shows it.
SMALL_SIZES = [0, 1, 4 * KiB, 1 * MiB]
STREAM_SIZES = [*SMALL_SIZES, 50 * MiB]
THREADS = 8


def _ids(sizes: Iterable[int]) -> list[str]:
    return [f"{s // MiB}MiB" if s >= MiB else f"{s // KiB}KiB" if s >= KiB else f"{s}B" for s in sizes]


def _chunks(total: int, chunk: int = MiB, seed: bytes | None = None) -> Iterator[bytes]:
    """``total`` bytes in ``chunk``-sized pieces, each piece distinct (its index is stamped in), so a
    driver that writes a piece at the wrong offset or twice cannot produce the right digest. Only one
    piece is ever in memory."""
    base = seed if seed is not None else os.urandom(chunk)
    for index, start in enumerate(range(0, total, chunk)):
        piece = index.to_bytes(8, "big") + base[8:chunk]
        yield piece[: min(chunk, total - start)]


def _read_all(stream: BinaryIO, size: int = 64 * KiB + 1) -> bytes:
    """Read with ``read(n)`` only (the contract), tolerating short reads, until ``b""``."""
    parts = []
    try:
        while True:
            part = stream.read(size)
            if not part:
                return b"".join(parts)
            parts.append(part)
    finally:
        stream.close()


def _digest_stream(stream: BinaryIO, size: int = 64 * KiB + 1) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    try:
        while part := stream.read(size):
            digest.update(part)
            total += len(part)
    finally:
        stream.close()
    return digest.hexdigest(), total


def _write(
    storage: StorageDriver, path: str, chunks: Iterable[bytes], *, append: bool = False, commit: bool = True
) -> int:
    """Write ``chunks`` through one writer; returns the writer's final size."""
    writer = storage.writer(path, append=append)
    try:
        for chunk in chunks:
            assert writer.write(chunk) == len(chunk)
        if commit:
            writer.commit()
        return writer.size
    finally:
        writer.close()


def _absent(storage: StorageDriver, path: str) -> bool:
    try:
        storage.stat(path)
    except PathNotFoundError:
        return True
    return False


def _run_in_threads(functions: list[Callable[[], Any]]) -> list[Any]:
    """Run the callables at once (a barrier lines them up) and re-raise the first failure."""
    barrier = threading.Barrier(len(functions))

    def start(fn: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return fn()

    with ThreadPoolExecutor(len(functions)) as pool:
        futures = [pool.submit(start, fn) for fn in functions]
        return [f.result(timeout=120) for f in futures]


class _Recorder(StorageDriver):
    """Passes every call through to ``inner`` and records it: proof that a call never reached it."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner, self.name, self.calls = inner, inner.name, []

    def _note(self, *call: Any) -> None:
        self.calls.append(call)

    def get_content(self, path: str) -> bytes:
        self._note("get_content", path)
        return self.inner.get_content(path)

    def put_content(self, path: str, content: bytes) -> None:
        self._note("put_content", path)
        self.inner.put_content(path, content)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        self._note("reader", path, offset)
        return self.inner.reader(path, offset)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        self._note("writer", path, append)
        return self.inner.writer(path, append)

    def stat(self, path: str) -> FileInfo:
        self._note("stat", path)
        return self.inner.stat(path)

    def list(self, path: str) -> list[str]:
        self._note("list", path)
        return self.inner.list(path)

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        self._note("list_page", path, after, limit)
        return self.inner.list_page(path, after, limit)

    def move(self, source: str, dest: str) -> None:
        self._note("move", source, dest)
        self.inner.move(source, dest)

    def delete(self, path: str) -> None:
        self._note("delete", path)
        self.inner.delete(path)

    def redirect_url(self, method: str, path: str) -> str | None:
        self._note("redirect_url", method, path)
        return self.inner.redirect_url(method, path)

    def walk(self, path: str) -> Iterator[FileInfo]:
        self._note("walk", path)
        return self.inner.walk(path)


class DriverSuite:
    """The behaviours every storage driver must have. Subclass it and provide a ``driver`` fixture.

    Fixtures it defines (override them in the subclass only with care): ``storage``, the driver
    wrapped as the registry wraps it, and ``prefix``, the test's own directory.
    """

    @pytest.fixture
    def storage(self, driver: StorageDriver) -> CheckedDriver:
        return checked(driver)

    @pytest.fixture
    def prefix(self, storage: CheckedDriver) -> Iterator[str]:
        """A fresh directory for one test; deleted afterwards, and the test fails if that leaves
        anything behind (a driver whose recursive delete misses entries would pollute a shared
        bucket run after run)."""
        prefix = f"/conformance-{uuid.uuid4().hex}"
        yield prefix
        with contextlib.suppress(PathNotFoundError):
            storage.delete(prefix)
        assert _absent(storage, prefix), f"{prefix} still exists after deleting it"
        try:
            leftovers = storage.list(prefix)
        except PathNotFoundError:
            leftovers = []
        assert leftovers == [], f"left behind under {prefix}: {leftovers}"

    # -- get_content / put_content -------------------------------------------------------------

    @pytest.mark.parametrize("size", SMALL_SIZES, ids=_ids(SMALL_SIZES))
    def test_put_get_round_trip(self, storage: CheckedDriver, prefix: str, size: int) -> None:
        content = os.urandom(size)
        storage.put_content(f"{prefix}/file", content)
        assert storage.get_content(f"{prefix}/file") == content
        assert storage.stat(f"{prefix}/file").size == size

    def test_any_byte_values_round_trip(self, storage: CheckedDriver, prefix: str) -> None:
        content = bytes(range(256)) + b"\x80\x80\xc3\x28\r\n\x00"  # not UTF-8, NULs, line ends
        storage.put_content(f"{prefix}/binary", content)
        assert storage.get_content(f"{prefix}/binary") == content
        assert _read_all(storage.reader(f"{prefix}/binary")) == content

    def test_put_overwrites_and_truncates(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/file"
        storage.put_content(path, os.urandom(MiB))
        storage.put_content(path, b"short")
        assert storage.get_content(path) == b"short"
        assert storage.stat(path).size == 5

    def test_put_creates_parent_directories(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/a/b/c/file", b"x")
        assert storage.stat(f"{prefix}/a").is_dir
        assert storage.stat(f"{prefix}/a/b/c").is_dir
        assert storage.list(f"{prefix}/a/b") == [f"{prefix}/a/b/c"]

    def test_get_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            storage.get_content(f"{prefix}/missing")
        storage.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFoundError):
            storage.get_content(f"{prefix}/file-missing")  # a sibling sharing a string prefix

    def test_a_directory_is_not_content(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/dir/file", b"x")
        with pytest.raises(PathNotFoundError):
            storage.get_content(f"{prefix}/dir")
        with pytest.raises(PathNotFoundError):
            storage.reader(f"{prefix}/dir")

    # -- streaming: writer and reader ----------------------------------------------------------

    @pytest.mark.parametrize("size", STREAM_SIZES, ids=_ids(STREAM_SIZES))
    def test_stream_round_trip(self, storage: CheckedDriver, prefix: str, size: int) -> None:
        """Write through a writer in 1 MiB pieces, read back in odd-sized reads; compare digests."""
        path = f"{prefix}/blob"
        digest = hashlib.sha256()

        def pieces() -> Iterator[bytes]:
            for piece in _chunks(size):
                digest.update(piece)
                yield piece

        assert _write(storage, path, pieces()) == size
        assert storage.stat(path).size == size
        assert _digest_stream(storage.reader(path)) == (digest.hexdigest(), size)

    def test_big_file_read_at_offsets(self, storage: CheckedDriver, prefix: str) -> None:
        """Offsets across piece boundaries of a multi-piece file read exactly the right bytes."""
        path, piece, size = f"{prefix}/blob", 256 * KiB, 3 * MiB + 7
        seed = os.urandom(piece)
        _write(storage, path, _chunks(size, piece, seed))
        content = b"".join(_chunks(size, piece, seed))
        for offset in (piece - 5, 2 * piece, 5 * piece + 3, size - 1):
            stream = storage.reader(path, offset)
            try:
                assert stream.read(10) == content[offset : offset + 10]
            finally:
                stream.close()
        digest, n = _digest_stream(storage.reader(path, MiB + 1))
        assert (digest, n) == (hashlib.sha256(content[MiB + 1 :]).hexdigest(), size - MiB - 1)

    @pytest.mark.parametrize("where", ["start", "second", "middle", "last", "end"])
    def test_reader_offsets(self, storage: CheckedDriver, prefix: str, where: str) -> None:
        content = os.urandom(10 * KiB + 3)
        offset = {"start": 0, "second": 1, "middle": 5 * KiB, "last": len(content) - 1, "end": len(content)}
        storage.put_content(f"{prefix}/file", content)
        data = _read_all(storage.reader(f"{prefix}/file", offset[where]))
        assert data == content[offset[where] :]

    @pytest.mark.parametrize("offset", [-1, 11, 10**12])
    def test_reader_offset_outside_file_raises(self, storage: CheckedDriver, prefix: str, offset: int) -> None:
        storage.put_content(f"{prefix}/file", b"0123456789")
        with pytest.raises(InvalidOffsetError):
            storage.reader(f"{prefix}/file", offset)

    def test_reader_is_a_binary_file_object(self, storage: CheckedDriver, prefix: str) -> None:
        """The registry streams readers with ``with driver.reader(...) as f: f.read(n)``."""
        storage.put_content(f"{prefix}/file", b"0123456789")
        with storage.reader(f"{prefix}/file", 2) as stream:
            assert stream.read(3) == b"234"
            assert stream.read(100) == b"56789"
            assert stream.read(100) == b""

    def test_reader_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        for offset in (0, 64):
            with pytest.raises(PathNotFoundError):
                storage.reader(f"{prefix}/missing", offset)

    def test_writer_writes_in_pieces(self, storage: CheckedDriver, prefix: str) -> None:
        pieces = [b"", b"a", os.urandom(4 * KiB), b"", os.urandom(64 * KiB + 1), os.urandom(3)]
        writer = storage.writer(f"{prefix}/file")
        written = 0
        for piece in pieces:
            assert writer.write(piece) == len(piece)
            written += len(piece)
            assert writer.size == written
        writer.commit()
        writer.close()
        assert storage.get_content(f"{prefix}/file") == b"".join(pieces)

    def test_fresh_writer_is_invisible_until_commit(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/file"
        writer = storage.writer(path)
        writer.write(b"content")
        assert _absent(storage, path)
        with pytest.raises(PathNotFoundError):
            storage.get_content(path)
        writer.commit()
        writer.close()
        assert storage.get_content(path) == b"content"

    def test_fresh_writer_replaces_at_commit(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/file"
        old = os.urandom(100 * KiB)
        storage.put_content(path, old)
        writer = storage.writer(path)
        assert writer.size == 0  # a fresh writer starts empty whatever is there
        writer.write(b"new and shorter")
        assert storage.get_content(path) == old
        writer.commit()
        writer.close()
        assert storage.get_content(path) == b"new and shorter"
        assert storage.stat(path).size == len(b"new and shorter")

    @pytest.mark.parametrize("how", ["cancel", "close"])
    def test_fresh_writer_without_commit_leaves_path_absent(
        self, storage: CheckedDriver, prefix: str, how: str
    ) -> None:
        path = f"{prefix}/file"
        writer = storage.writer(path)
        writer.write(os.urandom(10 * KiB))
        getattr(writer, how)()
        writer.close()
        assert _absent(storage, path)
        with pytest.raises(PathNotFoundError):
            storage.writer(path, append=True)  # nothing to resume either

    @pytest.mark.parametrize("how", ["cancel", "close"])
    def test_fresh_writer_without_commit_keeps_old_content(self, storage: CheckedDriver, prefix: str, how: str) -> None:
        path = f"{prefix}/file"
        storage.put_content(path, b"old content")
        writer = storage.writer(path)
        writer.write(b"new")
        getattr(writer, how)()
        assert storage.get_content(path) == b"old content"

    def test_appending_writer_continues_committed_file(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/upload"
        first, second = os.urandom(3 * KiB), os.urandom(5 * KiB + 1)
        assert _write(storage, path, [first]) == len(first)
        writer = storage.writer(path, append=True)
        assert writer.size == len(first)
        writer.write(second)
        assert writer.size == len(first) + len(second)
        writer.commit()
        writer.close()
        assert storage.get_content(path) == first + second
        assert storage.stat(path).size == len(first) + len(second)

    def test_appending_writer_continues_put_content(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/file", b"abc")
        assert _write(storage, f"{prefix}/file", [b"def"], append=True) == 6
        assert storage.get_content(f"{prefix}/file") == b"abcdef"

    def test_appending_writer_needs_existing_file(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            storage.writer(f"{prefix}/missing", append=True)
        assert _absent(storage, f"{prefix}/missing")

    def test_resumed_writers_across_commits(self, storage: CheckedDriver, prefix: str) -> None:
        """An upload in many PATCHes: each resumes where the last commit left the size."""
        path = f"{prefix}/upload"
        pieces = [os.urandom(n) for n in (0, 1, 4 * KiB, 33, 64 * KiB, 7)]
        assert _write(storage, path, [pieces[0]]) == 0
        expected = b""
        for piece in pieces[1:]:
            writer = storage.writer(path, append=True)
            assert writer.size == len(expected)
            writer.write(piece)
            writer.commit()
            writer.close()
            expected += piece
            assert storage.stat(path).size == len(expected)
        assert storage.get_content(path) == expected

    def test_resumed_writer_after_close_without_commit(self, storage: CheckedDriver, prefix: str) -> None:
        """Bytes an appending writer wrote survive its ``close`` without a commit: the next appending
        writer starts after them (an upload's chunks are never committed one by one)."""
        path = f"{prefix}/upload"
        committed, uncommitted, rest = b"committed|", b"kept|", b"rest"
        _write(storage, path, [committed])
        _write(storage, path, [uncommitted], append=True, commit=False)
        writer = storage.writer(path, append=True)
        assert writer.size == len(committed) + len(uncommitted)
        writer.write(rest)
        writer.commit()
        writer.close()
        assert storage.get_content(path) == committed + uncommitted + rest

    def test_upload_in_chunks_committed_once(self, storage: CheckedDriver, prefix: str) -> None:
        """What the registry does with every chunked upload: an empty file, one appending writer per
        chunk closed without commit (chunks of several sizes, some over an object store's minimum
        part), one commit, one move into place."""
        path, dest = f"{prefix}/_uploads/u/data", f"{prefix}/blobs/b/data"
        storage.put_content(path, b"")
        chunks = [os.urandom(n) for n in (1, 5 * MiB + 3, 64 * KiB, 0, 6 * MiB, 7)]
        expected = b""
        for chunk in chunks:
            writer = storage.writer(path, append=True)
            assert writer.size == len(expected)
            writer.write(chunk)
            writer.close()
            expected += chunk
        writer = storage.writer(path, append=True)
        assert writer.size == len(expected)
        writer.commit()
        writer.close()
        assert storage.stat(path).size == len(expected)
        storage.move(path, dest)
        assert _absent(storage, path)
        assert hashlib.sha256(_read_all(storage.reader(dest))).digest() == hashlib.sha256(expected).digest()
        with pytest.raises(PathNotFoundError):
            storage.writer(path, append=True)

    def test_closed_appends_are_visible_as_declared(self, storage: CheckedDriver, prefix: str) -> None:
        """With READ_UNCOMMITTED, readers see a closed writer's appends; without it, at least the
        committed content (the registry then asks a writer for an upload's size)."""
        path = f"{prefix}/upload"
        storage.put_content(path, b"base|")
        _write(storage, path, [b"appended"], append=True, commit=False)
        size = storage.stat(path).size
        if Capability.READ_UNCOMMITTED in storage.capabilities:
            assert size == len(b"base|appended")
            assert storage.get_content(path) == b"base|appended"
        else:
            assert size in (len(b"base|"), len(b"base|appended"))

    def test_capabilities_are_declared(self, storage: CheckedDriver, prefix: str) -> None:
        assert isinstance(storage.capabilities, Capability)
        if Capability.RENAME in storage.capabilities:
            assert Capability.SERVER_COPY not in storage.capabilities, "a rename copies nothing"

    def test_appending_writer_cancel_deletes_file(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/upload"
        _write(storage, path, [b"partial upload"])
        writer = storage.writer(path, append=True)
        writer.write(b" and more")
        writer.cancel()
        writer.close()
        assert _absent(storage, path)

    @pytest.mark.parametrize("append", [False, True], ids=["fresh", "append"])
    def test_cancel_after_commit_keeps_content(self, storage: CheckedDriver, prefix: str, append: bool) -> None:
        path = f"{prefix}/file"
        if append:
            storage.put_content(path, b"start|")
        writer = storage.writer(path, append=append)
        writer.write(b"kept")
        writer.commit()
        writer.cancel()  # the usual error path after a later step failed
        writer.close()
        assert storage.get_content(path) == (b"start|kept" if append else b"kept")

    @pytest.mark.parametrize("ending", ["commit", "cancel", "close"])
    def test_writer_is_spent_after_it_ends(self, storage: CheckedDriver, prefix: str, ending: str) -> None:
        path = f"{prefix}/file"
        writer = storage.writer(path)
        writer.write(b"x")
        getattr(writer, ending)()
        with pytest.raises(StorageError):
            writer.write(b"more")
        with pytest.raises(StorageError):
            writer.commit()
        writer.close()
        writer.close()  # idempotent
        if ending == "commit":
            assert storage.get_content(path) == b"x"
        else:
            assert _absent(storage, path)

    def test_writer_as_context_manager_does_not_commit(self, storage: CheckedDriver, prefix: str) -> None:
        with storage.writer(f"{prefix}/uncommitted") as writer:
            writer.write(b"x")
        with storage.writer(f"{prefix}/committed") as writer:
            writer.write(b"y")
            writer.commit()
        assert _absent(storage, f"{prefix}/uncommitted")
        assert storage.get_content(f"{prefix}/committed") == b"y"

    # -- stat ----------------------------------------------------------------------------------

    def test_stat_file(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/dir/file"
        storage.put_content(path, b"x" * 1234)
        info = storage.stat(path)
        assert (info.path, info.size, info.is_dir) == (path, 1234, False)
        assert isinstance(info.mod_time, datetime.datetime)
        assert info.mod_time.tzinfo is not None, "mod_time must be timezone-aware"
        now = datetime.datetime.now(datetime.UTC)
        assert abs(now - info.mod_time) < datetime.timedelta(hours=1), info.mod_time

    def test_stat_directory(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/dir/sub/file", b"x")
        for path in (prefix, f"{prefix}/dir", f"{prefix}/dir/sub"):
            info = storage.stat(path)
            assert info.path == path
            assert info.is_dir
            assert info.mod_time is None or isinstance(info.mod_time, datetime.datetime)

    def test_stat_root_is_a_directory(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/file", b"x")
        info = storage.stat("/")
        assert info.is_dir and info.path == "/"

    def test_stat_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            storage.stat(f"{prefix}/missing")
        storage.put_content(f"{prefix}/file", b"x")
        for path in (f"{prefix}/fil", f"{prefix}/file2", f"{prefix}/file/below"):
            with pytest.raises(PathNotFoundError):
                storage.stat(path)

    # -- list ----------------------------------------------------------------------------------

    def test_list_root(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/dir/file", b"x")
        children = storage.list("/")
        assert prefix in children
        assert all(c.startswith("/") and c.count("/") == 1 for c in children), children

    def test_list_gives_full_paths_of_direct_children(self, storage: CheckedDriver, prefix: str) -> None:
        for path in ("a/1", "a/2", "a/b/3", "a/c/d/4", "a/c/d/e/5", "z"):
            storage.put_content(f"{prefix}/{path}", b"x")
        assert sorted(storage.list(f"{prefix}/a")) == [f"{prefix}/a/{n}" for n in ("1", "2", "b", "c")]
        assert sorted(storage.list(prefix)) == [f"{prefix}/a", f"{prefix}/z"]
        assert storage.list(f"{prefix}/a/c") == [f"{prefix}/a/c/d"]

    def test_list_many_children(self, storage: CheckedDriver, prefix: str) -> None:
        names = sorted(f"{uuid.uuid4().hex[:12]}" for _ in range(60))
        for name in names:
            storage.put_content(f"{prefix}/many/{name}", b"x")
        assert sorted(storage.list(f"{prefix}/many")) == [f"{prefix}/many/{n}" for n in names]

    def test_list_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            storage.list(f"{prefix}/missing")
        storage.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFoundError):
            storage.list(f"{prefix}/file")  # a file has no children: it is not a directory

    def test_list_ignores_siblings_sharing_a_string_prefix(self, storage: CheckedDriver, prefix: str) -> None:
        for path in ("b/1", "bc/2", "b.txt", "b-c/3"):
            storage.put_content(f"{prefix}/{path}", b"x")
        assert storage.list(f"{prefix}/b") == [f"{prefix}/b/1"]

    # -- list_page -----------------------------------------------------------------------------

    def _page_tree(self, storage: CheckedDriver, prefix: str) -> list[str]:
        """Names whose key order (``a/`` for a directory) is not their name order, a file among
        directories, and a nested level; returns the children of ``prefix/d`` in name order."""
        for path in ("a/1", "a/b/c", "a-b/1", "a.b", "a0/1", "a_b/1", "b", "ab/1"):
            storage.put_content(f"{prefix}/d/{path}", b"x")
        return ["a", "a-b", "a.b", "a0", "a_b", "ab", "b"]

    def test_list_page_gives_names_in_lexical_order(self, storage: CheckedDriver, prefix: str) -> None:
        names = self._page_tree(storage, prefix)
        assert storage.list_page(f"{prefix}/d", None, 100) == (names, False)
        assert storage.list_page(f"{prefix}/d", None, len(names)) == (names, False)
        assert storage.list_page(f"{prefix}/d", None, len(names) - 1) == (names[:-1], True)
        assert storage.list_page(f"{prefix}/d/a", None, 10) == (["1", "b"], False)  # a nested level
        assert storage.list_page(f"{prefix}/d/a/b", None, 10) == (["c"], False)

    @pytest.mark.parametrize("limit", [1, 2, 3, 7])
    def test_list_page_pages_through_a_directory(self, storage: CheckedDriver, prefix: str, limit: int) -> None:
        names = self._page_tree(storage, prefix)
        seen: list[str] = []
        after = None
        for _ in range(len(names) + 1):
            page, more = storage.list_page(f"{prefix}/d", after, limit)
            assert len(page) <= limit and page == sorted(page), page
            seen += page
            if not more:
                break
            assert len(page) == limit, "a page short of the limit ends the directory"
            after = page[-1]
        assert seen == names

    @pytest.mark.parametrize(
        ("after", "expected"),
        [
            pytest.param("a", ["a-b", "a.b", "a0", "a_b", "ab", "b"], id="a-name-that-starts-others"),
            pytest.param("a-b", ["a.b", "a0", "a_b", "ab", "b"], id="in-the-middle"),
            pytest.param("a-", ["a-b", "a.b", "a0", "a_b", "ab", "b"], id="absent-between"),
            pytest.param("a-b-c", ["a.b", "a0", "a_b", "ab", "b"], id="absent-after-a-directory"),
            pytest.param("a_b", ["ab", "b"], id="after-a-directory"),
            pytest.param("0", ["a", "a-b", "a.b", "a0", "a_b", "ab", "b"], id="before-all"),
            pytest.param("b", [], id="the-last"),
            pytest.param("zz", [], id="past-the-end"),
        ],
    )
    def test_list_page_after(self, storage: CheckedDriver, prefix: str, after: str, expected: list[str]) -> None:
        self._page_tree(storage, prefix)
        assert storage.list_page(f"{prefix}/d", after, 100) == (expected, False)
        if expected:
            assert storage.list_page(f"{prefix}/d", after, 1) == (expected[:1], len(expected) > 1)

    def test_list_page_a_directory_among_names_it_starts(self, storage: CheckedDriver, prefix: str) -> None:
        """``app`` sorts before ``app-1``..., though an object store lists ``app/`` after them."""
        for name in ("app-1", "app-2", "app-3", "app-4", "app.x", "app/1", "apq/1", "ap-p/1"):
            storage.put_content(f"{prefix}/{name}", b"x")
        names = ["ap-p", "app", "app-1", "app-2", "app-3", "app-4", "app.x", "apq"]
        for limit in (1, 2, 3):
            assert storage.list_page(prefix, "ap-p", limit) == (names[1:1 + limit], True)
        assert storage.list_page(prefix, None, 2) == (names[:2], True)
        assert storage.list_page(prefix, "app", 2) == (names[2:4], True)
        assert storage.list_page(prefix, "app-4", 5) == (names[6:], False)

    def test_list_page_many_children(self, storage: CheckedDriver, prefix: str) -> None:
        names = sorted(f"{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(45))
        for name in names:
            storage.put_content(f"{prefix}/many/{name}", b"x")
        assert storage.list_page(f"{prefix}/many", None, 1000) == (names, False)
        assert storage.list_page(f"{prefix}/many", names[20], 10) == (names[21:31], True)
        assert storage.list_page(f"{prefix}/many", names[39], 10) == (names[40:], False)

    def test_list_page_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        for after in (None, "a", "zz"):
            with pytest.raises(PathNotFoundError):
                storage.list_page(f"{prefix}/missing", after, 10)
        storage.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFoundError):
            storage.list_page(f"{prefix}/file", None, 10)
        assert storage.list_page(prefix, "file", 10) == ([], False)  # exists, nothing after

    def test_list_page_root(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/x", b"x")
        name = prefix[1:]
        page, _ = storage.list_page("/", name[:-1], 5)
        assert name in page

    @pytest.mark.parametrize("after", ["a/b", "", "..", "caf\u00e9", "x y"])
    def test_list_page_refuses_an_after_that_is_no_name(self, driver: StorageDriver, prefix: str, after: str) -> None:
        recorder = _Recorder(driver)
        with pytest.raises(InvalidPathError):
            checked(recorder).list_page(prefix, after, 10)
        assert recorder.calls == []

    # -- walk ----------------------------------------------------------------------------------

    def test_walk_deep_tree(self, storage: CheckedDriver, prefix: str) -> None:
        """Every file and directory once, depth first, parents before children, siblings sorted."""
        files = {"a/1": 1, "a/b/2": 2, "a/b/c/d/3": 3, "a/b/c/d/4": 4, "a/b0/5": 5, "a/bc": 6, "e": 7, "f/g/h/8": 8}
        for rel, size in files.items():
            storage.put_content(f"{prefix}/{rel}", b"x" * size)
        dirs = {"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)}

        def preorder(parent: str) -> Iterator[str]:
            children = sorted(n for n in files.keys() | dirs if n.rpartition("/")[0] == parent)
            for child in children:
                yield child
                yield from preorder(child)

        expected = [f"{prefix}/{rel}" for rel in preorder("")]
        walked = list(storage.walk(prefix))
        assert [info.path for info in walked] == expected
        for info in walked:
            rel = info.path[len(prefix) + 1 :]
            assert info.is_dir == (rel in dirs), info
            if not info.is_dir:
                assert info.size == files[rel], info

    def test_walk_orders_by_name_not_by_key(self, storage: CheckedDriver, prefix: str) -> None:
        """Siblings by name: ``a`` before ``a-b`` and ``a.b``, although an object store's key order
        lists ``a/...`` after them (a flat listing must put it back)."""
        for rel in ("a-b/1", "a.b", "a/c-d/2", "a/c/3", "a0"):
            storage.put_content(f"{prefix}/{rel}", b"x")
        walked = [info.path[len(prefix) + 1 :] for info in storage.walk(prefix)]
        assert walked == ["a", "a/c", "a/c/3", "a/c-d", "a/c-d/2", "a-b", "a-b/1", "a.b", "a0"]

    def test_walk_from_root_finds_the_prefix(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/file", b"x")
        walked = storage.walk("/")
        for info in walked:  # stop early: a shared bucket may hold a lot
            if info.path == prefix:
                assert info.is_dir
                break
        else:
            pytest.fail(f"walk('/') never yielded {prefix}")

    def test_walk_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            list(storage.walk(f"{prefix}/missing"))

    # -- move ----------------------------------------------------------------------------------

    def test_move_to_new_path(self, storage: CheckedDriver, prefix: str) -> None:
        content = os.urandom(32 * KiB)
        storage.put_content(f"{prefix}/src", content)
        storage.move(f"{prefix}/src", f"{prefix}/dest")
        assert storage.get_content(f"{prefix}/dest") == content
        assert _absent(storage, f"{prefix}/src")

    def test_move_replaces_existing_file(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/src", b"new")
        storage.put_content(f"{prefix}/dest", b"old and longer")
        storage.move(f"{prefix}/src", f"{prefix}/dest")
        assert storage.get_content(f"{prefix}/dest") == b"new"
        assert storage.stat(f"{prefix}/dest").size == 3
        assert _absent(storage, f"{prefix}/src")

    def test_move_into_new_deep_directory(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/uploads/x/data", b"blob")
        dest = f"{prefix}/blobs/sha256/ab/abcdef/data"
        storage.move(f"{prefix}/uploads/x/data", dest)
        assert storage.get_content(dest) == b"blob"
        assert storage.list(f"{prefix}/blobs/sha256/ab") == [f"{prefix}/blobs/sha256/ab/abcdef"]
        assert _absent(storage, f"{prefix}/uploads/x/data")

    def test_move_missing_source_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/dest", b"untouched")
        with pytest.raises(PathNotFoundError):
            storage.move(f"{prefix}/missing", f"{prefix}/dest")
        with pytest.raises(PathNotFoundError):
            storage.move(f"{prefix}/missing", f"{prefix}/new/dest")
        assert storage.get_content(f"{prefix}/dest") == b"untouched"
        assert _absent(storage, f"{prefix}/new/dest")

    # -- delete --------------------------------------------------------------------------------

    def test_delete_file(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/dir/file", b"x")
        storage.put_content(f"{prefix}/dir/other", b"y")
        storage.delete(f"{prefix}/dir/file")
        assert _absent(storage, f"{prefix}/dir/file")
        assert storage.list(f"{prefix}/dir") == [f"{prefix}/dir/other"]

    def test_delete_directory_recursively(self, storage: CheckedDriver, prefix: str) -> None:
        paths = ["d/1", "d/a/2", "d/a/b/3", "d/a/b/c/4", "d/e/5"]
        for path in paths:
            storage.put_content(f"{prefix}/{path}", b"x")
        storage.put_content(f"{prefix}/keep", b"k")
        storage.delete(f"{prefix}/d")
        for path in [*paths, "d", "d/a", "d/a/b"]:
            assert _absent(storage, f"{prefix}/{path}"), path
        assert storage.list(prefix) == [f"{prefix}/keep"]

    def test_delete_missing_raises_not_found(self, storage: CheckedDriver, prefix: str) -> None:
        with pytest.raises(PathNotFoundError):
            storage.delete(f"{prefix}/missing")
        storage.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFoundError):
            storage.delete(f"{prefix}/fil")

    def test_delete_spares_siblings_sharing_a_string_prefix(self, storage: CheckedDriver, prefix: str) -> None:
        for path in ("a/b/1", "a/b/c/2", "a/bc/3", "a/b0", "a/b.txt", "a/b-c/4"):
            storage.put_content(f"{prefix}/{path}", path.encode())
        storage.delete(f"{prefix}/a/b")
        assert _absent(storage, f"{prefix}/a/b")
        for path in ("a/bc/3", "a/b0", "a/b.txt", "a/b-c/4"):
            assert storage.get_content(f"{prefix}/{path}") == path.encode()

    # -- paths ---------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "suffix",
        [
            pytest.param(None, id="empty"),
            pytest.param("relative", id="relative"),
            pytest.param("/", id="trailing-slash"),
            pytest.param("//x", id="double-slash"),
            pytest.param("/../x", id="dotdot"),
            pytest.param("/./x", id="dot"),
            pytest.param("/x/..", id="trailing-dotdot"),
            pytest.param("/caf\u00e9", id="unicode"),
            pytest.param("/x\x00y", id="nul"),
            pytest.param("/x y", id="space"),
            pytest.param("/x\\y", id="backslash"),
            pytest.param("/x\n", id="trailing-newline"),
            pytest.param("/x:y", id="colon"),
        ],
    )
    def test_invalid_paths_never_reach_the_driver(self, driver: StorageDriver, prefix: str, suffix: str | None) -> None:
        # Built on the test's prefix, so a broken check could only ever write there.
        bad = "" if suffix is None else "relative/x" if suffix == "relative" else prefix + suffix
        recorder = _Recorder(driver)
        storage = checked(recorder)
        good = f"{prefix}/good"
        operations: list[Callable[[], Any]] = [
            lambda: storage.put_content(bad, b"x"),
            lambda: storage.get_content(bad),
            lambda: storage.reader(bad),
            lambda: storage.writer(bad),
            lambda: storage.writer(bad, append=True),
            lambda: storage.stat(bad),
            lambda: storage.list(bad),
            lambda: storage.list_page(bad, None, 10),
            lambda: list(storage.walk(bad)),
            lambda: storage.move(bad, good),
            lambda: storage.move(good, bad),
            lambda: storage.delete(bad),
            lambda: storage.redirect_url("GET", bad),
        ]
        for operation in operations:
            with pytest.raises(InvalidPathError):
                operation()
        assert recorder.calls == []

    def test_root_is_not_a_file(self, driver: StorageDriver, prefix: str) -> None:
        recorder = _Recorder(driver)
        storage = checked(recorder)
        for operation in (
            lambda: storage.put_content("/", b"x"),
            lambda: storage.get_content("/"),
            lambda: storage.reader("/"),
            lambda: storage.writer("/"),
            lambda: storage.delete("/"),
            lambda: storage.move("/", f"{prefix}/x"),
        ):
            with pytest.raises(InvalidPathError):
                operation()
        assert recorder.calls == []

    def test_unusual_valid_paths(self, storage: CheckedDriver, prefix: str) -> None:
        names = ["-", "_", "...", ".abc", "..a", "a..", "a.a", "a--b", "a-.b", "_.abc", "0-9", "1.2.3-4_z", "Ab"]
        for index, name in enumerate(names):
            content = f"{index}:{name}".encode()
            storage.put_content(f"{prefix}/{name}", content)
            storage.put_content(f"{prefix}/d{index}/{name}/f", content)
            assert storage.get_content(f"{prefix}/{name}") == content
            assert storage.get_content(f"{prefix}/d{index}/{name}/f") == content
            assert storage.stat(f"{prefix}/d{index}/{name}").is_dir
        listed = set(storage.list(prefix))
        assert {f"{prefix}/{name}" for name in names} <= listed

    # -- concurrency ---------------------------------------------------------------------------

    def test_concurrent_writers_on_different_paths(self, storage: CheckedDriver, prefix: str) -> None:
        """Writers in threads, all creating the same new parent directories at the same moment."""
        contents = [os.urandom(96 * KiB + i) for i in range(THREADS)]

        def work(i: int) -> None:
            pieces = (contents[i][o : o + 8 * KiB] for o in range(0, len(contents[i]), 8 * KiB))
            _write(storage, f"{prefix}/shared/deep/dir/w{i}", pieces)
            storage.put_content(f"{prefix}/shared/deep/p{i}/file", contents[i][:100])

        _run_in_threads([lambda i=i: work(i) for i in range(THREADS)])
        for i in range(THREADS):
            assert storage.get_content(f"{prefix}/shared/deep/dir/w{i}") == contents[i]
            assert storage.get_content(f"{prefix}/shared/deep/p{i}/file") == contents[i][:100]
        assert len(storage.list(f"{prefix}/shared/deep/dir")) == THREADS

    def test_appending_writers_take_turns(self, storage: CheckedDriver, prefix: str) -> None:
        """With EXCLUSIVE_APPEND, a second appending writer on a path waits until the first is closed
        (the registry then trusts the hash state of an offset: it must cover exactly the bytes
        before it)."""
        _require(storage, Capability.EXCLUSIVE_APPEND)
        path = f"{prefix}/upload"
        storage.put_content(path, b"0123")
        first = storage.writer(path, append=True)
        got: list[int] = []
        second = threading.Thread(target=lambda: _append_and_report(storage, path, b"B", got), daemon=True)
        second.start()
        second.join(0.3)
        assert not got, "a second appending writer got in while the first was open"
        first.write(b"A")
        first.commit()
        first.close()
        second.join(10)
        assert got == [5]  # it started where the first one ended
        assert storage.get_content(path) == b"0123AB"

    def test_move_waits_for_an_appending_writer(self, storage: CheckedDriver, prefix: str) -> None:
        """With EXCLUSIVE_APPEND, a move of a file being appended to waits for the writer: bytes
        written after a move must never land in the moved file (an upload's data moved into place)."""
        _require(storage, Capability.EXCLUSIVE_APPEND)
        path, dest = f"{prefix}/upload", f"{prefix}/blob"
        storage.put_content(path, b"data")
        writer = storage.writer(path, append=True)
        moved = threading.Event()
        mover = threading.Thread(target=lambda: (storage.move(path, dest), moved.set()), daemon=True)
        mover.start()
        mover.join(0.3)
        assert not moved.is_set(), "move did not wait for the appending writer"
        writer.write(b"+more")
        writer.commit()
        writer.close()
        mover.join(10)
        assert moved.is_set()
        assert storage.get_content(dest) == b"data+more"
        with pytest.raises(PathNotFoundError):
            storage.writer(path, append=True)

    def test_put_scratch_round_trip(self, storage: CheckedDriver, prefix: str) -> None:
        """Scratch content is atomic like put_content (only its durability may differ)."""
        storage.put_scratch(f"{prefix}/a/startedat", b"old")
        storage.put_scratch(f"{prefix}/a/startedat", b"new!")
        assert storage.get_content(f"{prefix}/a/startedat") == b"new!"
        assert _write(storage, f"{prefix}/a/startedat", [b"+"], append=True) == 5

    def test_move_scratch_moves(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/u/data", b"bytes")
        storage.move_scratch(f"{prefix}/u/data", f"{prefix}/u/committing")
        assert storage.get_content(f"{prefix}/u/committing") == b"bytes"
        assert _absent(storage, f"{prefix}/u/data")
        with pytest.raises(PathNotFoundError):
            storage.move_scratch(f"{prefix}/u/data", f"{prefix}/u/other")

    def test_concurrent_appending_writers_never_mix(self, storage: CheckedDriver, prefix: str) -> None:
        """Two appending writers of one path open at once (only a driver without EXCLUSIVE_APPEND
        lets that happen): each either keeps all of its bytes after the other's, or fails with
        :class:`ConflictError` and keeps none; never a mix."""
        if Capability.EXCLUSIVE_APPEND in storage.capabilities:
            pytest.skip("appending writers take turns: two are never open at once")
        path = f"{prefix}/upload"
        storage.put_content(path, b"")
        _write(storage, path, [b"base|"], append=True, commit=False)
        first = storage.writer(path, append=True)
        opened: list[FileWriter] = []
        opener = threading.Thread(target=lambda: opened.append(storage.writer(path, append=True)), daemon=True)
        opener.start()
        opener.join(10)
        if not opened:
            first.close()
            opener.join(10)
            for writer in opened:
                writer.close()
            pytest.fail("a second appending writer waits for the first: declare Capability.EXCLUSIVE_APPEND")
        second = opened[0]
        kept = []
        for writer, data in ((first, b"A" * (6 * MiB)), (second, b"B" * 1000)):
            writer.write(data)
        for writer, data in ((first, b"A" * (6 * MiB)), (second, b"B" * 1000)):
            try:
                writer.close()
            except ConflictError:
                continue
            kept.append(data)
        final = storage.writer(path, append=True)
        final.commit()
        final.close()
        content = storage.get_content(path)
        assert kept, "both writers failed: at least the first to end keeps its bytes"
        assert content in {b"base|" + b"".join(order) for order in (kept, kept[::-1])}, (
            "a writer's close succeeded but its bytes are not in the file (say so with ConflictError)")

    def test_adopt_takes_a_spooled_file_or_leaves_everything_as_it_was(
        self, storage: CheckedDriver, prefix: str
    ) -> None:
        """``adopt`` on an empty appending writer: either the spooled file becomes the content,
        committed, or (``False``) nothing changed and the writer still works."""
        from registry.spool import open_spool

        directory = storage.spool_directory()
        body = os.urandom(3 * KiB + 5)
        path = f"{prefix}/upload"
        storage.put_content(path, b"")
        spool = open_spool(directory) if directory else None
        if spool is None:
            pytest.skip("the driver names no spool directory")
        with spool:
            spool.write(body)
            spool.flush()
            spool.seek(0)
            writer = storage.writer(path, append=True)
            try:
                adopted = writer.adopt(spool)
                if not adopted:
                    assert storage.get_content(path) == b""
                    writer.write(body)
                    writer.commit()
                else:
                    assert writer.size == len(body)
                    with pytest.raises(StorageError):
                        writer.write(b"more")
            finally:
                writer.close()
        assert storage.get_content(path) == body  # also after the spool file was closed
        assert _write(storage, path, [b"+"], append=True) == len(body) + 1

    def test_adopt_refused_once_written(self, storage: CheckedDriver, prefix: str) -> None:
        from registry.spool import open_spool

        directory = storage.spool_directory()
        if not directory:
            pytest.skip("the driver names no spool directory")
        path = f"{prefix}/upload"
        storage.put_content(path, b"x")
        with open_spool(directory) as spool:
            spool.write(b"spooled")
            spool.flush()
            writer = storage.writer(path, append=True)
            try:
                assert not writer.adopt(spool), "adopted over existing content"
                writer.write(b"y")
                writer.commit()
            finally:
                writer.close()
        assert storage.get_content(path) == b"xy"

    @pytest.mark.parametrize("ending", ["commit", "cancel"])
    def test_fresh_writer_adopts_or_writes(self, storage: CheckedDriver, prefix: str, ending: str) -> None:
        """A whole blob in one request goes through a fresh writer at its blob path: adopted or
        written, it appears only at commit; cancelled, nothing is left."""
        from registry.spool import open_spool

        directory = storage.spool_directory()
        if not directory:
            pytest.skip("the driver names no spool directory")
        path, body = f"{prefix}/blob", os.urandom(2 * KiB + 1)
        with open_spool(directory) as spool:
            spool.write(body)
            spool.flush()
            spool.seek(0)
            writer = storage.writer(path)
            try:
                if writer.adopt(spool):
                    assert writer.size == len(body)
                    with pytest.raises(StorageError):
                        writer.write(b"more")
                else:
                    writer.write(body)
                assert _absent(storage, path)
                getattr(writer, ending)()
            finally:
                writer.close()
        if ending == "commit":
            assert storage.get_content(path) == body
        else:
            assert _absent(storage, path)

    def test_appending_writer_waiting_on_an_adopted_path_continues_the_new_file(
        self, storage: CheckedDriver, prefix: str
    ) -> None:
        from registry.spool import open_spool

        _require(storage, Capability.EXCLUSIVE_APPEND)
        directory = storage.spool_directory()
        if not directory:
            pytest.skip("the driver names no spool directory")
        path = f"{prefix}/upload"
        storage.put_content(path, b"")
        got: list[int] = []
        with open_spool(directory) as spool:
            spool.write(b"spooled")
            spool.flush()
            first = storage.writer(path, append=True)
            second = threading.Thread(target=lambda: _append_and_report(storage, path, b"B", got), daemon=True)
            second.start()
            second.join(0.3)
            adopted = first.adopt(spool)
            if not adopted:
                first.write(b"spooled")
                first.commit()
            first.close()
            second.join(10)
        assert got == [7]
        assert storage.get_content(path) == b"spooledB"

    def test_concurrent_readers_of_one_path(self, storage: CheckedDriver, prefix: str) -> None:
        content = os.urandom(MiB)
        storage.put_content(f"{prefix}/file", content)
        offsets = [0, 1, KiB, 100 * KiB, MiB // 2, MiB - 1, MiB, 7]
        results = _run_in_threads(
            [lambda o=o: _read_all(storage.reader(f"{prefix}/file", o), 16 * KiB + 3) for o in offsets]
        )
        for offset, data in zip(offsets, results, strict=True):
            assert data == content[offset:], offset

    def test_open_reader_survives_replacement(self, storage: CheckedDriver, prefix: str) -> None:
        """A reader opened before a fresh writer commits sees one version entirely, never a mix."""
        path = f"{prefix}/file"
        old, new = os.urandom(512 * KiB), os.urandom(300 * KiB)
        storage.put_content(path, old)
        stream = storage.reader(path)
        head = stream.read(1000)
        _write(storage, path, [new])
        data = head + _read_all(stream)
        assert data in (old, new), "a reader saw a mix of old and new content"
        assert storage.get_content(path) == new

    def test_readers_during_repeated_replacement(self, storage: CheckedDriver, prefix: str) -> None:
        path = f"{prefix}/file"
        versions = [os.urandom(128 * KiB), os.urandom(200 * KiB + 1), os.urandom(64 * KiB)]
        storage.put_content(path, versions[0])
        done = threading.Event()

        def replace() -> None:
            try:
                for n in range(30):
                    if n % 2:
                        storage.put_content(path, versions[n % 3])
                    else:
                        _write(storage, path, [versions[n % 3]])
            finally:
                done.set()

        def read() -> int:
            reads = 0
            while not done.is_set() or reads < 3:
                data = _read_all(storage.reader(path), 32 * KiB)
                assert data in versions, "a reader saw a mix of versions"
                assert storage.get_content(path) in versions, "get_content saw a mix of versions"
                reads += 1
            return reads

        _run_in_threads([replace] + [read] * (THREADS - 1))

    # -- redirects -----------------------------------------------------------------------------

    def test_redirect_url_is_none_or_a_url(self, storage: CheckedDriver, prefix: str) -> None:
        storage.put_content(f"{prefix}/file", b"x")
        for method in ("GET", "HEAD"):
            url = storage.redirect_url(method, f"{prefix}/file")
            assert url is None or (isinstance(url, str) and url), url


__all__ = ["DriverSuite"]


def _require(storage: StorageDriver, capability: Capability) -> None:
    if capability not in storage.capabilities:
        pytest.skip(f"the driver does not declare {capability.name}")


def _append_and_report(storage: CheckedDriver, path: str, data: bytes, sizes: list[int]) -> None:
    writer = storage.writer(path, append=True)
    sizes.append(writer.size)
    writer.write(data)
    writer.commit()
    writer.close()
