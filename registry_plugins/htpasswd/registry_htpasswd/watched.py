"""A file re-read when it changes, checked at most once per interval."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Larger files are refused: the whole file is read into memory on every change.
MAX_FILE_SIZE = 16 << 20


class WatchedFile(Generic[T]):
    """``value()`` is ``parse(text)`` of the file at ``path``, re-read when its modification time,
    size or inode change; the file is looked at (one ``stat``) at most every ``interval`` seconds.

    A file that cannot be read or parsed yields ``fallback`` (which must refuse everything: this
    guards access) and an error in the log, once per change; a later good version is picked up.

    :param name: what the file is, for the log (``htpasswd file``).
    """

    def __init__(self, path: str, parse: Callable[[str], T], fallback: T, *, name: str,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.name = name
        self._parse = parse
        self._fallback = fallback
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value: T = fallback
        self._checked = float("-inf")
        self.error: str | None = None
        self._load()

    def value(self) -> T:
        now = self._clock()
        if now - self._checked >= self._interval:
            with self._lock:
                if now - self._checked >= self._interval:
                    self._load()
                    self._checked = now
        return self._value

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError as exc:
            self._fail(("missing",), f"cannot read the {self.name} {self.path}: {exc.strerror}")
            return
        if stamp == self._stamp:
            return
        try:
            if st.st_size > MAX_FILE_SIZE:
                raise ValueError(f"larger than {MAX_FILE_SIZE} bytes")
            with open(self.path, encoding="utf-8") as f:
                text = f.read(MAX_FILE_SIZE + 1)
            value = self._parse(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._fail(stamp, f"cannot use the {self.name} {self.path}: {exc}")
            return
        self._stamp, self._value, self.error = stamp, value, None
        log.info("loaded the %s %s", self.name, self.path)

    def _fail(self, stamp: tuple, message: str) -> None:
        if stamp != self._stamp:
            log.error("%s; refusing every request it would allow until it is fixed", message)
        self._stamp, self._value, self.error = stamp, self._fallback, message  # type: ignore[assignment]
