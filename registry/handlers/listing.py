"""Paginated listings: ``/v2/<name>/tags/list``, ``/v2/_catalog`` and the referrers API."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import falcon

from registry.auth import Access
from registry.config import catalog_max_entries
from registry.digests import Digest, parse_digest
from registry.errors import BadRequest, DigestInvalid, ManifestInvalid, NameUnknown
from registry.handlers.base import Context, check_digest, check_name, pull, url
from registry.manifests import OCI_INDEX, media_type_of, parse_manifest
from registry.storage.driver import PathNotFoundError

_DESCRIPTOR_KEYS = frozenset({"mediaType", "digest", "size", "artifactType", "annotations"})

#: The most a client may ask for in one page of tags (the catalog's limit is ``catalog.maxentries``).
MAX_PAGE = 10000


def page_params(req: falcon.Request) -> tuple[int | None, str | None]:
    n_raw = req.get_param("n")
    n = None
    if n_raw is not None:
        # ASCII digits only (str.isdigit also takes '²', which int() refuses), and no int() of a
        # huge string (Python refuses over 4300 digits): anything that long is past MAX_PAGE anyway.
        if not (n_raw.isascii() and n_raw.isdigit()):
            raise BadRequest(f"n must be a non-negative integer, got {n_raw[:50]!r}")
        digits = n_raw.lstrip("0") or "0"
        n = MAX_PAGE if len(digits) > len(str(MAX_PAGE)) else min(int(digits), MAX_PAGE)
    last = req.get_param("last")
    return n, last


def next_link(path: str, last: str, n: int) -> str:
    return f'<{path}?{urlencode({"last": last, "n": n})}>; rel="next"'


class TagsResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        check_name(name)
        n, last = page_params(req)
        self.ctx.authorize(req, pull(name))
        upstream = self.ctx.proxy.client_for(name) if self.ctx.proxy is not None else None
        # A proxied repository lists the upstream's tags, and its cached ones when the upstream cannot.
        proxied = self.ctx.proxy.tags(upstream, name) if upstream is not None else None  # type: ignore[union-attr]
        try:
            tags = proxied if proxied is not None else self.ctx.store.tags(name)
        except PathNotFoundError:
            if not self.ctx.store.repository_exists(name):
                raise NameUnknown(f"repository {name!r} is not known to this registry", detail={"name": name}) from None
            tags = []
        if last:
            tags = [t for t in tags if t > last]
        limit = n if n is not None else None
        page = tags if limit is None else tags[:limit]
        if limit is not None and len(tags) > limit and page:
            resp.append_header("Link", next_link(url(req, f"/v2/{name}/tags/list"), page[-1], limit))
        resp.content_type = "application/json"
        resp.data = json.dumps({"name": name, "tags": page}).encode()


class CatalogResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        n, last = page_params(req)
        self.ctx.authorize(req, [Access("registry", "catalog", "*")])
        most = catalog_max_entries(self.ctx.config)  # the page size without n, and the largest page
        limit = most if n is None else min(n, most)
        repos = list(self.ctx.store.repositories(last=last or None, limit=limit + 1)) if limit else []
        page = repos[:limit]
        if len(repos) > limit and page:
            resp.append_header("Link", next_link(url(req, "/v2/_catalog"), page[-1], limit))
        resp.content_type = "application/json"
        resp.data = json.dumps({"repositories": page}).encode()


class ReferrersResource:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str, digest: str) -> None:
        check_name(name)
        subject = check_digest(digest)
        self.ctx.authorize(req, pull(name))
        artifact_type = req.get_param("artifactType")
        store = self.ctx.store
        descriptors = []
        for d in store.referrers(name, subject):
            raw = store.get_manifest(name, d)
            if raw is None:
                continue
            try:
                manifest = parse_manifest(raw, None)
            except ManifestInvalid:
                continue
            desc = {"mediaType": media_type_of(raw), "digest": str(d), "size": len(raw)}
            if manifest.artifact_type:
                desc["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                desc["annotations"] = manifest.annotations
            descriptors.append(desc)
        known = {x["digest"] for x in descriptors}
        descriptors += [x for x in self._from_tag_schema(name, subject) if x["digest"] not in known]
        if artifact_type is not None:
            descriptors = [x for x in descriptors if x.get("artifactType") == artifact_type]
            resp.set_header("OCI-Filters-Applied", "artifactType")
        descriptors.sort(key=lambda x: x["digest"])
        resp.content_type = OCI_INDEX
        resp.data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}).encode()

    def _from_tag_schema(self, name: str, subject: Digest) -> list[dict]:
        """Descriptors in the ``<alg>-<hex>`` tag index that clients keep where a registry has no
        referrers API (Distribution 2.8): the spec requires listing them once the API is enabled."""
        store = self.ctx.store
        d = store.resolve_tag(name, f"{subject.algorithm}-{subject.hex[:64]}")  # <ref> is limited to 64
        raw = store.get_manifest(name, d) if d is not None else None
        if raw is None:
            return []
        try:
            doc = json.loads(raw)
        except ValueError:
            return []
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            return []
        found = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            try:
                ref = parse_digest(entry["digest"])
            except DigestInvalid:
                continue
            if store.has_manifest(name, ref):
                found.append({k: v for k, v in entry.items() if k in _DESCRIPTOR_KEYS})
        return found
