"""A progress line for the operations commands: redrawn in place on a terminal, silent otherwise
(the summary lines are printed either way), without any dependency."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``update(phase, done, total)`` redraws ``phase: done/total`` at most 10 times a second when
    ``stream`` is a terminal; :meth:`done` ends the line. Does nothing when disabled."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._last = 0.0
        self._shown = False

    def update(self, phase: str, done: int, total: int | None = None, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if total:
            width = 30
            filled = min(width, width * done // total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"{phase}: [{bar}] {done}/{total}"
        else:
            line = f"{phase}: {done}"
        if extra:
            line += f" {extra}"
        self.stream.write("\r" + line[:200] + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
