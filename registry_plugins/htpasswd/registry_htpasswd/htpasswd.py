"""htpasswd files of bcrypt hashes, checked in constant time."""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping

import bcrypt

log = logging.getLogger(__name__)

_BCRYPT_PREFIXES = ("$2y$", "$2a$", "$2b$")
#: bcrypt only ever reads this many bytes of a password (as htpasswd and Go's bcrypt do).
BCRYPT_MAX_PASSWORD = 72
#: The cost of the stand-in hash checked for unknown users when the file has none to copy.
DEFAULT_COST = 10


def _cost(hashed: bytes) -> int | None:
    try:
        return int(hashed[4:6])
    except ValueError:
        return None


def parse_htpasswd(text: str, *, source: str = "htpasswd") -> dict[str, bytes]:
    """``user → bcrypt hash`` from htpasswd lines (``user:hash``; blank lines and ``#`` comments
    skipped). A line without a bcrypt hash (MD5 ``$apr1$``, SHA1 ``{SHA}``, crypt, plain text) is
    refused, with a warning naming its line number and never its content."""
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        encoded = hashed.encode("utf-8", "replace")
        if not sep or not user or not hashed.startswith(_BCRYPT_PREFIXES) or len(encoded) != 60 \
                or _cost(encoded) is None:
            log.warning("%s line %d: not a user with a bcrypt hash (htpasswd -B); line ignored", source, number)
            continue
        if user in users:
            log.warning("%s line %d: a second line for one user; the first is used", source, number)
            continue
        users[user] = encoded
    return users


class Htpasswd:
    """The users of an htpasswd file, re-read when it changes (see :class:`WatchedFile`).

    :meth:`verify` costs one bcrypt check whether or not the user exists (an unknown user is
    checked against a stand-in hash of the file's most common cost), so timing tells nothing about
    which users exist. Recent successes are remembered for ``cache_seconds`` under a keyed hash of
    user and password (never the password), so that a push of many requests does not pay bcrypt's
    cost on each; the memory is cleared whenever the file changes.
    """

    def __init__(self, path: str, *, interval: float = 1.0, cache_seconds: float = 60.0,
                 cache_size: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        from registry_htpasswd.watched import WatchedFile

        self._file = WatchedFile(path, lambda t: parse_htpasswd(t, source=path), {}, name="htpasswd file",
                                 interval=interval, clock=clock)
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._cache_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._users: Mapping[str, bytes] | None = None
        self._dummy = b""

    @property
    def path(self) -> str:
        return self._file.path

    @property
    def error(self) -> str | None:
        """Why the file is not in use, or ``None``."""
        return self._file.error

    def _current(self) -> Mapping[str, bytes]:
        users = self._file.value()
        if users is not self._users:
            costs = collections.Counter(c for c in (_cost(h) for h in users.values()) if c is not None)
            cost = costs.most_common(1)[0][0] if costs else DEFAULT_COST
            dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(min(max(cost, 4), 31)))
            with self._lock:
                self._users, self._dummy = users, dummy
                self._cache.clear()
        return users

    def has_user(self, user: str) -> bool:
        """Whether ``user`` has a line in the file now (a refresh token outlives no removal)."""
        return user in self._current()

    def verify(self, user: str, password: str) -> bool:
        """Whether ``password`` is ``user``'s, in time that does not depend on whether ``user`` exists."""
        users = self._current()
        secret = password.encode("utf-8")[:BCRYPT_MAX_PASSWORD]
        key = hmac.new(self._cache_key, user.encode("utf-8") + b"\0" + secret, hashlib.sha256).digest()
        now = self._clock()
        with self._lock:
            expiry = self._cache.get(key)
            if expiry is not None and expiry > now:
                return True
            dummy = self._dummy
        hashed = users.get(user)
        try:
            ok = bcrypt.checkpw(secret, hashed if hashed is not None else dummy)
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                self._cache[key] = now + self._cache_seconds
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return ok


class FailureLimiter:
    """Failed logins per client address: more than ``limit`` within ``window`` seconds and the
    address is refused until the oldest failure is ``window`` old. At most ``max_addresses`` are
    tracked (the least recently failing are forgotten first), so a flood of addresses cannot
    exhaust memory."""

    def __init__(self, limit: int = 10, window: float = 60.0, *, max_addresses: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_addresses = limit, window, max_addresses
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, addr: str) -> float:
        """Seconds until ``addr`` may try again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(addr)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[addr]
                return 0.0
            if len(times) < self.limit:
                return 0.0
            return max(times[0] + self.window - now, 0.0)

    def failed(self, addr: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._failures.get(addr)
            if times is None:
                times = self._failures[addr] = collections.deque(maxlen=self.limit)
            times.append(now)
            self._failures.move_to_end(addr)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._failures.pop(addr, None)


