"""One process per queue directory: an exclusive ``flock`` on ``<directory>/.lock``, held from
configuration to shutdown, so two processes never send (and delete) from one queue file."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from registry.config import ConfigError

_held: dict[Path, int] = {}
_lock = threading.Lock()


def acquire(directory: Path) -> None:
    """Hold ``directory``'s lock for this process (again is a no-op).

    :raises ConfigError: when another process holds it, naming its pid.
    """
    directory = directory.resolve()
    with _lock:
        if directory in _held:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError([f"notifications.queue.directory: cannot use {directory}: {exc.strerror}"]) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise ConfigError([f"notifications.queue.directory: {directory} is in use by another registry "
                               f"process (pid {other}); each process needs its own"]) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[directory] = fd


def release(directory: Path) -> None:
    with _lock:
        fd = _held.pop(directory.resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
