"""Request bodies spooled where storage can adopt them instead of copying them.

waitress reads a whole request body before the application runs, and keeps any body over its
``inbuf_overflow`` in an anonymous temporary file. A layer pushed to a filesystem driver was
therefore written twice: into that spool file, then again into the upload's data. When the storage
driver names a spool directory on its own file system (:meth:`StorageDriver.spool_directory`), the
server creates its spool files there as ``O_TMPFILE`` files, marked as :class:`SpoolFile`; an upload
that starts at offset 0 hashes the spool and hands it to the driver's writer (:meth:`FileWriter.adopt`),
which links it into place. Every other case reads the spool as an ordinary stream.

An ``O_TMPFILE`` file has no name until it is linked: a crash leaves nothing behind, and no other
process can open it meanwhile.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from typing import Any

log = logging.getLogger(__name__)

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


class SpoolFile(io.BufferedRandom):
    """An unnamed temporary file holding exactly one request body, from offset 0.

    Only :func:`open_spool` makes these: code receiving a request body may rely on the marker to
    read the body's length from the file and offer the file for adoption. The storage layer reads
    the marker as the ``adoptable`` attribute, so that it needs no import of this server module.
    """

    adoptable = True


def open_spool(directory: str) -> io.BufferedRandom:
    """A new unnamed file in ``directory``: a linkable :class:`SpoolFile` where the file system
    supports ``O_TMPFILE``, else an ordinary temporary file there (or in ``$TMPDIR``)."""
    if _O_TMPFILE:
        try:
            # Without O_EXCL, so that linkat() may give it a name later (open(2), O_TMPFILE).
            fd = os.open(directory, os.O_RDWR | _O_TMPFILE | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError:
            pass
        else:
            return SpoolFile(io.FileIO(fd, "r+"))
    try:
        return tempfile.TemporaryFile("w+b", dir=directory)  # noqa: SIM115 - waitress closes it
    except OSError:
        return tempfile.TemporaryFile("w+b")  # noqa: SIM115


def spooling_parser(directory: str) -> type:
    """A waitress request parser whose large bodies are spooled into ``directory``."""
    # Imported here: importing this module must not load the server.
    from waitress.buffers import OverflowableBuffer, TempfileBasedBuffer
    from waitress.parser import HTTPRequestParser

    class _Buffer(TempfileBasedBuffer):
        def newfile(self) -> Any:
            return open_spool(directory)

    class _OverflowableBuffer(OverflowableBuffer):
        def _set_large_buffer(self) -> None:
            oldbuf = self.buf
            self.buf = _Buffer(oldbuf)
            if hasattr(oldbuf, "close"):
                oldbuf.close()
            self.overflowed = True

    class SpoolingParser(HTTPRequestParser):
        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            # The receiver was just made and has received nothing yet: swap its buffer.
            if self.body_rcv is not None:
                self.body_rcv.buf = _OverflowableBuffer(self.adj.inbuf_overflow)

    return SpoolingParser


def usable_spool_directory(directory: str | None) -> str | None:
    """``directory`` if spool files can be made there, else ``None`` (then ``$TMPDIR`` is used)."""
    if not directory:
        return None
    try:
        os.makedirs(directory, 0o777, exist_ok=True)
        with open_spool(directory):
            pass
    except OSError as exc:
        log.warning("spooling request bodies in %s is not possible (%s): using %s", directory, exc,
                    tempfile.gettempdir())
        return None
    return directory


__all__ = ["SpoolFile", "open_spool", "spooling_parser", "usable_spool_directory"]
