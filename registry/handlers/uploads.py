"""``/v2/<name>/blobs/uploads/[<id>]``: start (with monolithic and mount forms), PATCH, PUT, GET,
DELETE."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import BinaryIO

import falcon

from registry.digests import Digest
from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    RegistryError,
    SizeInvalid,
)
from registry.handlers.base import (
    Context,
    check_digest,
    check_name,
    event_target,
    pull,
    push,
    upload_headers,
    upload_location,
    url,
)
from registry.ops.quota import body_budget, check_blob, refusal, reservation
from registry.routing import NAME_RE, UPLOAD_ID
from registry.spool import SpoolFile
from registry.storage.store import QuotaExceededError
from registry.storage.uploads import (
    DigestMismatchError,
    UploadBudgetError,
    UploadError,
    UploadOffsetError,
    UploadSizeError,
    UploadUnknownError,
)

# Offsets of at most 19 digits (int64, as Distribution parses them): Python's int() refuses over 4300.
_CONTENT_RANGE = re.compile(r"^(?:bytes )?([0-9]{1,19})-([0-9]{1,19})\Z")
_UPLOAD_ID_RE = re.compile(rf"^{UPLOAD_ID}\Z")


def parse_content_range(header: str) -> tuple[int, int] | None:
    """A chunk's ``Content-Range`` (``start-end``, inclusive, ``bytes `` optional); ``None`` if malformed."""
    m = _CONTENT_RANGE.match(header.strip(" \t"))  # OWS only (RFC 9110 §5.5)
    return (int(m.group(1)), int(m.group(2))) if m else None


def request_body(req: falcon.Request) -> BinaryIO:
    """The body to store: the server's spool file itself when it is one the storage may adopt
    (:mod:`registry.spool`; it holds exactly the body), the server's stream of a body still
    arriving (:mod:`registry.streaming`; it ends with the body, or early if the connection breaks),
    else Falcon's length-bounded stream."""
    raw = req.env.get("wsgi.input")
    if isinstance(raw, SpoolFile) or getattr(raw, "streaming_body", False):
        return raw
    return req.bounded_stream


def body_length(req: falcon.Request) -> int | None:
    """The body's ``Content-Length``; ``None`` for the server's stream of a body whose length is
    known at its end only (chunked transfer coding: read it to its end); ``0`` when there is none."""
    if req.content_length is not None:
        return req.content_length
    raw = req.env.get("wsgi.input")
    if getattr(raw, "streaming_body", False) and raw.length is None:
        return None
    return 0


def refuse_body(req: falcon.Request) -> None:
    """Tell the server's stream of a body still arriving that it is refused: the rest is not read
    past a bounded drain (:meth:`registry.streaming.BodyStream.refuse`); nothing for other bodies."""
    refuse = getattr(req.env.get("wsgi.input"), "refuse", None)
    if refuse is not None:
        refuse()


@contextlib.contextmanager
def _over_budget(ctx: Context, req: falcon.Request, name: str, before: int) -> Iterator[None]:
    """A body of unknown length stopped at its quota budget (:class:`UploadBudgetError`) is
    refused as any quota refusal (403 ``DENIED``), needing ``before`` plus what was read; any
    refusal of a streamed body stops the server reading it past a bounded drain."""
    try:
        yield
    except UploadBudgetError as exc:
        refuse_body(req)
        raise refusal(ctx.store, name, before + exc.received) from None
    except QuotaExceededError:
        refuse_body(req)
        raise


@contextlib.contextmanager
def _upload_errors(ctx: Context, req: falcon.Request, name: str, upload_id: str | None) -> Iterator[None]:
    """The protocol's error for each storage-layer upload error."""
    try:
        yield
    except UploadUnknownError as exc:
        raise BlobUploadUnknown(detail={"uuid": exc.upload_id}) from None
    except UploadOffsetError as exc:
        size = exc.size
        if size is None and upload_id is not None:
            with contextlib.suppress(UploadError):
                size = ctx.uploads.size(name, upload_id)
        headers = {}
        if size is not None and upload_id is not None:
            headers = {"Range": f"0-{max(size - 1, 0)}", "Location": upload_location(req, name, upload_id),
                       "Docker-Upload-UUID": upload_id}
        raise RangeInvalid(str(exc), headers=headers) from None
    except UploadSizeError as exc:
        raise SizeInvalid(str(exc)) from None
    except DigestMismatchError as exc:
        raise DigestInvalid(str(exc), detail={"expected": exc.expected, "actual": exc.actual}) from None


def check_upload_id(upload_id: str) -> str:
    if not _UPLOAD_ID_RE.match(upload_id):
        raise BlobUploadUnknown(f"invalid upload id {upload_id[:200]!r}")
    return upload_id


def _created(ctx: Context, req: falcon.Request, resp: falcon.Response, name: str, d: Digest, size: int,
             action: str = "push", source: str | None = None) -> None:
    resp.status = falcon.HTTP_201
    resp.location = url(req, f"/v2/{name}/blobs/{d}")
    resp.set_header("Docker-Content-Digest", str(d))
    resp.content_length = 0
    target = event_target(d, size)
    if source:
        target["fromRepository"] = source  # as Distribution's mount events say where the blob came from
    ctx.emit(req, action, name, target)


class UploadsResource:
    """``POST /v2/<name>/blobs/uploads/``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        check_name(name)
        mount = req.get_param("mount")
        digest = req.get_param("digest")
        source = req.get_param("from") if mount is not None else None
        source_allowed = self._authorize_mount(req, name, source)
        if mount is not None:
            d = check_digest(mount)
            if self._mount(req, name, d, source, source_allowed):
                size = self.ctx.store.blob_size(d) or 0
                _created(self.ctx, req, resp, name, d, size, action="mount", source=source)
                return
            # Not mountable: the spec says to fall back to an ordinary upload session.
        if digest is not None:
            d = check_digest(digest)
            # The whole blob in this request: stored at its blob path, no upload session at all. With
            # a quota, its declared size is reserved first: refused before a byte is read.
            length = body_length(req)
            budget = body_budget(self.ctx.store, name, d, 0) if length is None else None
            with _over_budget(self.ctx, req, name, 0), \
                    reservation(self.ctx.store, name, d, req.content_length or 0), \
                    _upload_errors(self.ctx, req, name, None):
                size = self.ctx.uploads.put_blob(name, d, request_body(req), length, budget)
            _created(self.ctx, req, resp, name, d, size)
            return
        check_blob(self.ctx.store, name, None, req.content_length or 0)  # already over a limit: refuse now
        upload_id = self.ctx.uploads.start(name)
        resp.status = falcon.HTTP_202
        upload_headers(req, resp, name, upload_id, 0)

    def _authorize_mount(self, req: falcon.Request, name: str, source: str | None) -> bool:
        """Authorize the push, and say whether the mount's source may be read.

        Asked together first, as Distribution does, so that a 401's challenge names the source's
        scope too and a token client fetches one token for both. Refused together, the push alone
        decides: its own refusal is sent (with the combined challenge), its success means an
        ordinary upload instead of the mount."""
        if not source or not NAME_RE.match(source) or len(source) > 255:
            self.ctx.authorize(req, push(name))
            return False
        try:
            self.ctx.authorize(req, push(name) + pull(source))
            return True
        except RegistryError as combined:
            try:
                self.ctx.authorize(req, push(name))
            except RegistryError:
                raise combined from None
            return False  # not allowed to read the source: fall back to an upload

    def _mount(self, req: falcon.Request, name: str, d: Digest, source: str | None, source_allowed: bool) -> bool:
        store = self.ctx.store
        if source:
            if not source_allowed:
                return False
            if not store.has_layer_link(source, d) or store.blob_size(d) is None:
                return False
        else:
            # Without `from`, mount only what anyone may read: with access control configured (an
            # access controller or a registry_authorize plugin, which may veto pulls per repository)
            # we cannot tell which repository would grant it, so fall back to an upload.
            if (self.ctx.access is not None or self.ctx.pm.hook.registry_authorize.get_hookimpls()
                    or store.blob_size(d) is None):
                return False
        store.link_layer(name, d)
        return True


class UploadResource:
    """``/v2/<name>/blobs/uploads/<id>``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _check(self, req: falcon.Request, name: str, upload_id: str) -> None:
        check_name(name)
        check_upload_id(upload_id)
        self.ctx.authorize(req, push(name))

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        self._check(req, name, upload_id)
        with _upload_errors(self.ctx, req, name, upload_id):
            size = self.ctx.uploads.size(name, upload_id)
        resp.status = falcon.HTTP_204
        upload_headers(req, resp, name, upload_id, size)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        self._check(req, name, upload_id)
        length = req.content_length
        offset = None
        content_range = req.get_header("Content-Range")
        if content_range is not None:  # present but empty is malformed too
            parsed = parse_content_range(content_range)
            if parsed is None:
                raise BlobUploadInvalid(f"malformed Content-Range {content_range[:100]!r}")
            offset, end = parsed
            if end < offset:
                raise self._out_of_order(req, name, upload_id, content_range)
            if length is not None and length != end - offset + 1:
                # Out of order takes precedence: the client learns where the upload stands.
                with _upload_errors(self.ctx, req, name, upload_id):
                    size = self.ctx.uploads.size(name, upload_id)
                if offset != size:
                    raise self._out_of_order(req, name, upload_id, content_range, size)
                raise SizeInvalid(f"Content-Range {offset}-{end} does not match Content-Length {length}")
        size = self._size_after(req, name, upload_id, length, offset)
        budget = None
        try:
            with _over_budget(self.ctx, req, name, size or 0):
                if size is not None:
                    check_blob(self.ctx.store, name, None, size)
                    if length is None:
                        # A streamed chunked body: its size is known at its end only, so it is
                        # read no further than the quota's room (no storage call without a rule).
                        budget = body_budget(self.ctx.store, name, None, size)
                body = request_body(req)
                # The offset is checked by the writer that appends: no other request slips in between.
                with _upload_errors(self.ctx, req, name, upload_id):
                    new_size = self.ctx.uploads.append(name, upload_id, body, length, offset, budget)
        except QuotaExceededError:
            # It could never be finished. The whole upload goes (what this request stored with
            # it): the storage contract has no way to cut an upload back to its previous offset.
            self._discard(name, upload_id)
            raise
        resp.status = falcon.HTTP_202
        upload_headers(req, resp, name, upload_id, new_size)

    def _out_of_order(self, req: falcon.Request, name: str, upload_id: str, content_range: str,
                      size: int | None = None) -> RegistryError:
        if size is None:
            with _upload_errors(self.ctx, req, name, upload_id):
                size = self.ctx.uploads.size(name, upload_id)
        return RangeInvalid(
            f"Content-Range {content_range[:100]!r} does not continue the upload at offset {size}",
            headers={"Range": f"0-{max(size - 1, 0)}", "Location": upload_location(req, name, upload_id),
                     "Docker-Upload-UUID": upload_id},
        )

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        self._check(req, name, upload_id)
        digest = req.get_param("digest")
        if not digest:
            raise BlobUploadInvalid("the digest query parameter is required to finish an upload")
        d = check_digest(digest)
        offset = None
        content_range = req.get_header("Content-Range")
        if content_range is not None:
            parsed = parse_content_range(content_range)
            if parsed is None:  # malformed, as for a PATCH: 400, not 416
                raise BlobUploadInvalid(f"malformed Content-Range {content_range[:100]!r}")
            offset = parsed[0]
        size = self._size_after(req, name, upload_id, req.content_length, offset)
        length = body_length(req)
        try:
            # With a quota, the blob's size is reserved before anything is stored or moved, and a
            # streamed chunked last chunk is read no further than the quota's room.
            with _over_budget(self.ctx, req, name, size or 0):
                budget = body_budget(self.ctx.store, name, d, size) if size is not None and length is None else None
                with reservation(self.ctx.store, name, d, size), _upload_errors(self.ctx, req, name, upload_id):
                    total = self.ctx.uploads.finish(name, upload_id, d, request_body(req), length, offset, budget)
        except QuotaExceededError:
            self._discard(name, upload_id)  # refused: the data goes, nothing is linked
            raise
        _created(self.ctx, req, resp, name, d, total)

    def _size_after(self, req: falcon.Request, name: str, upload_id: str, length: int | None,
                    offset: int | None) -> int | None:
        """The upload's size once this request's body is stored, when a quota rule limits ``name``
        (else ``None``: nothing to check). waitress sets ``Content-Length`` of a chunked body it
        buffered; a chunked upload body streamed (:mod:`registry.streaming`) has none, and counts
        as empty here: it is then read no further than the quota's room (:func:`body_budget`),
        and the blob's size is checked again when it is placed."""
        quota = self.ctx.store.quota
        if quota is None or not quota.applicable(name):
            return None
        if offset is None:
            with _upload_errors(self.ctx, req, name, upload_id):
                offset = self.ctx.uploads.size(name, upload_id)
        return offset + (length or 0)

    def _discard(self, name: str, upload_id: str) -> None:
        with contextlib.suppress(UploadError):
            self.ctx.uploads.cancel(name, upload_id)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, upload_id: str) -> None:
        self._check(req, name, upload_id)
        with _upload_errors(self.ctx, req, name, upload_id):
            self.ctx.uploads.cancel(name, upload_id)
        resp.status = falcon.HTTP_204
        resp.content_length = 0
