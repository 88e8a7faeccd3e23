"""The ``faulty`` storage driver: a fake that wraps a real driver and injects errors and latency.

A real driver cannot fail a ``move`` or a ``commit`` on demand; this one can, which is what the tests
of the core's error paths need (zaqar ships its ``faulty_storage`` for the same reason). It is a plugin
like every driver, so a server can run on it too, selected from ``config.yml``::

    storage:
      faulty:
        driver: filesystem                    # the driver that does the real work
        options:                              # what would sit under storage.filesystem
          rootdirectory: /tmp/registry
        faults:
          - op: move                          # fail the 3rd move into the blob store, once
            path_contains: /blobs/
            after: 2
            times: 1
            error: storage
          - op: get_content                   # and slow every get_content down by 50 ms
            latency_ms: 50

A fault (:class:`Fault`) applies to the calls of one operation (``op``) whose path contains
``path_contains`` (for ``move``: either path). The first ``after`` such calls pass untouched; the next
``times`` calls (every one when ``times`` is absent) wait ``latency_ms`` and then fail with ``error``:
``storage`` (:class:`StorageError`, which clients see as 503 UNAVAILABLE), ``notfound``
(:class:`PathNotFoundError`) or ``none`` (latency only; the default when ``latency_ms`` is set).
With ``when: after`` the operation takes effect first and the error is raised afterwards: a reply lost
on the way back, the way a network store can fail.

Operations: ``get_content``, ``put_content``, ``reader`` (opening), ``writer`` (opening), ``write`` and
``commit`` (on a writer, matched against the writer's path), ``stat``, ``list``, ``move``, ``delete``
and ``walk``.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry.storage.driver import FileInfo, FileWriter, PathNotFoundError, StorageDriver, StorageError

T = TypeVar("T")

#: The operations a fault can target.
OPS = (
    "get_content", "put_content", "put_scratch", "reader", "writer", "write", "commit", "adopt", "stat", "list",
    "move", "move_scratch", "delete", "walk",
)
#: The errors a fault can raise (``none``: latency only).
ERRORS: Mapping[str, type[StorageError] | None] = {
    "storage": StorageError,
    "notfound": PathNotFoundError,
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
    "type": "object",
    "additionalProperties": False,
    "required": ["driver"],
    "properties": {
        "driver": {"type": "string", "minLength": 1, "description": "the storage driver that does the work"},
        "options": {"type": ["object", "null"], "description": "that driver's parameters"},
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
        return op == self.op and any(self.path_contains in p for p in paths)


@dataclasses.dataclass(frozen=True)
class Injection:
    """A record of one fault that fired."""

    op: str
    path: str
    error: str
    when: str
    latency_ms: int


class FaultyDriver(StorageDriver):
    """Delegates every operation to ``inner``, injecting the faults of ``rules`` on the way.

    Thread-safe: the counters of each rule are updated under a lock, so ``after``/``times`` windows
    are exact under concurrent calls. :attr:`injections` records the faults that fired (the last
    :data:`MAX_RECORDED`); with ``record=True``, :attr:`calls` records every call as ``(op, path)``
    (``move``: ``(op, source, dest)``).
    """

    name = "faulty"

    def __init__(
        self, inner: StorageDriver, rules: Iterable[Fault | Mapping[str, Any]] = (), *, record: bool = False
    ) -> None:
        self.inner = inner
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

    def _decide(self, op: str, paths: tuple[str, ...]) -> tuple[float, StorageError | None, StorageError | None]:
        delay = 0.0
        before: StorageError | None = None
        after: StorageError | None = None
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
                self.injections.append(Injection(op, paths[0], str(rule.error), rule.when, rule.latency_ms))
                cls = ERRORS[str(rule.error)]
                if cls is None:
                    continue
                exc = cls(f"injected fault: {op} failed ({rule.when} taking effect)", path=paths[0], driver=self.name)
                if rule.when == "before":
                    before = before or exc
                else:
                    after = after or exc
            if before is not None or after is not None:
                self._failed += 1
        return delay, before, after

    def _call(self, op: str, paths: tuple[str, ...], fn: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
        delay, before, after = self._decide(op, paths)
        if delay:
            time.sleep(delay)
        if before is not None:
            raise before
        result = fn()
        if after is not None:
            if undo is not None:  # a reader or writer the caller will never see: release it
                undo(result)
            raise after
        return result

    # -- the driver contract ----------------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        return self._call("get_content", (path,), lambda: self.inner.get_content(path))

    def put_content(self, path: str, content: bytes) -> None:
        self._call("put_content", (path,), lambda: self.inner.put_content(path, content))

    def put_scratch(self, path: str, content: bytes) -> None:
        self._call("put_scratch", (path,), lambda: self.inner.put_scratch(path, content))

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        return self._call("reader", (path,), lambda: self.inner.reader(path, offset), undo=lambda f: f.close())

    def writer(self, path: str, append: bool = False) -> FileWriter:
        inner = self._call("writer", (path,), lambda: self.inner.writer(path, append), undo=lambda w: w.close())
        return _FaultyWriter(self, path, inner)

    def stat(self, path: str) -> FileInfo:
        return self._call("stat", (path,), lambda: self.inner.stat(path))

    def list(self, path: str) -> list[str]:
        return self._call("list", (path,), lambda: self.inner.list(path))

    def move(self, source: str, dest: str) -> None:
        self._call("move", (source, dest), lambda: self.inner.move(source, dest))

    def move_scratch(self, source: str, dest: str) -> None:
        self._call("move_scratch", (source, dest), lambda: self.inner.move_scratch(source, dest))

    def spool_directory(self) -> str | None:
        return self.inner.spool_directory()

    def delete(self, path: str) -> None:
        self._call("delete", (path,), lambda: self.inner.delete(path))

    def walk(self, path: str) -> Iterator[FileInfo]:
        return self._call("walk", (path,), lambda: iter(self.inner.walk(path)))

    def redirect_url(self, method: str, path: str) -> str | None:
        return self.inner.redirect_url(method, path)

    def close(self) -> None:
        self.inner.close()


class _FaultyWriter(FileWriter):
    def __init__(self, driver: FaultyDriver, path: str, inner: FileWriter) -> None:
        self._driver, self._path, self._inner = driver, path, inner

    def write(self, data: bytes) -> int:
        return self._driver._call("write", (self._path,), lambda: self._inner.write(data))

    @property
    def size(self) -> int:
        return self._inner.size

    def commit(self) -> None:
        self._driver._call("commit", (self._path,), self._inner.commit)

    def commit_scratch(self) -> None:
        self._driver._call("commit", (self._path,), self._inner.commit_scratch)

    def adopt(self, file: BinaryIO) -> bool:
        return self._driver._call("adopt", (self._path,), lambda: self._inner.adopt(file))

    def cancel(self) -> None:
        self._inner.cancel()

    def close(self) -> None:
        self._inner.close()


def create_driver(params: Mapping[str, Any] | None) -> FaultyDriver:
    """The descriptor's factory: build the inner driver by name, the way the registry would."""
    from registry.testing.drivers import create_driver as create_inner

    params = dict(params or {})
    inner = create_inner(str(params["driver"]), params.get("options") or {})
    return FaultyDriver(inner, [Fault.from_mapping(item) for item in params.get("faults") or ()])


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="faulty",
            factory=create_driver,
            schema=SCHEMA,
            description="A fake for tests: another driver with injected errors and latency.",
        )
    ]


__all__ = ["ERRORS", "OPS", "Fault", "FaultyDriver", "Injection", "create_driver"]
