"""One endpoint's durable queue: event bodies in a SQLite file, oldest first, bounded in bytes.

SQLite (the standard library's) in WAL mode with ``synchronous=FULL``: every :meth:`DiskQueue.put`
batch is one transaction, so one fsync per batch, and a committed batch survives a crash or a
restart. A row leaves the file only when its delivery succeeded (:meth:`DiskQueue.ack`), which
makes delivery at-least-once.

Overflow policy: the bodies kept are bounded by ``max_bytes``; a batch that does not fit first
drops the oldest queued events (counted in :attr:`DiskQueue.dropped`), so the queue keeps the
newest events; a single event larger than the bound is dropped itself.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

#: SQLite's WAL is truncated back to this at each checkpoint (it only grows past it within one).
WAL_LIMIT = 4 << 20


class DiskQueue:
    """A FIFO of ``(seq, body)`` in one SQLite file, safe to share between threads.

    :param path: the file (created with its directory); its ``-wal`` and ``-shm`` files sit next to it.
    :param max_bytes: the bound on the bodies kept.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        #: Events dropped by the overflow policy since this queue was opened.
        self.dropped = 0
        self._lock = threading.Lock()
        # One connection, used under the lock: the writer and the sender of one endpoint take turns
        # for a few milliseconds, and no request thread ever waits on it.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._db.execute("CREATE TABLE IF NOT EXISTS events "
                         "(seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)")
        count, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM events").fetchone()
        self._count, self._bytes = int(count), int(size)

    def __len__(self) -> int:
        return self._count

    @property
    def bytes(self) -> int:
        """The bodies' bytes now kept."""
        return self._bytes

    def put(self, bodies: Sequence[bytes]) -> None:
        """Append ``bodies`` in one transaction (one fsync), dropping the oldest to stay in bound."""
        keep = [b for b in bodies if len(b) <= self.max_bytes]
        self.dropped += len(bodies) - len(keep)
        total = sum(map(len, keep))
        while total > self.max_bytes:  # more in this batch than the whole bound: keep its newest
            total -= len(keep.pop(0))
            self.dropped += 1
        if not keep:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                excess = self._bytes + total - self.max_bytes
                gone = 0
                if excess > 0:
                    gone, freed = self._drop_oldest(excess)
                    self._bytes -= freed
                db.executemany("INSERT INTO events (body) VALUES (?)", [(b,) for b in keep])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count += len(keep) - gone
            self._bytes += total
            self.dropped += gone

    def _drop_oldest(self, excess: int) -> tuple[int, int]:
        freed, last, gone = 0, None, 0
        for seq, size in self._db.execute("SELECT seq, length(body) FROM events ORDER BY seq"):
            freed += size
            last = seq
            gone += 1
            if freed >= excess:
                break
        if last is not None:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (last,))
        return gone, freed

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` events, left in the queue."""
        with self._lock:
            return [(int(s), bytes(b)) for s, b in
                    self._db.execute("SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,))]

    def ack(self, seqs: Sequence[int]) -> None:
        """Remove delivered events (those the overflow policy already dropped are skipped)."""
        if not seqs:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                lo, hi = min(seqs), max(seqs)
                count, size = db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM events "
                                         "WHERE seq BETWEEN ? AND ?", (lo, hi)).fetchone()
                db.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (lo, hi))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count -= int(count)
            self._bytes -= int(size)
            if self._count == 0:
                # Give the pages back: a drained queue should not keep its peak size on disk.
                db.execute("PRAGMA incremental_vacuum").fetchall()  # one page per step: step them all
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def disk_usage(self) -> int:
        """Bytes of the queue's files (the database, its WAL and shared-memory index)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()
