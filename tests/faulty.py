"""The ``faulty`` storage middleware: a fake that wraps a real driver and injects errors and latency.

A real driver cannot fail a ``move`` or a ``commit`` on demand, nor time out or throttle on demand;
this one can, which is what the tests of the core's error paths need (zaqar keeps its
``faulty_storage`` for the same reason). It lives in the test tree, not in the registry's
distribution: users never see it. A test registers this module as a plugin object and names it in
the config::

    pm = create_plugin_manager(plugins=[tests.faulty])

    middleware:
      storage:
        - name: faulty
          options:
            faults:
              - op: move                      # fail the 3rd move into the blob store, once
                path_contains: /blobs/
                after: 2
                times: 1
                error: unavailable
              - op: get_content               # and slow every get_content down by 50 ms
                latency_ms: 50

or wraps a driver directly: ``FaultyDriver(inner, rules)``.

A fault (:class:`Fault`) applies to the calls of one operation (``op``) whose path contains
``path_contains`` (for ``move``: either path). The first ``after`` such calls pass untouched; the next
``times`` calls (every one when ``times`` is absent) wait ``latency_ms`` and then fail with ``error``
(see :data:`ERRORS`: ``storage``, a plain :class:`StorageError`; ``unavailable`` and ``throttled``, the
backend's transient failures; ``bug``, an exception of no storage type, as a driver bug raises;
``notfound``; ``none``, latency only, the default when ``latency_ms`` is set). With ``when: after`` the
operation takes effect first and the error is raised afterwards: a reply lost on the way back, the way
a network store can fail.

Operations are the methods of the driver contract and of its writers, by name (:data:`OPS`), so the
wrapper follows the contract as it changes; a writer's methods match against the writer's path.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from registry import hookimpl
from registry.storage.driver import (
    FileWriter,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    StorageThrottledError,
    StorageUnavailableError,
)
from registry.storage.middleware import MiddlewareDescriptor, StorageMiddleware, contract_members

T = TypeVar("T")


class DriverBug(RuntimeError):
    """What a ``bug`` fault raises: an exception of no storage type, as a driver with a bug raises."""


#: Operations never faulted: releasing resources (a test could not clean up after itself).
UNFAULTED = frozenset({"close", "cancel"})
#: Writer operations recorded under another name (one rule for both ways of committing).
ALIASES = {"commit_scratch": "commit"}
_DRIVER_OPS = [a for a, is_method in contract_members(StorageDriver).items() if is_method and a not in UNFAULTED]
_WRITER_OPS = [a for a, is_method in contract_members(FileWriter).items() if is_method and a not in UNFAULTED]
#: The operations a fault can target: the contract's methods, the driver's then its writers'.
OPS = tuple(dict.fromkeys([*_DRIVER_OPS, *(ALIASES.get(a, a) for a in _WRITER_OPS)]))
#: The errors a fault can raise (``none``: latency only).
ERRORS: Mapping[str, Callable[..., BaseException] | None] = {
    "storage": StorageError,
    "unavailable": StorageUnavailableError,
    "throttled": StorageThrottledError,
    "notfound": PathNotFoundError,
    "bug": lambda message, **_: DriverBug(message),
    "none": None,
}
WHEN = ("before", "after")
#: How many injections :attr:`FaultyDriver.injections` remembers (a server may run on this for long).
MAX_RECORDED = 10_000

FAULT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["op"],
    "properties": {
        "op": {"enum": list(OPS)},
        "path_contains": {"type": "string"},
        "after": {"type": "integer", "minimum": 0},
        "times": {"type": ["integer", "null"], "minimum": 1},
        "error": {"enum": list(ERRORS)},
        "latency_ms": {"type": "integer", "minimum": 0, "maximum": 600000},
        "when": {"enum": list(WHEN)},
    },
}

SCHEMA: Mapping[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "properties": {
        "faults": {"type": ["array", "null"], "items": FAULT_SCHEMA},
    },
}


@dataclasses.dataclass
class Fault:
    """One injection rule; ``seen`` and ``fired`` count the matching calls and the injections."""

    op: str
    path_contains: str = ""
    after: int = 0
    times: int | None = None
    error: str | None = None
    latency_ms: int = 0
    when: str = "before"
    seen: int = dataclasses.field(default=0, compare=False)
    fired: int = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operation {self.op!r} (one of {', '.join(OPS)})")
        if self.error is None:
            self.error = "none" if self.latency_ms else "storage"
        if self.error not in ERRORS:
            raise ValueError(f"unknown error {self.error!r} (one of {', '.join(ERRORS)})")
        if self.when not in WHEN:
            raise ValueError(f"when must be 'before' or 'after', not {self.when!r}")
        if self.after < 0 or (self.times is not None and self.times < 1) or self.latency_ms < 0:
            raise ValueError("after and latency_ms must be >= 0, times >= 1")

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> Fault:
        """Build a fault from its config form (the keys of :data:`FAULT_SCHEMA`)."""
        known = {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("seen", "fired")}
        unknown = set(item) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        return cls(**dict(item))

    @property
    def active(self) -> bool:
        """Whether the fault may still fire."""
        return self.times is None or self.fired < self.times

    def _matches(self, op: str, paths: tuple[str, ...]) -> bool:
        if op != self.op:
            return False
        # An operation without a path (spool_directory) matches only a rule without a path filter.
        return any(self.path_contains in p for p in paths) if paths else not self.path_contains


@dataclasses.dataclass(frozen=True)
class Injection:
    """A record of one fault that fired."""

    op: str
    path: str
    error: str
    when: str
    latency_ms: int


def _paths(args: tuple[Any, ...]) -> tuple[str, ...]:
    # Storage paths are the arguments that start with "/": redirect_url's method does not, content
    # is bytes, offsets and flags are not strings.
    return tuple(a for a in args if isinstance(a, str) and a.startswith("/"))


class FaultyDriver(StorageMiddleware):
    """Delegates every operation to ``inner``, injecting the faults of ``rules`` on the way.

    Thread-safe: the counters of each rule are updated under a lock, so ``after``/``times`` windows
    are exact under concurrent calls. :attr:`injections` records the faults that fired (the last
    :data:`MAX_RECORDED`); with ``record=True``, :attr:`calls` records every call as ``(op, *paths)``.
    """

    name = "faulty"

    def __init__(
        self, inner: StorageDriver, rules: Iterable[Fault | Mapping[str, Any]] = (), *, record: bool = False
    ) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.rules: list[Fault] = []
        self.injections: collections.deque[Injection] = collections.deque(maxlen=MAX_RECORDED)
        self._failed = 0
        self.record = record
        self.calls: list[tuple[str, ...]] = []
        for rule in rules:
            self.add(rule)

    def __repr__(self) -> str:
        return f"FaultyDriver({self.inner!r}, {len(self.rules)} rules)"

    # -- the rules --------------------------------------------------------------------------------

    def add(self, rule: Fault | Mapping[str, Any] | None = None, **kwargs: Any) -> Fault:
        """Add a rule (a :class:`Fault`, its mapping form, or its fields as keywords); returns it."""
        fault = rule if isinstance(rule, Fault) else Fault.from_mapping({**dict(rule or {}), **kwargs})
        with self._lock:
            self.rules.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every rule: the storage behaves as ``inner`` from now on (injections are kept)."""
        with self._lock:
            self.rules.clear()

    @property
    def injected(self) -> int:
        """How many calls failed because of a rule (latency-only rules do not count)."""
        return self._failed

    def _decide(
        self, op: str, paths: tuple[str, ...]
    ) -> tuple[float, BaseException | None, BaseException | None]:
        delay = 0.0
        before: BaseException | None = None
        after: BaseException | None = None
        with self._lock:
            if self.record:
                self.calls.append((op, *paths))
            for rule in self.rules:
                if not rule._matches(op, paths):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after or not rule.active:
                    continue
                rule.fired += 1
                delay += rule.latency_ms / 1000.0
                where = paths[0] if paths else ""
                self.injections.append(Injection(op, where, str(rule.error), rule.when, rule.latency_ms))
                make = ERRORS[str(rule.error)]
                if make is None:
                    continue
                exc = make(f"injected fault: {op} failed ({rule.when} taking effect)", path=where, driver=self.name)
                if rule.when == "before":
                    before = before or exc
                else:
                    after = after or exc
            if before is not None or after is not None:
                self._failed += 1
        return delay, before, after

    def _call(self, op: str, paths: tuple[str, ...], fn: Callable[[], T]) -> T:
        delay, before, after = self._decide(op, paths)
        if delay:
            time.sleep(delay)
        if before is not None:
            raise before
        result = fn()
        if after is not None:
            close = getattr(result, "close", None)
            if callable(close):  # a reader or writer the caller will never see: release it
                close()
            raise after
        return result


class _FaultyWriter(FileWriter):
    """A writer of a :class:`FaultyDriver`: the contract's writer methods, faulted by name."""

    def __init__(self, driver: FaultyDriver, path: str, inner: FileWriter) -> None:
        self._driver, self._path, self.inner = driver, path, inner


def _faulty_method(op: str, alias: str | None = None) -> Callable[..., Any]:
    name = alias or op

    def method(self: FaultyDriver, *args: Any, **kwargs: Any) -> Any:
        result = self._call(name, _paths(args), lambda: getattr(self.inner, op)(*args, **kwargs))
        if isinstance(result, FileWriter):
            return _FaultyWriter(self, _paths(args)[0], result)
        return result

    method.__name__ = method.__qualname__ = op
    return method


def _faulty_writer_method(op: str) -> Callable[..., Any]:
    name = ALIASES.get(op, op)

    def method(self: _FaultyWriter, *args: Any, **kwargs: Any) -> Any:
        return self._driver._call(name, (self._path,), lambda: getattr(self.inner, op)(*args, **kwargs))

    method.__name__ = method.__qualname__ = op
    return method


def _forward(attr: str, is_method: bool) -> Any:
    if is_method:
        return lambda self, *args, **kwargs: getattr(self.inner, attr)(*args, **kwargs)
    return property(lambda self: getattr(self.inner, attr))


# Made from the contracts themselves: an operation the contract gains is faultable at once, one it
# loses disappears from OPS, and nothing here names either.
for _op in _DRIVER_OPS:
    setattr(FaultyDriver, _op, _faulty_method(_op))
for _attr, _is_method in contract_members(FileWriter).items():
    setattr(_FaultyWriter, _attr, _faulty_writer_method(_attr) if _attr in _WRITER_OPS else _forward(_attr, _is_method))
abc.update_abstractmethods(_FaultyWriter)


def create_middleware(inner: StorageDriver, options: Mapping[str, Any]) -> FaultyDriver:
    """The descriptor's factory: ``inner`` with the faults of ``options["faults"]``."""
    return FaultyDriver(inner, [Fault.from_mapping(item) for item in (options or {}).get("faults") or ()])


@hookimpl
def registry_storage_middleware() -> list[MiddlewareDescriptor]:
    return [
        MiddlewareDescriptor(
            name="faulty",
            factory=create_middleware,
            schema=SCHEMA,
            description="A fake for tests: the storage below with injected errors and latency.",
        )
    ]


__all__ = ["ERRORS", "OPS", "DriverBug", "Fault", "FaultyDriver", "Injection", "create_middleware"]
