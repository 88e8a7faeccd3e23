"""Upload purging: delete upload sessions abandoned longer than ``age`` (Distribution's
``storage.maintenance.uploadpurging``), so failed pushes do not fill the disk."""

from __future__ import annotations

import datetime
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from registry.config import parse_duration
from registry.plugins import options_of
from registry.storage import paths
from registry.storage.driver import PathNotFoundError, StorageDriver, StorageError

log = logging.getLogger(__name__)

DEFAULT_AGE = 168 * 3600.0
DEFAULT_INTERVAL = 24 * 3600.0


def _started(driver: StorageDriver, upload_dir: str) -> datetime.datetime | None:
    """When the upload began: its ``startedat`` file (as Distribution writes it), else the data's mtime."""
    try:
        raw = driver.get_content(f"{upload_dir}/startedat").decode("ascii", "replace").strip()
        text = raw.replace("Z", "+00:00")
        if "." in text:  # Go writes nanoseconds; Python parses at most microseconds
            head, _, tail = text.partition(".")
            digits = "".join(c for c in tail if c.isdigit())
            text = f"{head}.{digits[:6]}{tail[len(digits):]}"
        return datetime.datetime.fromisoformat(text)
    except (PathNotFoundError, ValueError):
        pass
    try:
        return driver.stat(f"{upload_dir}/data").mod_time
    except PathNotFoundError:
        return None


def _upload_dirs(driver: StorageDriver, path: str) -> Iterator[str]:
    """Every ``_uploads/<id>`` below ``path``, found lazily: only repository directories and their
    ``_uploads`` are listed, never ``_layers`` or ``_manifests`` (which dwarf everything else)."""
    try:
        children = driver.list(path)
    except PathNotFoundError:
        return
    for child in sorted(children):
        leaf = child.rsplit("/", 1)[1]
        if leaf == "_uploads":
            try:
                yield from sorted(driver.list(child))
            except PathNotFoundError:
                continue
        elif not leaf.startswith("_"):
            yield from _upload_dirs(driver, child)


def purge_uploads(driver: StorageDriver, age: float, *, dry_run: bool = False,
                  now: datetime.datetime | None = None) -> list[str]:
    """Delete every ``_uploads/<id>`` directory older than ``age`` seconds; returns their paths."""
    now = now or datetime.datetime.now(datetime.UTC)
    cutoff = now - datetime.timedelta(seconds=age)
    purged = []
    for upload_dir in _upload_dirs(driver, paths.REPOSITORIES):
        started = _started(driver, upload_dir)
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=datetime.UTC)
        if started is None or started >= cutoff:
            continue
        purged.append(upload_dir)
        if not dry_run:
            try:
                driver.delete(upload_dir)
            except PathNotFoundError:
                pass  # finished or purged by another process meanwhile
    return purged


class Purger:
    """Runs :func:`purge_uploads` every ``interval`` in a daemon thread, until :meth:`stop`.

    As Distribution: a random delay before the first run (up to an hour, or the interval), so a
    restart, or many processes started together, do not all walk the storage at once.
    """

    def __init__(self, driver: StorageDriver, *, age: float = DEFAULT_AGE, interval: float = DEFAULT_INTERVAL,
                 dry_run: bool = False, first_delay: float | None = None) -> None:
        self.driver, self.age, self.interval, self.dry_run = driver, age, interval, dry_run
        self.first_delay = random.uniform(0, min(interval, 3600.0)) if first_delay is None else first_delay
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        if self._stop.wait(self.first_delay):
            return
        while True:
            try:
                purged = purge_uploads(self.driver, self.age, dry_run=self.dry_run)
                if purged:
                    log.info("upload purging %s %d abandoned uploads",
                             "found" if self.dry_run else "removed", len(purged))
            except StorageError as exc:
                log.warning("upload purging failed: %s", exc)
            self.runs += 1
            if self._stop.wait(max(self.interval, 60.0)):
                return

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; a second call does nothing."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="upload-purger", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for a purge in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("upload purging still running after %gs; leaving it to exit with the process", timeout)


def purger_for(driver: StorageDriver, config: Mapping[str, Any]) -> Purger | None:
    """The :class:`Purger` that ``storage.maintenance.uploadpurging`` asks for (not started), or
    ``None`` when purging is disabled."""
    options = options_of(config, "storage.maintenance.uploadpurging")
    if options.get("enabled", True) is False:
        return None
    age = parse_duration(options["age"]) if options.get("age") is not None else DEFAULT_AGE
    interval = parse_duration(options["interval"]) if options.get("interval") is not None else DEFAULT_INTERVAL
    return Purger(driver, age=age, interval=interval, dry_run=options.get("dryrun") is True)
