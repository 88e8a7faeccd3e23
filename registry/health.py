"""Health checks (``registry_health_checks``) and the built-in storage check (``health.storagedriver``).

Nothing here imports the web framework: :mod:`registry.app` serves :func:`health_status` at
``/debug/health`` on the debug listener.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from registry.config import parse_duration
from registry.plugins import options_of

log = logging.getLogger(__name__)

#: Distribution's defaults for ``health.storagedriver``.
DEFAULT_INTERVAL = 10.0
DEFAULT_THRESHOLD = 1


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """One named check: ``check()`` returns when healthy and raises when not (its text is shown).

    :param name: the key under which ``/debug/health`` reports a failure.
    :param check: called on every ``/debug/health`` request and every API request: keep it to
        microseconds, or use :class:`PeriodicCheck`.
    """

    name: str
    check: Callable[[], Any]


class Unhealthy(Exception):
    """Raised by :class:`PeriodicCheck` once its probe has failed ``threshold`` times in a row."""


class PeriodicCheck:
    """Runs ``probe`` every ``interval`` seconds in a daemon thread; unhealthy after ``threshold``
    consecutive failures, healthy again after one success (as Distribution's threshold checks).

    The app starts and stops every ``PeriodicCheck`` declared as a check (``app.startup()``,
    ``app.shutdown()``); calling the object is the check.
    """

    def __init__(self, probe: Callable[[], Any], *, interval: float = DEFAULT_INTERVAL,
                 threshold: int = DEFAULT_THRESHOLD, name: str = "health-check") -> None:
        self.probe = probe
        self.interval = max(interval, 0.01)
        self.threshold = max(threshold, 1)
        self.name = name
        self._failures = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> None:
        error = self._error
        if error is not None:
            raise Unhealthy(error)

    def run_once(self) -> None:
        """Probe once and update the state (the thread's loop; tests call it directly)."""
        try:
            self.probe()
        except Exception as exc:
            self._failures += 1
            if self._failures >= self.threshold:
                self._error = str(exc) or type(exc).__name__
            return
        self._failures = 0
        self._error = None

    def start(self) -> None:
        """Probe now, then every ``interval``, until :meth:`stop`; a second call does nothing."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while True:
                self.run_once()
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for a probe in progress."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)


def storage_check(driver: Any, config: Mapping[str, Any]) -> HealthCheck | None:
    """The ``health.storagedriver`` check, if enabled: ``stat("/")`` on the driver (a missing root
    is healthy: an empty registry), every ``interval`` (10s), unhealthy after ``threshold`` (1)
    consecutive failures. Named ``storagedriver_<driver>`` as in Distribution."""
    from registry.storage.driver import PathNotFoundError

    options = options_of(config, "health.storagedriver")
    if options.get("enabled") is not True:
        return None
    interval = parse_duration(options["interval"]) if options.get("interval") is not None else DEFAULT_INTERVAL
    threshold = options.get("threshold") or DEFAULT_THRESHOLD

    def probe() -> None:
        try:
            driver.stat("/")
        except PathNotFoundError:
            pass

    name = f"storagedriver_{getattr(driver, 'name', '') or 'storage'}"
    return HealthCheck(name, PeriodicCheck(probe, interval=interval, threshold=int(threshold), name=name))


def health_status(checks: Sequence[HealthCheck]) -> dict[str, str]:
    """Run every check on its own; the failures by name (empty when healthy)."""
    failed: dict[str, str] = {}
    for check in checks:
        try:
            check.check()
        except Exception as exc:
            failed[check.name] = str(exc) or type(exc).__name__
    return failed


__all__ = ["HealthCheck", "PeriodicCheck", "Unhealthy", "health_status", "storage_check"]
