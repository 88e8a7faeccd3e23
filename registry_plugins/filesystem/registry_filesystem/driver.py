"""The filesystem driver: storage path ``/x/y`` is the file ``<root>/x/y``, as in CNCF Distribution.

Keeping Distribution's mapping (no layout of our own, no metadata files) is what lets a registry take
over a Distribution data directory, and Distribution take it back.

Fresh writers and :meth:`FilesystemDriver.put_content` write a temporary file and rename it into
place, so a reader sees the old content or the new one, never a mix; an open reader keeps the inode it
opened. Temporary files live in ``<root>/.tmp~``: on the same file system as the data (so the rename is
atomic), outside every storage path (``~`` is not in the path alphabet, so no storage path can name
it), hidden from ``list("/")`` and ``walk("/")``, and below ``/docker`` nowhere Distribution looks.

The driver trusts its paths: the core wraps it in :class:`registry.storage.checked.CheckedDriver`,
which refuses anything but ``/``-separated ``[A-Za-z0-9._-]`` components (no ``.`` or ``..``), so
``root + path`` can never leave the root. That is also why the read paths (``get_content``, ``stat``,
``reader``) cost one system call beyond the open: they are on the hot path of every manifest GET.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from stat import S_ISDIR

try:
    import fcntl
except ImportError:  # not on Windows: appending writers are then not serialized
    fcntl = None  # type: ignore[assignment]
from typing import Any, BinaryIO

from registry.storage.driver import (
    Capability,
    FileInfo,
    FileWriter,
    InvalidOffsetError,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    WriterBase,
)

log = logging.getLogger(__name__)

#: Distribution's defaults, so a config.yml written for Distribution means the same here.
DEFAULT_ROOT = "/var/lib/registry"
DEFAULT_MAX_THREADS = 100
MIN_THREADS = 25

#: The directory (directly under the root) holding temporary files of uncommitted fresh writers.
TEMP_DIR = ".tmp~"

#: Temporary files older than this when the driver starts were left by a crash and are removed.
STALE_TEMP_AGE = 24 * 3600.0

_BUFFER = 256 * 1024
#: How often an appending writer re-opens a path whose file was replaced while it waited for the lock.
_REOPEN_ATTEMPTS = 8
#: Whether an unnamed (O_TMPFILE) file can be named through /proc/self/fd (Linux).
_LINKABLE = sys.platform.startswith("linux")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_APPEND = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_READ_SIZE = 1 << 16  # per os.read in get_content (below malloc's mmap threshold): links and most manifests take one
_O_DIRECTORY = getattr(os, "O_DIRECTORY", None)  # None on Windows: no directory fsync there
_UTC = datetime.UTC
# "No such file": a missing component, or a component that is a file (``/a/b/c`` with ``/a/b`` a file).
_MISSING = (FileNotFoundError, NotADirectoryError)


def max_threads(value: Any) -> int:
    """Distribution's reading of ``maxthreads``: default 100, and anything below 25 counts as 25.

    Distribution clamps instead of refusing, so a config it accepts must start here too.
    """
    if value is None:
        return DEFAULT_MAX_THREADS
    limit = int(value)
    return max(limit, MIN_THREADS)


class FilesystemDriver(StorageDriver):
    """Stores every storage path as the file of the same name under ``rootdirectory``.

    :param rootdirectory: the data directory; made absolute, so a later ``chdir`` cannot move it.
        It need not exist: it is created (honouring the umask) on the first write.
    :param maxthreads: accepted and kept as :attr:`max_threads` for Distribution compatibility; the
        registry's worker threads are what bound concurrent file operations.
    """

    name = "filesystem"
    #: Appending in place under ``flock`` (across processes), renames that copy nothing, and readers
    #: that see an upload's data as it grows; small reads from the local page cache.
    capabilities = Capability.RENAME | Capability.READ_UNCOMMITTED | Capability.LOCAL_READS | (
        Capability.EXCLUSIVE_APPEND if fcntl is not None else Capability.NONE  # flock: not on Windows
    )

    def __init__(self, rootdirectory: str = DEFAULT_ROOT, maxthreads: int | str | None = None) -> None:
        self.rootdirectory = os.path.abspath(rootdirectory)
        self.max_threads = max_threads(maxthreads)
        # Paths are joined by concatenation (the fastest way, and exact for validated paths); a root
        # of "/" becomes "" so that "/docker" maps to "/docker" and not "//docker".
        self._root = self.rootdirectory.rstrip("/\\")
        self._tmpdir = f"{self._root}/{TEMP_DIR}"
        self._purge_stale_temp_files()

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any] | None) -> FilesystemDriver:
        """Build the driver from its ``storage.filesystem`` config mapping (``None`` means defaults)."""
        params = params or {}
        return cls(str(params.get("rootdirectory") or DEFAULT_ROOT), params.get("maxthreads"))

    def __repr__(self) -> str:
        return f"FilesystemDriver({self.rootdirectory!r})"

    # -- reading: one open (or stat) per call ---------------------------------------------------

    def get_content(self, path: str) -> bytes:
        # os.open and os.read, not open(): a buffered file object costs five more system calls
        # (fstat twice, an ioctl, two lseeks) on every tag link and manifest read.
        try:
            fd = os.open(self._root + path, _READ)
        except (*_MISSING, IsADirectoryError):
            raise PathNotFoundError(path=path) from None
        try:
            chunks = []
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
                if len(chunk) < _READ_SIZE:
                    # A regular file's read comes up short only at its end: the read that would
                    # return b"" is one system call more on every tag link and manifest read.
                    break
        except IsADirectoryError:  # os.open opens a directory; reading it fails
            raise PathNotFoundError(path=path) from None
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A real, buffered file object positioned at ``offset``.

        It has ``fileno()``, so a server can hand it to ``sendfile``; it keeps reading the content it
        opened even if a writer replaces the path meanwhile.
        """
        try:
            f = open(self._root + path, "rb")  # noqa: SIM115 - the caller owns and closes it
        except (*_MISSING, IsADirectoryError):
            raise PathNotFoundError(path=path) from None
        if offset:
            try:
                size = os.fstat(f.fileno()).st_size
                if offset < 0 or offset > size:
                    raise InvalidOffsetError(f"offset {offset} outside 0..{size}", path=path)
                f.seek(offset)
            except BaseException:
                f.close()
                raise
        return f

    def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full(path))
        except _MISSING:
            if path == "/":  # an empty driver still has a root, as list("/") == [] says
                return FileInfo("/", 0, True, None)
            raise PathNotFoundError(path=path) from None
        return _info(path, st)

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._full(path))
        except _MISSING:
            if path == "/":
                return []
            raise PathNotFoundError(path=path) from None
        if path == "/":
            return ["/" + name for name in names if name != TEMP_DIR]
        prefix = path + "/"
        return [prefix + name for name in names]

    def walk(self, path: str) -> Iterator[FileInfo]:
        """One ``scandir`` per directory instead of the base class's ``list`` + ``stat`` per entry."""
        try:
            entries = _sorted_entries(self._full(path))
        except _MISSING:
            if path == "/":
                return
            raise PathNotFoundError(path=path) from None
        if path == "/":
            entries = [e for e in entries if e.name != TEMP_DIR]
        yield from self._walk(entries, "/" if path == "/" else path + "/")

    def _walk(self, entries: list[os.DirEntry[str]], prefix: str) -> Iterator[FileInfo]:
        for entry in entries:
            child = prefix + entry.name
            try:
                st = entry.stat()
            except FileNotFoundError:  # deleted while we walk: it is simply no longer there
                continue
            yield _info(child, st)
            if S_ISDIR(st.st_mode):
                try:
                    below = _sorted_entries(entry.path)
                except _MISSING:
                    continue
                yield from self._walk(below, child + "/")

    # -- writing --------------------------------------------------------------------------------

    def put_content(self, path: str, content: bytes) -> None:
        self._put(path, content, durable=True)

    def put_scratch(self, path: str, content: bytes) -> None:
        """Atomic (temporary file and rename) but without the two ``fsync``s: upload bookkeeping
        survives the process dying (the page cache keeps it), and the core checks or rebuilds it
        after a machine crash."""
        self._put(path, content, durable=False)

    def _put(self, path: str, content: bytes, durable: bool) -> None:
        tmp, fd = self._new_temp_file()
        try:
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._install(tmp, path, durable)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return _AppendWriter(self, path) if append else _FreshWriter(self, path)

    def move(self, source: str, dest: str) -> None:
        self._move(source, dest, durable=True)

    def move_scratch(self, source: str, dest: str) -> None:
        self._move(source, dest, durable=False)

    def spool_directory(self) -> str | None:
        """The temporary directory: on the data's file system, so a spooled body can be linked in."""
        return self._tmpdir

    def _move(self, source: str, dest: str, durable: bool) -> None:
        src, dst = self._root + source, self._root + dest
        # Wait for appending writers of the source to finish, and keep new ones out while renaming:
        # a writer still open on the moved file would otherwise keep appending to it at its new
        # place (an open descriptor follows the file), changing a blob after its digest was checked.
        with _exclusive(src, source, sync=durable):
            try:
                os.replace(src, dst)
            except _MISSING:
                if not os.path.lexists(src):
                    raise PathNotFoundError(path=source) from None
                _makedirs(os.path.dirname(dst))
                os.replace(src, dst)
        if durable:
            _sync_dir(os.path.dirname(dst))

    def delete(self, path: str) -> None:
        full = self._root + path
        try:
            os.unlink(full)
            return
        except _MISSING:
            raise PathNotFoundError(path=path) from None
        except (IsADirectoryError, PermissionError):  # Linux says EISDIR for a directory, macOS EPERM
            if os.path.islink(full):
                raise
            if not os.path.isdir(full):
                if not os.path.lexists(full):  # a concurrent delete removed the directory meanwhile
                    raise PathNotFoundError(path=path) from None
                raise
        _rmtree(full)

    # -- helpers --------------------------------------------------------------------------------

    def _full(self, path: str) -> str:
        return self._root + path if path != "/" else (self._root or "/")

    def _new_temp_file(self) -> tuple[str, int]:
        """Create an empty temporary file; mode 0666 less the umask, like Distribution's files."""
        name = f"{self._tmpdir}/{uuid.uuid4().hex}"
        try:
            return name, os.open(name, _NEW_FILE, 0o666)
        except FileNotFoundError:  # first write ever: the root or its temp directory is missing
            _makedirs(self._tmpdir)
            return name, os.open(name, _NEW_FILE, 0o666)

    def _install(self, tmp: str, path: str, durable: bool = True) -> None:
        """Rename a complete (and, for ``durable``, fsynced) temporary file to ``path``, creating
        parent directories."""
        dest = self._root + path
        for attempt in range(3):
            try:
                os.replace(tmp, dest)
                break
            except FileNotFoundError:
                # The parent is missing (or was removed by a concurrent delete after we made it).
                if attempt == 2 or not os.path.exists(tmp):
                    raise
                _makedirs(os.path.dirname(dest))
            except IsADirectoryError:
                raise StorageError("a directory exists at this path", path=path) from None
        if durable:
            _sync_dir(os.path.dirname(dest))

    def _purge_stale_temp_files(self) -> None:
        """Remove what crashed writers left; a live writer's file is far younger than a day."""
        cutoff = time.time() - STALE_TEMP_AGE
        removed = 0
        try:
            with os.scandir(self._tmpdir) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
                    except OSError:
                        continue
        except OSError:  # no temp directory yet, or no permission: nothing we should clean
            return
        if removed:
            log.info("removed %d stale temporary files from %s", removed, self._tmpdir)


class _Writer(WriterBase):
    """What both writers share: a buffered file, its size, and refusing use after the end."""

    _path: str
    _file: Any
    _size: int
    _ended: str  # why no more writes are allowed: "committed", "cancelled" or "closed"
    _adopted = False  # the content is an adopted file: no more writes

    def write(self, data: bytes) -> int:
        self._check_open()
        if self._adopted:
            raise StorageError("writer adopted a file: no more writes", path=self._path)
        n = self._file.write(data)
        self._size += n
        return n

    @property
    def size(self) -> int:
        return self._size

    def _flush_to_disk(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())


class _FreshWriter(_Writer):
    """Writes a temporary file; :meth:`commit` fsyncs it and renames it over the path."""

    def __init__(self, driver: FilesystemDriver, path: str) -> None:
        self._driver, self._path = driver, path
        self._tmp, fd = driver._new_temp_file()
        self._file = open(fd, "wb", buffering=_BUFFER)  # noqa: SIM115 - closed by commit/cancel/close
        self._size = 0
        self._ended = ""

    def adopt(self, file: BinaryIO) -> bool:
        """Name the spooled ``file`` as this writer's temporary file (a link, no copy); :meth:`commit`
        then renames it into place as it would have the written one."""
        if self._ended or self._adopted or self._size or self._file.tell() or not _LINKABLE:
            return False
        tmp = _adopt_into(self._driver, file, self._file.fileno(), self._path)
        if tmp is None:
            return False
        old, self._tmp = self._tmp, tmp
        self._file.close()
        _unlink_quietly(old)
        self._file = open(tmp, "ab", buffering=0)  # noqa: SIM115 - for the fsync of commit; closed there
        self._size = os.fstat(self._file.fileno()).st_size
        self._adopted = True
        return True

    def _finish(self) -> None:
        self._flush_to_disk()
        self._file.close()
        self._driver._install(self._tmp, self._path)

    def _discard(self) -> None:
        try:
            self._file.close()
        finally:
            _unlink_quietly(self._tmp)


class _AppendWriter(_Writer):
    """Appends to the file in place: an upload grows where it lies, and no copy is ever made."""

    def __init__(self, driver: FilesystemDriver, path: str) -> None:
        self._driver = driver
        self._full, self._path = driver._root + path, path
        fd = self._open_locked()
        try:
            self._size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        self._file = open(fd, "ab", buffering=_BUFFER)  # noqa: SIM115 - closed by commit/cancel/close
        self._ended = ""

    def _open_locked(self) -> int:
        # One appending writer per file at a time, across threads and processes: the lock is held
        # until the writer is closed (it goes with the descriptor). Taken, the file must still be
        # the one at the path: a move may have taken it away while we waited (then the path is
        # gone), or an adopting writer replaced it (then we try the new file).
        for _attempt in range(_REOPEN_ATTEMPTS):
            try:
                fd = os.open(self._full, _APPEND)
            except (*_MISSING, IsADirectoryError):
                raise PathNotFoundError(path=self._path) from None
            try:
                _lock(fd)
                if _same_file(fd, self._full):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise PathNotFoundError(path=self._path)

    def adopt(self, file: BinaryIO) -> bool:
        """Link the spooled ``file`` over the (empty) path, keeping this writer's lock on the old file
        until the new one is in place and locked by this writer; waiting writers then find the new
        file (:meth:`_open_locked`) once this one is closed."""
        if self._ended or self._adopted or self._size or self._file.tell() or not _LINKABLE:
            return False
        tmp = _adopt_into(self._driver, file, self._file.fileno(), self._path)
        if tmp is None:
            return False
        try:
            new = os.open(tmp, _APPEND)
            try:
                _lock(new)
                # As a close: neither the file nor the rename synced; the commit at the end is.
                os.replace(tmp, self._full)
            except BaseException:
                os.close(new)
                raise
        except BaseException:
            _unlink_quietly(tmp)
            raise
        old, self._file = self._file, open(new, "ab", buffering=0)  # noqa: SIM115 - closed by the writer
        old.close()
        self._size = os.fstat(new).st_size
        self._adopted = True
        return True

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"
        try:
            self._flush_to_disk()
        finally:
            self._file.close()
        self._ended = "committed"

    def cancel(self) -> None:
        """Delete the file (an abandoned upload), unless this writer committed it."""
        if self._ended == "committed":
            return
        self._ended = "cancelled"
        try:
            self._file.close()
        finally:
            _unlink_quietly(self._full)

    def close(self) -> None:
        """Flush and close; what was written stays (a later appending writer's size shows it). The
        kernel is asked to start writing the file back meanwhile, without waiting: the ``fsync`` of
        the commit or move at the end of the upload then finds most of it on disk."""
        if not self._ended:
            self._ended = "closed"
            try:
                self._file.flush()
                _start_writeback(self._file.fileno())
            finally:
                self._file.close()


def _sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux), or ``None``: Python's ``os`` does not offer it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of the dirty pages, do not wait for it


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing ``fd``'s dirty pages back now, without waiting (a hint): the
    disk works while the next chunk arrives, and the ``fsync`` of the durable move at the end of the
    upload finds most of the file already there. The pages stay cached for a pull that follows."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # errors are harmless: it is only a hint


def _adopt_into(driver: FilesystemDriver, file: BinaryIO, own_fd: int, path: str) -> str | None:
    """Give the spooled ``file`` a name in the driver's temporary directory; ``None`` when it is
    on another file system or cannot be linked (the caller then copies)."""
    try:
        fd = file.fileno()
        if os.fstat(fd).st_dev != os.fstat(own_fd).st_dev:
            return None
        file.flush()
        tmp = f"{driver._tmpdir}/{uuid.uuid4().hex}"
        _link_unnamed(fd, tmp)
    except (OSError, ValueError, AttributeError) as exc:
        log.debug("cannot adopt %r for %s: %s", file, path, exc)
        return None
    _start_writeback(fd)
    return tmp


def _link_unnamed(fd: int, dest: str) -> None:
    """Give the open ``O_TMPFILE`` file ``fd`` the name ``dest``: ``linkat(AT_SYMLINK_FOLLOW)`` on
    its ``/proc/self/fd`` entry (open(2)). Python calls plain ``link()``, which does not follow the
    entry, unless a directory descriptor is passed: the path is absolute, so it is not used."""
    dirfd = os.open("/", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(f"/proc/self/fd/{fd}", dest, src_dir_fd=dirfd, follow_symlinks=True)
    finally:
        os.close(dirfd)


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _same_file(fd: int, full: str) -> bool:
    try:
        here = os.stat(full)
    except OSError:
        return False
    st = os.fstat(fd)
    return (here.st_ino, here.st_dev) == (st.st_ino, st.st_dev)


@contextlib.contextmanager
def _exclusive(full: str, path: str, sync: bool = False) -> Iterator[None]:
    """Hold the appending writers' lock on ``full`` (if it can be opened) for the duration; with
    ``sync``, ``fsync`` the file first (content that was only scratch-committed)."""
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (*_MISSING, IsADirectoryError, PermissionError):
        yield  # a directory or a missing path: os.replace reports what is wrong
        return
    try:
        _lock(fd)
        if sync:
            os.fsync(fd)
        yield
    finally:
        os.close(fd)


def _info(path: str, st: os.stat_result) -> FileInfo:
    is_dir = S_ISDIR(st.st_mode)
    mtime = datetime.datetime.fromtimestamp(st.st_mtime, _UTC)
    return FileInfo(path, 0 if is_dir else st.st_size, is_dir, mtime)


def _sorted_entries(full: str) -> list[os.DirEntry[str]]:
    with os.scandir(full) as it:
        return sorted(it, key=lambda e: e.name)


def _makedirs(directory: str) -> None:
    # exist_ok makes concurrent writers creating the same parents safe; mode 0777 less the umask,
    # as Distribution creates its directories.
    os.makedirs(directory, 0o777, exist_ok=True)


def _sync_dir(directory: str) -> None:
    """Make a rename durable. Best effort where the platform or file system cannot fsync a directory."""
    if _O_DIRECTORY is None:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | _O_DIRECTORY)
    except FileNotFoundError:  # removed meanwhile by a concurrent delete: nothing left to sync
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _remove_flat_directory(full: str) -> bool:
    """Remove a directory holding only files (a finished upload's directory, on every push) with one
    ``scandir``; ``False`` when it holds a directory or changed meanwhile (then walk it in full)."""
    try:
        with os.scandir(full) as it:
            entries = list(it)
        if any(e.is_dir(follow_symlinks=False) for e in entries):
            return False
        for entry in entries:
            _unlink_quietly(entry.path)
        os.rmdir(full)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rmtree(full: str) -> None:
    """Remove a tree; entries a concurrent delete removed first are what we wanted gone anyway."""
    if _remove_flat_directory(full):
        return

    def ignore_missing(function: Any, path: str, exc: Any) -> None:
        exc = exc if isinstance(exc, BaseException) else exc[1]  # onexc (3.12+) or onerror
        if not isinstance(exc, FileNotFoundError):
            raise exc

    if sys.version_info >= (3, 12):
        shutil.rmtree(full, onexc=ignore_missing)
    else:
        shutil.rmtree(full, onerror=ignore_missing)
