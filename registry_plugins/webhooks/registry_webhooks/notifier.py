"""Delivery: per endpoint, an inbox the request threads fill, a writer thread that moves it to the
endpoint's :class:`~registry_webhooks.queue.DiskQueue`, and a sender thread that POSTs envelopes.

A request thread only filters the event, encodes it once and appends it to each endpoint's inbox
(a bounded deque): it never touches the disk or the network. Each endpoint has its own threads and
file, so a slow or dead endpoint delays nothing but itself.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from registry import hookimpl
from registry.config import ConfigError, default_data_dir, parse_duration
from registry_webhooks.queue import DiskQueue

log = logging.getLogger(__name__)

#: The envelope's media type, the Content-Type of every delivery (Distribution's ``EventsMediaType``).
ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
#: The HMAC header, when an endpoint has a ``secret``: ``sha256=<hex digest of the body>``.
SIGNATURE_HEADER = "X-Registry-Signature-256"
USER_AGENT = "registry-webhooks/0.1"

#: Events waiting in memory for the writer, per endpoint; past this (the disk stalled for long),
#: new events are dropped and counted, so a request never waits and memory stays bounded.
INBOX_MAX = 10_000
#: The pause between retries below the threshold grows by this per failure (Distribution retries at once).
RETRY_STEP = 0.05
#: A response body is read (and discarded) up to this, so a keep-alive connection could be reused.
MAX_RESPONSE = 64 << 10

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_BATCH = 100
DEFAULT_DRAIN = 5.0


@dataclasses.dataclass(frozen=True)
class EndpointConfig:
    """One entry of ``notifications.endpoints``, with Distribution's defaults where it has them."""

    name: str
    url: str
    headers: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    timeout: float = 1.0
    threshold: int = 10
    backoff: float = 1.0
    maxbackoff: float = 300.0
    ignored_media_types: frozenset[str] = frozenset()
    ignored_actions: frozenset[str] = frozenset()
    secret: bytes | None = None

    def wants(self, event: Mapping[str, Any]) -> bool:
        """Whether the ignore rules let ``event`` through to this endpoint."""
        if event.get("action") in self.ignored_actions:
            return False
        media_type = (event.get("target") or {}).get("mediaType")
        return media_type is None or media_type not in self.ignored_media_types

    def delay(self, failures: int) -> float:
        """The pause after ``failures`` consecutive failed deliveries: short below ``threshold``,
        then ``backoff`` doubling per further failure, capped at ``maxbackoff``; never under
        :data:`RETRY_STEP`, so that ``backoff: 0`` cannot spin on a dead endpoint."""
        if failures < self.threshold:
            return min(RETRY_STEP * failures, max(self.backoff, RETRY_STEP))
        return max(min(self.backoff * 2 ** min(failures - self.threshold, 32), self.maxbackoff), RETRY_STEP)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The ``notifications`` section as this plugin reads it."""

    endpoints: tuple[EndpointConfig, ...]
    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    drain_timeout: float = DEFAULT_DRAIN


def _duration(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError([f"{where}: {exc}"]) from None
    if seconds < 0:
        raise ConfigError([f"{where}: must not be negative"])
    return seconds


def parse_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """:class:`Settings` from the whole configuration; disabled endpoints are left out.

    :raises ConfigError: for a bad duration or URL, or two endpoints of one name.
    """
    section = config.get("notifications") or {}
    queue = section.get("queue") or {}
    endpoints: list[EndpointConfig] = []
    errors: list[str] = []
    for i, raw in enumerate(section.get("endpoints") or ()):
        where = f"notifications.endpoints[{i}]"
        if raw.get("disabled"):
            continue
        url = str(raw.get("url", ""))
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            errors.append(f"{where}.url: {url!r} is not an http or https URL")
            continue
        ignore = raw.get("ignore") or {}
        secret = raw.get("secret")
        endpoints.append(EndpointConfig(
            name=str(raw["name"]),
            url=url,
            headers={str(k): [str(v) for v in vs] for k, vs in (raw.get("headers") or {}).items()},
            timeout=_duration(raw.get("timeout"), f"{where}.timeout", 1.0) or 1.0,
            threshold=int(raw.get("threshold", 10)),
            backoff=_duration(raw.get("backoff"), f"{where}.backoff", 1.0),
            maxbackoff=_duration(raw.get("maxbackoff"), f"{where}.maxbackoff", 300.0),
            ignored_media_types=frozenset([*(raw.get("ignoredmediatypes") or ()), *(ignore.get("mediatypes") or ())]),
            ignored_actions=frozenset(ignore.get("actions") or ()),
            secret=secret.encode() if secret else None,
        ))
    names = [e.name for e in endpoints]
    errors += [f"notifications.endpoints: the name {n!r} is used twice"
               for n in sorted(set(names)) if names.count(n) > 1]
    if errors:
        raise ConfigError(errors)
    directory = queue.get("directory")
    env = environ if environ is not None else os.environ
    return Settings(
        endpoints=tuple(endpoints),
        directory=Path(directory) if directory else default_data_dir(env) / "webhooks",
        max_bytes=int(queue.get("maxbytes", DEFAULT_MAX_BYTES)),
        max_batch=int(queue.get("maxbatch", DEFAULT_MAX_BATCH)),
        drain_timeout=_duration(queue.get("draintimeout"), "notifications.queue.draintimeout", DEFAULT_DRAIN),
    )


def queue_file(directory: Path, name: str) -> Path:
    """The endpoint's queue file: a name made safe for a path (any character outside ``[A-Za-z0-9_-]``
    becomes ``_``), then a hash of the real name, so two names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40]
    return directory / f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.sqlite3"


def redact(url: str) -> str:
    """``url`` without its password, for logs and metrics."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:xxxxx@{host}"))


def envelope(bodies: Sequence[bytes]) -> bytes:
    """``{"events": [...]}`` around already encoded events."""
    return b'{"events":[' + b",".join(bodies) + b"]}"


@dataclasses.dataclass
class Metrics:
    """One endpoint's counters since start-up (``pending`` is what is queued now, on disk or about to be)."""

    pending: int = 0
    delivered: int = 0
    failed: int = 0
    retries: int = 0
    dropped: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)


class Endpoint:
    """One endpoint's inbox, queue, writer and sender."""

    def __init__(self, config: EndpointConfig, settings: Settings) -> None:
        self.config = config
        self.max_batch = settings.max_batch
        self.queue = DiskQueue(queue_file(settings.directory, config.name), settings.max_bytes)
        self.inbox: collections.deque[bytes] = collections.deque()
        self.inbox_dropped = 0
        self.metrics = Metrics()
        self._wake_writer = threading.Event()
        self._wake_sender = threading.Event()
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._writer = threading.Thread(target=self._write_loop, name=f"webhooks-writer-{config.name}", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name=f"webhooks-sender-{config.name}", daemon=True)
        parts = urllib.parse.urlsplit(config.url)
        self._https = parts.scheme.lower() == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Credentials in the URL are sent as Basic auth, as Go's client does, and never shown.
        self._auth: str | None = None
        if parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        self.shown_url = redact(config.url)
        self._ssl = ssl.create_default_context() if self._https else None

    # --- the request thread's side -------------------------------------------------------------

    def offer(self, body: bytes) -> None:
        """Queue ``body`` for the writer; never blocks (a full inbox drops it, counted)."""
        if len(self.inbox) >= INBOX_MAX:
            self.inbox_dropped += 1
            return
        self.inbox.append(body)
        self._wake_writer.set()

    # --- threads ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()
        self._sender.start()

    def stop(self, drain_until: float) -> None:
        """Ask both threads to stop: the writer after persisting the inbox, the sender once the queue
        is empty, a delivery fails, or ``drain_until`` (a :func:`time.monotonic` time) has passed."""
        self._drain_until = drain_until
        self._stopping.set()
        self._wake_writer.set()
        self._wake_sender.set()

    def join(self, deadline: float) -> None:
        self._writer.join(max(deadline - time.monotonic(), 0) + 1.0)  # the writer only needs the disk
        self._sender.join(max(deadline - time.monotonic(), 0) + 0.1)
        if self._sender.is_alive():
            log.warning("webhooks: endpoint %s: a delivery was still in flight at shutdown; it stays queued",
                        self.config.name)
        if not self._writer.is_alive() and not self._sender.is_alive():
            self.queue.close()

    def _flush(self) -> None:
        while self.inbox:
            batch: list[bytes] = []
            while self.inbox and len(batch) < 1000:
                batch.append(self.inbox.popleft())
            try:
                self.queue.put(batch)
            except Exception:
                log.exception("webhooks: endpoint %s: could not queue %d events on disk", self.config.name, len(batch))
                continue
            self._wake_sender.set()

    def _write_loop(self) -> None:
        while True:
            self._wake_writer.wait(1.0)
            self._wake_writer.clear()
            self._flush()
            if self._stopping.is_set():
                self._flush()
                return

    def _send_loop(self) -> None:
        cfg = self.config
        failures = 0
        while True:
            stopping = self._stopping.is_set()
            if stopping and time.monotonic() >= self._drain_until:
                return
            try:
                batch = self.queue.peek(self.max_batch)
            except Exception:
                log.exception("webhooks: endpoint %s: could not read the queue", cfg.name)
                batch = []
            if not batch:
                if stopping and not self._writer.is_alive():
                    return
                self._wake_sender.wait(1.0 if not stopping else 0.05)
                self._wake_sender.clear()
                continue
            if failures:
                self.metrics.retries += 1
            error = self._post(envelope([b for _, b in batch]))
            if error is None:
                try:
                    self.queue.ack([s for s, _ in batch])
                except Exception:
                    log.exception("webhooks: endpoint %s: could not remove delivered events", cfg.name)
                self.metrics.delivered += len(batch)
                if failures:
                    log.info("webhooks: endpoint %s: delivering again after %d failures", cfg.name, failures)
                failures = 0
                self.metrics.consecutive_failures = 0
                continue
            failures += 1
            self.metrics.failed += 1
            self.metrics.consecutive_failures = failures
            self.metrics.last_error = error
            if failures == cfg.threshold or failures == 1:
                log.warning("webhooks: endpoint %s: delivery failed (%s); %d events queued", cfg.name, error,
                            len(self.queue))
            if stopping:
                return  # draining: a failing endpoint keeps the rest on disk for the next start
            # Interruptible: a stop request ends the wait (and then the loop).
            self._stopping.wait(cfg.delay(failures))

    def _post(self, body: bytes) -> str | None:
        """POST one envelope; ``None`` on a 2xx or 3xx (as Distribution counts them), else why not."""
        cfg = self.config
        headers = {"Content-Type": ENVELOPE_MEDIA_TYPE, "User-Agent": USER_AGENT, "Content-Length": str(len(body))}
        if cfg.secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(cfg.secret, body, hashlib.sha256).hexdigest()
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=cfg.timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=cfg.timeout)
        try:
            conn.putrequest("POST", self._path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if self._auth is not None:
                conn.putheader("Authorization", self._auth)
            for name, values in cfg.headers.items():
                for value in values:
                    conn.putheader(name, value)
            conn.endheaders(body)
            resp = conn.getresponse()
            resp.read(MAX_RESPONSE)
            key = f"{resp.status} {resp.reason}".strip()
            self.metrics.statuses[key] = self.metrics.statuses.get(key, 0) + 1
            return None if 200 <= resp.status < 400 else f"HTTP {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            conn.close()

    def snapshot(self) -> dict[str, Any]:
        m = self.metrics
        m.pending = len(self.queue) + len(self.inbox)
        m.dropped = self.queue.dropped + self.inbox_dropped
        return {"name": self.config.name, "url": self.shown_url, **dataclasses.asdict(m),
                "queue_bytes": self.queue.bytes, "disk_bytes": self.queue.disk_usage()}


class Notifier:
    """Every endpoint of one app; registered with the app's plugin manager while it runs, as the
    ``registry_event`` implementation (so an app without endpoints builds no events at all)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = [Endpoint(e, settings) for e in settings.endpoints]

    @hookimpl
    def registry_event(self, event: Mapping[str, Any]) -> None:
        wanted = [e for e in self.endpoints if e.config.wants(event)]
        if not wanted:
            return
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        for endpoint in wanted:
            endpoint.offer(body)

    def start(self) -> None:
        for endpoint in self.endpoints:
            endpoint.start()
            log.info("webhooks: endpoint %s (%s), timeout=%ss, %d events queued in %s", endpoint.config.name,
                     endpoint.shown_url, endpoint.config.timeout, len(endpoint.queue), endpoint.queue.path)

    def stop(self) -> None:
        """Persist what is in memory and drain for up to the drain timeout, every endpoint at once."""
        deadline = time.monotonic() + self.settings.drain_timeout
        for endpoint in self.endpoints:
            endpoint.stop(deadline)
        for endpoint in self.endpoints:
            endpoint.join(deadline)
            left = len(endpoint.queue) + len(endpoint.inbox)
            if left:
                log.info("webhooks: endpoint %s: %d events stay queued for the next start", endpoint.config.name, left)

    def metrics(self) -> dict[str, dict[str, Any]]:
        return {e.config.name: e.snapshot() for e in self.endpoints}


_running: list[Notifier] = []
_running_lock = threading.Lock()


def running() -> list[Notifier]:
    """The notifiers of the apps started in this process (usually one)."""
    with _running_lock:
        return list(_running)


def metrics() -> dict[str, dict[str, Any]]:
    """Per endpoint name: ``pending``, ``delivered``, ``failed`` (failed requests), ``retries``,
    ``dropped`` (overflow), ``consecutive_failures``, ``last_error``, ``statuses``, ``queue_bytes``,
    ``disk_bytes``, ``url`` — of every running app in this process. Cheap enough to scrape."""
    out: dict[str, dict[str, Any]] = {}
    for notifier in running():
        out.update(notifier.metrics())
    return out
