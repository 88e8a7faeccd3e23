"""The pull-through cache: what the manifest, blob and tag handlers ask for a proxied repository.

Everything fetched is stored through the :class:`~registry.storage.store.Store` (the storage driver
API), so the cache works on every driver, and served from there afterwards.

Blobs are streamed: one thread per uncached blob reads it from the upstream in 1 MiB pieces, hashes
each, appends it to an unnamed local spool file and to a fresh storage writer; every client pulling
the blob meanwhile reads the spool file behind it. The storage writer is committed (and the blob
linked into the repository) only when the digest matches; until then the last byte is held back
from every client, so a blob whose upstream bytes are wrong is never stored and never served whole:
the clients' connections break instead. Memory stays constant whatever the blob's size.

Single flight: within a process, one fetch per (repository, digest); a second client joins it.
Across processes sharing one storage nothing is locked: each process may fetch the blob once, and
the content-addressed commits write the same bytes to the same path (the later one sees the blob
stored and does not commit again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import BinaryIO

import urllib3

from registry.digests import Digest, digest_of, parse_digest
from registry.errors import BlobUnknown, Denied, ManifestUnknown, RegistryError, Unavailable
from registry.manifests import parse_manifest
from registry.proxy.remote import RemoteClient, UpstreamDenied, UpstreamError, UpstreamNotFound, new_pool
from registry.proxy.settings import ProxySettings, Remote
from registry.storage import paths
from registry.storage.store import Store

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: A client waits this long for the next piece of a blob another request is fetching.
STALL_TIMEOUT = 120.0
#: The most tags whose last check against the upstream is remembered (then all are checked again).
MAX_VALIDATED = 100_000


class UpstreamBlobBroken(Exception):
    """Raised into a client's response stream: the upstream's bytes were wrong or stopped coming.
    The server then closes the connection short of its Content-Length, so no client takes the
    blob as complete."""


def _unavailable(remote: Remote, exc: UpstreamError) -> RegistryError:
    return Unavailable(f"pull-through cache: {exc}; nothing cached to serve instead",
                       detail={"upstream": remote.url})


class _BlobFetch:
    """One blob being fetched from the upstream into storage, readable while it is written."""

    def __init__(self, cache: PullThroughCache, client: RemoteClient, name: str, d: Digest) -> None:
        self.cache, self.client, self.name, self.d = cache, client, name, d
        self.cond = threading.Condition()
        self.size: int | None = None
        self.written = 0
        self.state = "connecting"  # -> streaming -> ok | failed
        self.error: RegistryError | None = None
        self.spool: BinaryIO | None = None
        self._refs = 1  # the fetch thread's own

    # -- the fetch thread ------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"proxy-fetch-{self.d.hex[:12]}", daemon=True).start()

    def _run(self) -> None:
        try:
            self._fetch()
        except Exception as exc:  # never let a fetch die silently: the waiting clients must learn of it
            log.exception("pull-through cache: fetching %s of %s failed", self.d, self.name)
            self._finish("failed", Unavailable(f"pull-through cache: fetching {self.d} failed ({type(exc).__name__})"))
        finally:
            self.cache._forget(self)
            self.release()

    def _fetch(self) -> None:
        remote = self.client.remote
        try:
            resp = self.client.blob(remote.upstream_name(self.name), str(self.d))
        except UpstreamNotFound:
            self._finish("failed", BlobUnknown(f"blob {self.d} is not in upstream repository "
                                               f"{remote.upstream_name(self.name)!r}", detail={"digest": str(self.d)}))
            return
        except UpstreamDenied as exc:
            self._finish("failed", Denied(f"pull-through cache: {exc}"))
            return
        except UpstreamError as exc:
            self._finish("failed", _unavailable(remote, exc))
            return
        length = resp.headers.get("Content-Length")
        spool = tempfile.TemporaryFile(buffering=0, dir=self.cache.spool_dir)  # noqa: SIM115 - closed by the last reader
        with self.cond:
            self.size = int(length) if length and length.isdigit() else None
            self.spool = spool
            self.state = "streaming"
            self.cond.notify_all()
        writer = self.cache.store.driver.writer(paths.blob_data(self.d))
        hasher = hashlib.new(self.d.algorithm)
        try:
            try:
                for chunk in resp.stream(CHUNK, decode_content=False):
                    hasher.update(chunk)
                    spool.write(chunk)
                    with self.cond:
                        self.written += len(chunk)
                        self.cond.notify_all()
                    writer.write(chunk)
            except urllib3.exceptions.HTTPError as exc:
                raise UpstreamBlobBroken(f"upstream broke off ({type(exc).__name__})") from None
            if self.size is not None and self.written != self.size:
                raise UpstreamBlobBroken(f"upstream sent {self.written} of {self.size} bytes")
            if hasher.hexdigest() != self.d.hex:
                # The upstream is broken or tampered with; never store what it sent.
                raise UpstreamBlobBroken(f"upstream bytes hash to {self.d.algorithm}:{hasher.hexdigest()}")
            if self.cache.store.blob_size(self.d) != self.written:
                writer.commit()
            self.cache.store.link_layer(self.name, self.d)
        except UpstreamBlobBroken as exc:
            writer.cancel()
            log.error("pull-through cache: %s of %s from %s not stored: %s", self.d, self.name, remote.url, exc)
            self._finish("failed", Unavailable(f"pull-through cache: upstream {remote.url} sent a bad copy of "
                                               f"{self.d}: {exc}"))
            return
        except BaseException:
            writer.cancel()
            raise
        finally:
            writer.close()
            resp.release_conn()
        self._finish("ok", None)

    def _finish(self, state: str, error: RegistryError | None) -> None:
        with self.cond:
            self.state, self.error = state, error
            self.cond.notify_all()

    # -- the readers -----------------------------------------------------------------------------

    def acquire(self) -> None:
        with self.cond:
            self._refs += 1

    def release(self) -> None:
        with self.cond:
            self._refs -= 1
            spool = self.spool if self._refs == 0 else None
        if spool is not None:
            spool.close()

    def wait_started(self, timeout: float = STALL_TIMEOUT) -> int | None:
        """Wait until the upstream answered; the blob's size (``None``: not announced).

        :raises RegistryError: when the fetch failed already (404, upstream down, wrong bytes).
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.state == "connecting" and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            if self.state == "failed":  # nothing went to this client yet: it gets the error itself
                assert self.error is not None
                raise self.error
            if self.state == "connecting":
                raise Unavailable(f"pull-through cache: the upstream did not answer for {self.d} in {timeout:.0f}s")
            return self.size

    def wait_done(self, timeout: float = STALL_TIMEOUT) -> None:
        """Wait until the blob is stored; raise the fetch's error if it failed."""
        deadline = time.monotonic() + timeout
        with self.cond:
            last = -1
            while self.state not in ("ok", "failed"):
                if self.written != last:  # progress restarts the clock: a big blob takes long
                    last, deadline = self.written, time.monotonic() + timeout
                if time.monotonic() >= deadline:
                    raise Unavailable(f"pull-through cache: fetching {self.d} stalled")
                self.cond.wait(min(1.0, deadline - time.monotonic()))
            if self.state == "failed":
                assert self.error is not None
                raise self.error


class _Tail:
    """A client's read of a blob being fetched: the spool file, behind the fetch, never past its
    last verified byte."""

    def __init__(self, fetch: _BlobFetch) -> None:
        fetch.acquire()
        self.fetch, self.pos, self.closed = fetch, 0, False

    def read(self, size: int = -1) -> bytes:
        f = self.fetch
        want = CHUNK if size is None or size < 0 else min(size, CHUNK)
        deadline = time.monotonic() + STALL_TIMEOUT
        with f.cond:
            while True:
                if f.state == "failed":
                    raise UpstreamBlobBroken(str(f.error.message if f.error else "fetch failed"))
                # Until the digest is checked the last byte stays back: a wrong blob never arrives whole.
                ready = f.written if f.state == "ok" else f.written - 1
                if self.pos < ready:
                    break
                if f.state == "ok":
                    return b""
                if time.monotonic() >= deadline:
                    raise UpstreamBlobBroken("the upstream stalled")
                f.cond.wait(min(1.0, deadline - time.monotonic()))
            spool = f.spool
        assert spool is not None
        data = os.pread(spool.fileno(), min(want, ready - self.pos), self.pos)
        self.pos += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.fetch.release()


class PullThroughCache:
    """The upstreams of ``proxy:`` and the cache over :attr:`store`. Thread-safe.

    :param spool_dir: where in-progress blobs are spooled for their readers (``None``: the system's
        temporary directory).
    """

    def __init__(self, settings: ProxySettings, store: Store, spool_dir: str | None = None,
                 pool: urllib3.PoolManager | None = None) -> None:
        self.settings = settings
        self.store = store
        self.spool_dir = spool_dir
        self.pool = pool or new_pool()
        self.clients = {r.prefix: RemoteClient(r, self.pool) for r in settings.remotes}
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, Digest], _BlobFetch] = {}
        self._validated: dict[tuple[str, str], float] = {}

    def client_for(self, name: str) -> RemoteClient | None:
        """The upstream serving repository ``name``, or ``None`` when it is a local repository."""
        remote = self.settings.match(name)
        return None if remote is None else self.clients[remote.prefix]

    def close(self) -> None:
        self.pool.clear()

    # -- manifests -------------------------------------------------------------------------------

    def manifest(self, client: RemoteClient, name: str, tag: str | None, d: Digest | None) -> tuple[Digest, bytes]:
        """The manifest ``name`` has by ``tag`` or digest ``d``: cached, else from the upstream and stored.

        A tag cached longer than the upstream's ``ttl`` is checked first (a HEAD, comparing digests);
        if the upstream cannot answer, the cached copy is served (as Distribution does).

        :raises RegistryError: ``MANIFEST_UNKNOWN`` when the upstream does not have it, ``UNAVAILABLE``
            when the upstream cannot be reached and nothing is cached.
        """
        remote = client.remote
        upstream = remote.upstream_name(name)
        if d is not None:
            raw = self.store.get_manifest(name, d)
            if raw is not None:
                return d, raw
            return d, self._fetch_manifest(client, name, str(d), d)
        assert tag is not None
        current: Digest | None = None
        cached = self.store.resolve_tag(name, tag)
        raw = self.store.get_manifest(name, cached) if cached is not None else None
        key = (name, tag)
        if raw is not None and cached is not None:
            checked = self._validated.get(key)
            if checked is not None and time.monotonic() - checked < remote.ttl:
                return cached, raw
            try:
                _, headers = client.manifest(upstream, tag, "HEAD")
                current = _header_digest(headers)
            except UpstreamError as exc:
                log.warning("pull-through cache: serving cached %s:%s: %s", name, tag, exc)
                return cached, raw
            if current == cached:
                self._mark(key)
                return cached, raw
        try:
            # By the digest the HEAD named, when it named one: exactly the manifest it announced.
            fetched = self._fetch_manifest(client, name, str(current) if current else tag, current)
        except RegistryError:
            if raw is not None and cached is not None:
                return cached, raw
            raise
        d = digest_of(fetched)
        self.store.tag(name, tag, d)
        self._mark(key)
        return d, fetched

    def _mark(self, key: tuple[str, str]) -> None:
        with self._lock:
            if len(self._validated) >= MAX_VALIDATED:
                self._validated.clear()
            self._validated[key] = time.monotonic()

    def _fetch_manifest(self, client: RemoteClient, name: str, reference: str, expected: Digest | None) -> bytes:
        remote = client.remote
        upstream = remote.upstream_name(name)
        try:
            raw, headers = client.manifest(upstream, reference)
        except UpstreamNotFound:
            raise ManifestUnknown(f"manifest {reference!r} is not in upstream repository {upstream!r}",
                                  detail={"reference": reference}) from None
        except UpstreamDenied as exc:
            raise Denied(f"pull-through cache: {exc}") from None
        except UpstreamError as exc:
            raise _unavailable(remote, exc) from None
        announced = _header_digest(headers)
        want = expected or announced
        d = digest_of(raw, want.algorithm if want else "sha256")
        if want is not None and d != want:
            raise Unavailable(f"pull-through cache: upstream {remote.url} sent a manifest for {reference!r} that "
                              f"hashes to {d}, not {want}; not stored")
        self.store.put_manifest(name, d, raw)
        try:
            subject = parse_manifest(raw, headers.get("Content-Type")).subject
        except Exception:  # stored as the upstream serves it; only its subject matters here
            subject = None
        if subject is not None:
            self.store.add_referrer(name, subject, d)
        return raw

    # -- blobs -----------------------------------------------------------------------------------

    def blob_size(self, client: RemoteClient, name: str, d: Digest) -> int:
        """The size of an uncached blob, as the upstream says (a HEAD; nothing is fetched)."""
        try:
            resp = client.blob(client.remote.upstream_name(name), str(d), "HEAD")
        except UpstreamNotFound:
            raise BlobUnknown(detail={"digest": str(d)}) from None
        except UpstreamDenied as exc:
            raise Denied(f"pull-through cache: {exc}") from None
        except UpstreamError as exc:
            raise _unavailable(client.remote, exc) from None
        resp.release_conn()
        length = resp.headers.get("Content-Length", "")
        if not length.isdigit():
            raise Unavailable(f"pull-through cache: upstream {client.remote.url} gave no size for {d}")
        return int(length)

    def _join(self, client: RemoteClient, name: str, d: Digest) -> _BlobFetch | None:
        """The fetch of ``d`` for ``name``, started or joined; ``None`` when it is stored already."""
        with self._lock:
            fetch = self._fetches.get((name, d))
            if fetch is None:
                # Again under the lock: a fetch that just finished is stored and linked by now.
                if self.store.layer_size(name, d) is not None:
                    return None
                fetch = _BlobFetch(self, client, name, d)
                self._fetches[(name, d)] = fetch
                fetch.start()
            fetch.acquire()  # the caller's, released when it is done with it
            return fetch

    def _forget(self, fetch: _BlobFetch) -> None:
        with self._lock:
            if self._fetches.get((fetch.name, fetch.d)) is fetch:
                del self._fetches[(fetch.name, fetch.d)]

    def _link_stored(self, client: RemoteClient, name: str, d: Digest) -> bool:
        """Link a blob stored already (pulled through another repository) into ``name`` once the
        upstream confirms that repository has it (a HEAD instead of fetching it again)."""
        stored = self.store.blob_size(d)
        if stored is None or self.blob_size(client, name, d) != stored:
            return False
        self.store.link_layer(name, d)
        return True

    def open_blob(self, client: RemoteClient, name: str, d: Digest) -> tuple[BinaryIO, int | None]:
        """A stream of the whole blob and its size (``None``: unknown): from storage if it is there by
        now, else read behind its fetch from the upstream.

        :raises RegistryError: ``BLOB_UNKNOWN`` when the upstream does not have it, ``UNAVAILABLE``
            when it cannot be reached.
        """
        if self._link_stored(client, name, d):
            return self.store.open_blob(d), self.store.blob_size(d)
        fetch = self._join(client, name, d)
        if fetch is None:
            return self.store.open_blob(d), self.store.blob_size(d)
        try:
            size = fetch.wait_started()
            return _Tail(fetch), size  # type: ignore[return-value]
        finally:
            fetch.release()

    def fetch_blob(self, client: RemoteClient, name: str, d: Digest) -> int:
        """Store the blob (fetching it, or waiting for the fetch under way) and return its size."""
        fetch = None if self._link_stored(client, name, d) else self._join(client, name, d)
        if fetch is not None:
            try:
                fetch.wait_done()
            finally:
                fetch.release()
        size = self.store.layer_size(name, d)
        if size is None:
            raise BlobUnknown(detail={"digest": str(d)})
        return size

    # -- tags ------------------------------------------------------------------------------------

    def tags(self, client: RemoteClient, name: str) -> list[str] | None:
        """The upstream's tags of ``name`` (sorted), or ``None`` when it cannot say: the local tags
        serve then (as Distribution does)."""
        try:
            return sorted(set(client.tags(client.remote.upstream_name(name))))
        except UpstreamError as exc:
            log.warning("pull-through cache: listing local tags of %s: %s", name, exc)
            return None


def _header_digest(headers: Mapping[str, str]) -> Digest | None:
    value = headers.get("Docker-Content-Digest")
    if not value:
        return None
    try:
        return parse_digest(value.strip())
    except RegistryError:
        return None
