"""Sorted child names of large directories, cached and revalidated by one ``stat`` per use.

Why: a catalog page over 100,000 repositories in one directory must list and sort that directory,
~120 ms, while the page itself needs a hundred names. The names only change when the directory's
entries do, and that moves its modification time, so a cached listing is served only while a fresh
``stat`` of the directory shows the modification time (and size) it was listed with. Every process
sharing the storage keeps its own cache and sees the others' changes through that same ``stat``.

Modification times are coarse (ext4's tick with the kernel's clock; some file systems keep whole or
even two seconds), so two changes inside one tick leave the same time, and a listing taken between
them would look current after the second. A listing is therefore kept only when the directory's time,
read before listing, was more than :data:`SAFETY_MARGIN` old and is unchanged after the listing:
nothing changed during the listing, and any later change gets a later time. A directory is only known
to be large once listed, so its first listing is never kept (a ``stat`` before every small directory
would double the cost of a catalog page), its second may be. This assumes the storage's clock agrees
with ours within the margin (a network file system with a skewed server clock breaks it) and that
nobody sets a directory's time back to the very value it had. Drivers that give no time for a
directory (object stores) are never cached, nor are small directories, cheaper to list than to track.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable, Sequence

from registry.storage.driver import PathNotFoundError, StorageDriver

#: Seconds a directory's modification time must lie before a listing for the listing to be kept.
SAFETY_MARGIN = 2.0
#: Fewest entries a directory must have to be cached.
MIN_ENTRIES = 1000
#: Most directories remembered at once (least recently used go first); each may hold all its names.
MAX_DIRS = 8

_NEVER = object()  # the state of a directory whose driver gives it no modification time
_Entry = tuple[object, "list[str] | None"]


def child_names(driver: StorageDriver, path: str) -> list[str]:
    """Names (not paths) of the direct children of ``path``, sorted; raises :class:`PathNotFoundError`."""
    cut = len(path) + 1 if path != "/" else 1
    # Slicing off the known prefix and sorting in place: a third cheaper than rsplit + sorted().
    names = [child[cut:] for child in driver.list(path)]
    names.sort()
    return names


def contains(names: Sequence[str], name: str) -> bool:
    """Whether sorted ``names`` holds ``name``, without scanning all of them."""
    i = bisect.bisect_left(names, name)
    return i < len(names) and names[i] == name


class ListCache:
    """:func:`child_names` with a bounded LRU cache of large directories. Safe for many threads.

    A directory is first found large by listing it; from then on a ``stat`` precedes each use, and
    a listing is kept when that ``stat`` and one after the listing agree and are old enough, so the
    second listing of a large directory is the first one kept. Returned sequences are shared
    between callers and must not be modified.
    """

    def __init__(
        self,
        driver: StorageDriver,
        *,
        min_entries: int = MIN_ENTRIES,
        max_dirs: int = MAX_DIRS,
        margin: float = SAFETY_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.driver = driver
        self.min_entries = min_entries
        self.max_dirs = max_dirs
        self.margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        # path -> (state the names were listed at, names): names None marks a directory known to be
        # large whose listing could not be kept; state _NEVER one whose driver gives it no time.
        self._dirs: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def names(self, path: str) -> Sequence[str]:
        """Sorted child names of directory ``path``, as they were at some moment during this call;
        raises :class:`PathNotFoundError`."""
        with self._lock:
            entry = self._dirs.get(path)
            if entry is not None:
                self._dirs.move_to_end(path)
        if entry is None or entry[0] is _NEVER:
            # Unknown (most directories are small: a stat before each would double their cost) or
            # never cacheable: just list, and remember a large directory so it is stat'ed next time.
            names = child_names(self.driver, path)
            if entry is None and len(names) >= self.min_entries:
                self._replace(path, None, (None, None))
            return names
        started = self._clock()  # before the stat: see the module docstring
        try:
            before = self.driver.stat(path)
        except PathNotFoundError:
            self._replace(path, entry, None)
            raise
        state = (before.mod_time, before.size)
        if entry[1] is not None and state == entry[0]:
            return entry[1]
        names = child_names(self.driver, path)
        if len(names) < self.min_entries:
            self._replace(path, entry, None)
        elif before.mod_time is None:
            self._replace(path, entry, (_NEVER, None))
        elif before.mod_time.timestamp() < started - self.margin and self._state(path) == state:
            # Old enough that any change after `started` moves it, so the next use's stat catches
            # that; unmoved across the listing, or it would be kept only to be dropped at that use.
            self._keep(path, (state, names))
        else:
            self._replace(path, entry, (None, None))  # changed lately or meanwhile: list again next time
        return names

    def _state(self, path: str) -> tuple[object, int] | None:
        try:
            info = self.driver.stat(path)
        except PathNotFoundError:
            return None
        return info.mod_time, info.size

    def _keep(self, path: str, entry: _Entry) -> None:
        # Whatever another thread stored meanwhile was as valid when listed: the latest write wins.
        with self._lock:
            self._keep_locked(path, entry)

    def _replace(self, path: str, old: _Entry | None, new: _Entry | None) -> None:
        """Replace ``old`` by ``new`` (``None``: remove), unless another thread changed it first."""
        with self._lock:
            if self._dirs.get(path) is not old:
                return  # another thread's newer listing: keep it
            if new is None:
                self._dirs.pop(path, None)
            else:
                self._keep_locked(path, new)

    def _keep_locked(self, path: str, entry: _Entry) -> None:
        self._dirs[path] = entry
        self._dirs.move_to_end(path)
        while len(self._dirs) > self.max_dirs:
            self._dirs.popitem(last=False)
