"""The storage driver contract, modeled on CNCF Distribution's ``StorageDriver``.

Paths are absolute, slash-separated and ASCII-only: ``/`` followed by components made of
``[A-Za-z0-9._-]`` (see :func:`registry.storage.checked.validate_path`). Drivers never see any other
path: the core wraps every driver in :class:`registry.storage.checked.CheckedDriver`, which validates
paths and turns unexpected driver exceptions into :class:`StorageError`.

A driver is used from many threads at once; it must be safe for concurrent calls on different
paths, and for concurrent readers of a path that is being replaced by a committed writer.

The contract is written for the hardest backend it serves, an object store (S3, Azure Blob, Ceph RGW):
no append in place, no rename, no lock across processes. What a driver can do beyond that it declares
in :attr:`StorageDriver.capabilities`, and the core and the exported suite adapt (see
:class:`Capability`). An upload, for example, is written through appending writers that are closed
after every chunk (never committed), committed once when it is finished, and moved into place once.
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import datetime
import enum
from collections.abc import Iterator
from typing import BinaryIO


class StorageError(Exception):
    """Base class of every error a driver may raise; ``driver`` names the driver."""

    def __init__(self, message: str = "", *, path: str = "", driver: str = "") -> None:
        super().__init__(message or path)
        self.path = path
        self.driver = driver


class PathNotFoundError(StorageError):
    """The path (file or directory) does not exist."""


class InvalidPathError(StorageError):
    """The path breaks the path rules (never reaches a driver through the checked wrapper)."""


class InvalidOffsetError(StorageError):
    """A reader offset is negative or beyond the end of the file."""


class UnsupportedMethodError(StorageError):
    """The driver does not implement this optional operation (e.g. ``redirect_url``)."""


class StorageUnavailableError(StorageError):
    """The backend failed in a way that may pass: a connection error, a timeout, a 5xx from the
    service. Clients get 503 ``UNAVAILABLE`` and retry. ``retry_after`` is the backend's hint in
    seconds, when it gave one."""

    def __init__(
        self, message: str = "", *, path: str = "", driver: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, path=path, driver=driver)
        self.retry_after = retry_after


class StorageThrottledError(StorageUnavailableError):
    """The backend refuses the request rate (S3 ``SlowDown``, HTTP 429 or 503 with a throttling code).
    Clients get 429 ``TOOMANYREQUESTS`` and slow down."""


class ConflictError(StorageError):
    """Another writer changed the file this appending writer resumed, since it was opened.

    Raised by :meth:`FileWriter.close` or :meth:`FileWriter.commit` of a driver without
    :attr:`Capability.EXCLUSIVE_APPEND` that can tell (e.g. part ETags that are not the ones it saw);
    what this writer wrote is then not kept. The core answers the chunk with 416: the client asks
    where the upload stands and goes on from there.
    """


class Capability(enum.Flag):
    """What a driver can do beyond the contract's minimum (an object store's).

    The core asks instead of assuming: a driver that declares nothing is served correctly, only
    with more work (re-reading an upload at its end, an extra copy).
    """

    #: Nothing beyond the minimum: the default, and what an object store offers.
    NONE = 0
    #: Appending writers of one path take turns across threads *and processes* sharing the storage
    #: (a second one waits until the first is closed), and :meth:`StorageDriver.move` of a path
    #: waits for its appending writer. With it the core trusts the resumable hash state it saved for
    #: an upload's offset (no re-read at the end); without it, it re-reads the upload once to verify
    #: the digest over the bytes actually stored.
    EXCLUSIVE_APPEND = enum.auto()
    #: :meth:`StorageDriver.move` is an atomic rename that copies no data, so moving a file twice
    #: costs nothing (an upload is set aside out of every writer's reach before its digest is
    #: checked). Without it a move is a copy and the core moves each blob once. A driver declaring
    #: it (with EXCLUSIVE_APPEND) must also move a closed, uncommitted appended file, and make it
    #: durable at the destination: that is how the core finishes an upload there.
    RENAME = enum.auto()
    #: What a closed, uncommitted appending writer wrote is visible to readers (``stat``,
    #: ``reader``) at once, as appending in place to a file is. Without it readers see a file as of
    #: its last commit, and the core asks an appending writer for an upload's size.
    READ_UNCOMMITTED = enum.auto()
    #: :meth:`StorageDriver.move` copies on the server side: no byte passes through the registry.
    SERVER_COPY = enum.auto()
    #: :meth:`StorageDriver.redirect_url` may return URLs (without it the core never asks).
    REDIRECT = enum.auto()
    #: :meth:`StorageDriver.list_page` is native: a page costs requests in proportion to the page,
    #: not to the directory (S3's ``ListObjectsV2`` with ``StartAfter`` and ``MaxKeys``). The core
    #: then pages through directories (the catalog) instead of listing them whole. Without it the
    #: core lists a directory whole with :meth:`StorageDriver.list`, and keeps large listings of
    #: directories that have a modification time (a file system) to answer the next page from.
    PAGED_LIST = enum.auto()
    #: :meth:`StorageDriver.walk` is native: it costs requests in proportion to the files below the
    #: path (S3's ``ListObjectsV2`` without a delimiter, 1,000 keys a call), not to its directories,
    #: and gives every file's size and modification time without a :meth:`StorageDriver.stat` each.
    #: The maintenance commands (garbage collection, scrub, usage) then walk the blob store instead
    #: of listing each of its directories. Without it they list directory by directory.
    FLAT_WALK = enum.auto()
    #: Reads of small files (``stat``, ``get_content``) come from a local file system, normally
    #: its page cache, in microseconds; they never wait on a network. With it the server may
    #: answer small bodiless requests (a manifest ``GET``/``HEAD``) on its I/O thread instead of
    #: handing each to a worker thread (:mod:`registry.serve`); an object store must not declare it.
    LOCAL_READS = enum.auto()


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What :meth:`StorageDriver.stat` knows of a path."""

    path: str
    size: int
    is_dir: bool
    mod_time: datetime.datetime | None = None


class FileWriter(abc.ABC):
    """A writer returned by :meth:`StorageDriver.writer`.

    A fresh writer (``append=False``) makes its content appear at the path atomically at
    :meth:`commit`; cancelled or closed without commit, it leaves the path as it was and nothing to
    resume.

    An appending writer (``append=True``) continues the file at the path: the committed file, or
    what earlier appending writers of the path wrote and closed without committing. Its
    :meth:`close` keeps what it wrote, durably enough to survive the registry process (not
    necessarily the machine: the commit is what is durable), so that the next appending writer of
    the path, in any process, starts after it (its :attr:`size` says so). This is how an upload's
    chunks are stored: one appending writer per chunk, closed, never committed, so an object store
    need not finish a multipart upload (and copy everything before it again) per chunk. Its
    :meth:`commit` makes the whole content, the earlier writers' included, the durable, visible file
    at the path, at once. :meth:`cancel` on an appending writer deletes the file, committed content
    included: it was an unfinished upload.

    Whether readers see what a closed, uncommitted appending writer wrote is declared by
    :attr:`Capability.READ_UNCOMMITTED`; whether appending writers of a path take turns by
    :attr:`Capability.EXCLUSIVE_APPEND`.

    After :meth:`commit`, :meth:`cancel` or :meth:`close`, :meth:`write` and :meth:`commit` raise
    :class:`StorageError`. :meth:`cancel` after a successful :meth:`commit` does nothing, so the usual
    ``try: ...; w.commit() except: w.cancel()`` can never discard committed content.
    """

    @abc.abstractmethod
    def write(self, data: bytes) -> int:
        """Append ``data``; returns the number of bytes written (always ``len(data)``)."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the file so far, including what an appending writer started from."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make the content durable and visible at the path. No writes are allowed after it."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Discard what was written (see the class docstring for appending writers)."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the writer without committing. Idempotent. A fresh writer's content is discarded; an
        appending writer's is kept for the next appending writer of the path (see the class
        docstring). May raise :class:`ConflictError`."""

    def adopt(self, file: BinaryIO) -> bool:
        """Take the whole content of ``file`` as this writer's content, without copying it.

        Offered only to a writer that has written nothing and (appending) starts from an empty file,
        with ``file`` an unnamed local temporary file that the caller owns and will close (a request
        body spooled into :meth:`StorageDriver.spool_directory`). A driver that can give the file a
        name (a filesystem driver linking it into place) does so and returns ``True``: the writer's
        :attr:`size` is then the file's, no more :meth:`write` is allowed, and :meth:`commit`,
        :meth:`close` and :meth:`cancel` do what they do after writing that content. ``False`` (the
        default) means nothing happened: the caller writes the content as usual.
        """
        return False

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class WriterBase(FileWriter):
    """The bookkeeping of a writer's end, for drivers to build their writers on (optional).

    ``_ended`` is ``""`` while the writer is open, then why it is spent: ``"closed"``,
    ``"cancelled"`` or ``"committed"``; :meth:`_check_open` refuses use after the end with the
    contract's :class:`StorageError`. A fresh writer implements :meth:`_finish` (make the content
    appear at ``_path``) and :meth:`_discard` (drop what it wrote) and gets the contract's
    :meth:`commit`, :meth:`cancel` and :meth:`close`: the writer is spent while ``_finish`` runs, so
    a failed commit discards and leaves nothing to retry, and the first of cancel or close
    discards, later ones do nothing. An appending writer, whose close keeps what it wrote,
    overrides all three and uses :meth:`_check_open` and ``_ended``.
    """

    _ended: str = ""
    _path: str = ""

    def _check_open(self) -> None:
        if self._ended:
            raise StorageError(f"writer already {self._ended}", path=self._path)

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self._check_open()
        self._ended = "closed"
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise
        self._ended = "committed"

    def cancel(self) -> None:
        self._end("cancelled")

    def close(self) -> None:
        self._end("closed")

    def _end(self, how: str) -> None:
        if not self._ended:
            self._ended = how
            self._discard()


class StorageDriver(abc.ABC):
    """The operations a storage backend provides. ``name`` is the config key that selects it."""

    name: str = ""
    #: What the driver can do beyond the minimum contract (see :class:`Capability`). The default,
    #: nothing, is always correct.
    capabilities: Capability = Capability.NONE

    @abc.abstractmethod
    def get_content(self, path: str) -> bytes:
        """Return the whole file; raises :class:`PathNotFoundError`. For small files only."""

    @abc.abstractmethod
    def put_content(self, path: str, content: bytes) -> None:
        """Store ``content`` at ``path`` atomically, replacing any file there."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """Open ``path`` for streaming from ``offset``.

        Raises :class:`PathNotFoundError`, or :class:`InvalidOffsetError` when ``offset`` is
        negative or greater than the size (an offset equal to the size gives an empty stream).
        The returned object is a binary file object: ``read(n)`` (which may return fewer bytes;
        ``b""`` at the end), ``close()``, and use in a ``with`` statement, as the core streams it.
        A real file (with ``fileno()``) lets a server send it without copying.
        """

    @abc.abstractmethod
    def writer(self, path: str, append: bool = False) -> FileWriter:
        """Return a writer for ``path`` (see :class:`FileWriter`); with ``append`` it continues the
        committed or the closed, uncommitted file at ``path`` and raises :class:`PathNotFoundError`
        when there is neither.

        With :attr:`Capability.EXCLUSIVE_APPEND`, appending writers of one path take turns: a second
        one waits until the first is committed, cancelled or closed (across processes where the
        storage is shared), and :meth:`move` of the path waits too. Without it, two appending writers
        of one path may be open at once (the core never opens two in one process); a driver that can
        tell raises :class:`ConflictError` from the second to end, and the core verifies an upload's
        digest over what is stored, whatever the writers did.
        """

    @abc.abstractmethod
    def stat(self, path: str) -> FileInfo:
        """Describe a file or directory; raises :class:`PathNotFoundError`."""

    @abc.abstractmethod
    def list(self, path: str) -> list[str]:
        """Full paths of the direct children of directory ``path`` (any order).

        ``list("/")`` on an empty driver returns ``[]``; any other missing directory raises
        :class:`PathNotFoundError`.
        """

    def list_page(self, path: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """One page of the children of directory ``path``: their *names* (the last path component,
        not full paths), in lexical order, only those strictly after ``after`` (``None``: from the
        first), at most ``limit`` (at least 1) of them; and whether more names follow the page.

        A missing directory raises :class:`PathNotFoundError` as :meth:`list` does (``"/"`` never
        does), also when ``after`` is past every name; a directory with nothing after ``after``
        gives ``([], False)``. ``after`` is a valid path component (the core checks it) that need
        not exist; it is only a bound, never a path to open. Lexical order is code point order,
        which for the path alphabet is byte order: ``a`` < ``a-b`` < ``a.b`` < ``a0`` < ``a_b``.
        To get the next page, pass the last name of this one as ``after``.

        The default lists the whole directory with :meth:`list` and slices it, which is correct for
        every driver but costs a whole listing per page; a driver that can start a listing at a
        name and stop it after ``limit`` entries overrides it and declares
        :attr:`Capability.PAGED_LIST`.
        """
        cut = 1 if path == "/" else len(path) + 1
        names = [child[cut:] for child in self.list(path)]
        names.sort()
        start = 0 if after is None else bisect.bisect_right(names, after)
        return names[start:start + limit], start + limit < len(names)

    @abc.abstractmethod
    def move(self, source: str, dest: str) -> None:
        """Move a committed file, replacing ``dest`` if it exists; raises :class:`PathNotFoundError`.

        Afterwards the content is durable at ``dest``. An object store copies (one server-side copy,
        multipart above its single-copy limit) and deletes the source; see :attr:`Capability.RENAME`.
        """

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file or a directory with everything under it; raises :class:`PathNotFoundError`."""

    def put_scratch(self, path: str, content: bytes) -> None:
        """Like :meth:`put_content` (atomic), but the content need only survive the process, not the
        machine, crashing: the core keeps upload bookkeeping (``startedat``, hash states) this way,
        which it can do without or verifies before use. Defaults to :meth:`put_content`; a driver
        that can skip its ``fsync``s here overrides it."""
        self.put_content(path, content)

    def move_scratch(self, source: str, dest: str) -> None:
        """Like :meth:`move`, for a move a machine crash may undo (an upload's data set aside inside
        its own upload directory, done only with :attr:`Capability.RENAME`). Defaults to :meth:`move`."""
        self.move(source, dest)

    def spool_directory(self) -> str | None:
        """A local directory on the same file system as the data where the server may spool request
        bodies, so that :meth:`FileWriter.adopt` can take them without a copy; ``None`` (the
        default) when the driver cannot adopt files."""
        return None

    def redirect_url(self, method: str, path: str) -> str | None:
        """A URL the client may fetch ``path`` from directly, or ``None`` to stream through us.
        Asked only of a driver declaring :attr:`Capability.REDIRECT`."""
        return None

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Yield every file and directory below ``path`` (depth first, parents before children,
        siblings in lexical order). Drivers with a cheaper recursive listing override it."""
        for child in sorted(self.list(path)):
            info = self.stat(child)
            yield info
            if info.is_dir:
                yield from self.walk(child)

    def close(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Release connections or pools held by the driver."""
