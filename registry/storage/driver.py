"""The storage driver contract, modeled on CNCF Distribution's ``StorageDriver``.

Paths are absolute, slash-separated and ASCII-only: ``/`` followed by components made of
``[A-Za-z0-9._-]`` (see :func:`registry.storage.checked.validate_path`). Drivers never see any other
path: the core wraps every driver in :class:`registry.storage.checked.CheckedDriver`, which validates
paths and turns unexpected driver exceptions into :class:`StorageError`.

A driver is used from many threads at once; it must be safe for concurrent calls on different
paths, and for concurrent readers of a path that is being replaced by a committed writer.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
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
    :meth:`commit`; closed or cancelled without commit, it leaves the path as it was.

    An appending writer continues the file at the path; what it writes is durable after
    :meth:`commit`. Whether readers see bytes before the commit is up to the driver, and so is whether
    bytes written without a commit survive :meth:`close` (a later appending writer's :attr:`size`
    tells). :meth:`cancel` on an appending writer deletes the file: it was an unfinished upload.

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
        """Release resources. Idempotent. Does not commit."""

    def commit_scratch(self) -> None:
        """Like :meth:`commit` (visible, the writer spent), but the content need only survive the
        process crashing, not the machine: an upload's chunks, made durable when the upload is moved
        into place (:meth:`StorageDriver.move`). Defaults to :meth:`commit`."""
        self.commit()

    def adopt(self, file: BinaryIO) -> bool:
        """Take the whole content of ``file`` as this writer's content and commit it, without copying.

        Offered only to a writer that has written nothing and (appending) starts from an empty file,
        with ``file`` an unnamed local temporary file that the caller owns and will close (a request
        body spooled into :meth:`StorageDriver.spool_directory`). A driver that can give the file a
        name (a filesystem driver linking it into place) does so, atomically and at least as durably
        as :meth:`commit_scratch`, and returns ``True``; the writer is then committed. ``False`` (the
        default) means nothing happened: the caller writes and commits as usual.
        """
        return False

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class StorageDriver(abc.ABC):
    """The operations a storage backend provides. ``name`` is the config key that selects it."""

    name: str = ""

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
        """Return a writer for ``path``; with ``append`` it continues an existing (possibly
        uncommitted) file and raises :class:`PathNotFoundError` when there is none.

        Appending writers of one path take turns: a second one waits until the first is committed,
        cancelled or closed (across processes where the storage is shared), and :meth:`move` of the
        path waits too. Uploads rely on it: a chunk's offset and hash state must cover exactly the
        bytes before it, and no byte may reach an upload's data after it was checked and moved.
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

    @abc.abstractmethod
    def move(self, source: str, dest: str) -> None:
        """Move a file, replacing ``dest`` if it exists; raises :class:`PathNotFoundError`.

        Afterwards the content is durable at ``dest``, including content that was only
        scratch-committed (:meth:`FileWriter.commit_scratch`) before the move.
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
        its own upload directory). Defaults to :meth:`move`."""
        self.move(source, dest)

    def spool_directory(self) -> str | None:
        """A local directory on the same file system as the data where the server may spool request
        bodies, so that :meth:`FileWriter.adopt` can take them without a copy; ``None`` (the
        default) when the driver cannot adopt files."""
        return None

    def redirect_url(self, method: str, path: str) -> str | None:
        """A URL the client may fetch ``path`` from directly, or ``None`` to stream through us."""
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
