"""``/v2/<name>/blobs/<digest>``: GET and HEAD (with ``Range``), DELETE."""

from __future__ import annotations

import re
from typing import BinaryIO

import falcon

from registry.errors import BlobUnknown, RangeInvalid, Unsupported
from registry.handlers.base import Context, check_digest, check_name, delete, event_target, pull

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)\Z")
#: Positions are capped here before int(): Python refuses to convert strings of over 4300 digits, and
#: no blob is this large, so the cap never changes a range's meaning.
_MAX_POSITION = 1 << 63


def _position(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _MAX_POSITION if len(digits) > 19 else min(int(digits), _MAX_POSITION)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range against ``size``; returns inclusive ``(start, end)``.

    ``None`` means serve the whole blob (no header, or a form we ignore as RFC 9110 allows:
    multiple ranges, other units). Raises :class:`RangeInvalid` when the range cannot be satisfied.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip(" \t"))  # OWS only (RFC 9110 §5.5)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        raise RangeInvalid(f"invalid range {header!r}")
    if first == "":
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise RangeInvalid(f"range {header!r} not satisfiable for size {size}")
        return max(size - suffix, 0), size - 1
    start = _position(first)
    end = _position(last) if last else size - 1
    if start >= size or end < start:
        raise RangeInvalid(f"range {header!r} not satisfiable for size {size}")
    return start, min(end, size - 1)


class LimitedReader:
    """Reads at most ``limit`` bytes of ``inner`` (for a ranged response), then closes it."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner, self._left = inner, limit

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._inner.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._inner.close()


class BlobResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _lookup(self, req: falcon.Request, name: str, digest: str, resp: falcon.Response | None = None):
        """The digest and size of a blob the repository serves. For a repository a pull-through
        cache serves and a blob not cached yet: a HEAD asks the upstream (``resp`` is ``None``); a
        whole GET gets the stream of the fetch under way as ``resp.stream`` and ``size`` may be
        ``None``; a ranged GET waits until the blob is stored."""
        check_name(name)
        d = check_digest(digest)
        self.ctx.authorize(req, pull(name))
        size = self.ctx.store.layer_size(name, d)
        if size is None and self.ctx.proxy is not None and (upstream := self.ctx.proxy.client_for(name)):
            if resp is None:
                return d, self.ctx.proxy.blob_size(upstream, name, d)
            if req.get_header("Range"):
                return d, self.ctx.proxy.fetch_blob(upstream, name, d)
            resp.stream, size = self.ctx.proxy.open_blob(upstream, name, d)
            return d, size
        if size is None:
            raise BlobUnknown(detail={"digest": str(d)})
        return d, size

    def on_head(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        d, size = self._lookup(req, name, digest)
        resp.set_header("Docker-Content-Digest", str(d))
        resp.set_header("Accept-Ranges", "bytes")
        resp.content_type = "application/octet-stream"
        resp.content_length = size

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        d, size = self._lookup(req, name, digest, resp)
        resp.set_header("Docker-Content-Digest", str(d))
        resp.set_header("Accept-Ranges", "bytes")
        resp.content_type = "application/octet-stream"
        if resp.stream is not None:  # streamed from the upstream while it is stored
            resp.content_length = size
            self.ctx.emit(req, "pull", name, event_target(d, size or 0))
            return
        try:
            rng = parse_range(req.get_header("Range"), size)
        except RangeInvalid as exc:
            exc.headers.setdefault("Content-Range", f"bytes */{size}")  # RFC 9110 §15.5.17
            raise
        if rng is None and self.ctx.redirect_enabled:
            url = self.ctx.store.blob_redirect(req.method, d)
            if url:
                resp.status = falcon.HTTP_307
                resp.location = url
                resp.content_length = 0
                self.ctx.emit(req, "pull", name, event_target(d, size))  # the client pulls it from there
                return
        if rng is None:
            resp.stream = self.ctx.store.open_blob(d)
            resp.content_length = size
        else:
            start, end = rng
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", f"bytes {start}-{end}/{size}")
            resp.stream = LimitedReader(self.ctx.store.open_blob(d, start), end - start + 1)
            resp.content_length = end - start + 1
        self.ctx.emit(req, "pull", name, event_target(d, size))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        check_name(name)
        d = check_digest(digest)
        self.ctx.authorize(req, delete(name))
        if not self.ctx.delete_enabled:
            raise Unsupported("deletion is disabled (storage.delete.enabled is false)")
        if not self.ctx.store.unlink_layer(name, d):
            raise BlobUnknown(detail={"digest": str(d)})
        resp.status = falcon.HTTP_202
        resp.set_header("Docker-Content-Digest", str(d))
        resp.content_length = 0
        self.ctx.emit(req, "delete", name, {"digest": str(d)})
