"""``/v2/<name>/manifests/<reference>``: GET, HEAD, PUT, DELETE by tag or digest."""

from __future__ import annotations

from typing import Any

import falcon

from registry.digests import Digest, digest_of, parse_digest
from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    Unsupported,
)
from registry.handlers.base import Context, check_name, delete, event_target, is_tag, pull, push, url
from registry.manifests import MAX_MANIFEST_SIZE, manifest_references, media_type_of, parse_manifest
from registry.routing import DIGEST_RE


def parse_reference(reference: str) -> tuple[str | None, Digest | None]:
    """A manifest reference is a tag or a digest; anything else is refused before storage."""
    if ":" in reference:
        if not DIGEST_RE.match(reference):
            raise DigestInvalid(f"invalid digest {reference[:200]!r}")
        return None, parse_digest(reference)
    if is_tag(reference):
        return reference, None
    raise ManifestInvalid(f"invalid tag {reference[:200]!r}", detail={"reference": reference[:200]})


def lookup_reference(reference: str) -> tuple[str | None, Digest | None]:
    """:func:`parse_reference` for GET and HEAD: a reference that is neither a valid tag nor a digest
    names no manifest, so it is 404 ``MANIFEST_UNKNOWN`` (as Distribution answers, and released OCI
    conformance suites expect), not a 400. PUT and DELETE keep parse_reference's errors: there the
    client asks for a change it must be told is malformed."""
    try:
        return parse_reference(reference)
    except (DigestInvalid, ManifestInvalid):
        shown = reference[:200]
        raise ManifestUnknown(f"manifest unknown: {shown!r} is neither a tag nor a digest",
                              detail={"reference": shown}) from None


def _read_body(req: falcon.Request, limit: int) -> bytes:
    length = req.content_length
    if length is not None and length > limit:
        raise ManifestTooLarge(f"manifest of {length} bytes exceeds the {limit}-byte limit")
    data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise ManifestTooLarge(f"manifest exceeds the {limit}-byte limit")
    return data


class ManifestResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _resolve(self, req: falcon.Request, name: str, reference: str) -> tuple[str | None, Digest, bytes]:
        check_name(name)
        tag, d = lookup_reference(reference)
        self.ctx.authorize(req, pull(name))
        upstream = self.ctx.proxy.client_for(name) if self.ctx.proxy is not None else None
        if upstream is not None:
            d, raw = self.ctx.proxy.manifest(upstream, name, tag, d)  # type: ignore[union-attr]
            return tag, d, raw
        store = self.ctx.store
        if tag is not None:
            d = store.resolve_tag(name, tag)
            if d is None:
                raise ManifestUnknown(f"manifest tagged {tag!r} is not in repository {name!r}",
                                      detail={"tag": tag})
        assert d is not None
        raw = store.get_manifest(name, d)
        if raw is None:
            raise ManifestUnknown(f"manifest {d} is not in repository {name!r}", detail={"digest": str(d)})
        return tag, d, raw

    def _headers(self, resp: falcon.Response, d: Digest, raw: bytes) -> None:
        resp.content_type = media_type_of(raw)
        digest = str(d)
        resp.set_header("Docker-Content-Digest", digest)
        resp.set_header("ETag", f'"{digest}"')

    def on_head(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        _, d, raw = self._resolve(req, name, reference)
        self._headers(resp, d, raw)
        resp.content_length = len(raw)

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        tag, d, raw = self._resolve(req, name, reference)
        self._headers(resp, d, raw)
        resp.data = raw
        if self.ctx.wants_events():
            self.ctx.emit(req, "pull", name, self._target(d, raw, resp.content_type, tag), "manifests")

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        check_name(name)
        tag, ref_digest = parse_reference(reference)
        self.ctx.authorize(req, push(name))
        raw = _read_body(req, MAX_MANIFEST_SIZE)
        manifest = parse_manifest(raw, req.content_type)
        d = manifest.digest
        if ref_digest is not None:
            if ref_digest.algorithm != "sha256":
                d = digest_of(raw, ref_digest.algorithm)
            if ref_digest != d:
                raise DigestInvalid(f"manifest digest {d} does not match the reference {ref_digest}",
                                    detail={"expected": str(ref_digest), "actual": str(d)})
        store = self.ctx.store
        missing = [b for b in manifest.blobs if store.layer_size(name, b) is None]
        if missing:
            raise ManifestBlobUnknown(f"blob {missing[0]} is not in repository {name!r}",
                                      detail={"digest": str(missing[0])})
        absent = [c for c in manifest.children if not store.has_manifest(name, c)]
        if absent:
            raise ManifestBlobUnknown(f"manifest {absent[0]} referenced by the index is not in repository {name!r}",
                                      detail={"digest": str(absent[0])})
        # Order matters for readers on other processes: blob, revision, referrer index, then tag.
        store.put_manifest(name, d, raw)
        if manifest.subject is not None:
            store.add_referrer(name, manifest.subject, d)
            resp.set_header("OCI-Subject", str(manifest.subject))
        if tag is not None:
            store.tag(name, tag, d)
        resp.status = falcon.HTTP_201
        resp.location = url(req, f"/v2/{name}/manifests/{d}")
        resp.set_header("Docker-Content-Digest", str(d))
        resp.content_length = 0
        if self.ctx.wants_events():
            self.ctx.emit(req, "push", name, self._target(d, raw, manifest.media_type, tag), "manifests")

    def _target(self, d: Digest, raw: bytes, media_type: str | None, tag: str | None) -> dict[str, Any]:
        target = event_target(d, len(raw), media_type or "application/octet-stream", tag)
        if self.ctx.include_references:
            target["references"] = manifest_references(raw)
        return target

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str, reference: str) -> None:
        check_name(name)
        tag, d = parse_reference(reference)
        self.ctx.authorize(req, delete(name))
        if not self.ctx.delete_enabled:
            raise Unsupported("deletion is disabled (storage.delete.enabled is false)")
        store = self.ctx.store
        if tag is not None:
            if not store.untag(name, tag):
                raise ManifestUnknown(f"tag {tag!r} is not in repository {name!r}", detail={"tag": tag})
            self.ctx.emit(req, "delete", name, {"tag": tag})
        else:
            assert d is not None
            raw = store.get_manifest(name, d)
            if raw is None or not store.delete_manifest(name, d):
                raise ManifestUnknown(f"manifest {d} is not in repository {name!r}", detail={"digest": str(d)})
            try:
                subject = parse_manifest(raw, None).subject
            except Exception:
                subject = None
            if subject is not None:
                store.remove_referrer(name, subject, d)
            self.ctx.emit(req, "delete", name, {"digest": str(d)})
        resp.status = falcon.HTTP_202
        resp.content_length = 0


