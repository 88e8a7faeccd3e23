"""A regex router for ``/v2/`` and its routes (the spec's grammars are in :mod:`registry.grammar`).

Repository names contain slashes, and Falcon's ``path`` converter can only end a template, so routes
are the spec's regular expressions matched in order. Everything a route captures is already valid by
the grammar when a responder sees it; nothing else reaches a storage path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import falcon
import falcon.routing

# The grammars live in registry.grammar (no Falcon there); the names stay importable from here.
from registry.grammar import (  # noqa: F401
    DIGEST,
    DIGEST_RE,
    MAX_NAME_LENGTH,
    NAME,
    NAME_COMPONENT,
    NAME_RE,
    REFERENCE_RE,
    TAG,
    TAG_RE,
    UPLOAD_ID,
)

_ANY_NAME = r"(?P<name>.+?)"


class RegexRouter:
    """A Falcon router whose routes are compiled regular expressions tried in order."""

    def __init__(self) -> None:
        self._routes: list[tuple[Callable[[str], re.Match[str] | None], object, dict[str, Any], str]] = []

    def add_route(self, uri_template: str, resource: object, **kwargs: Any) -> None:
        """``uri_template`` is a regular expression that must match the whole path."""
        method_map = falcon.routing.map_http_methods(resource, suffix=kwargs.get("suffix"))
        falcon.routing.set_default_responders(method_map)
        self._routes.append((re.compile(uri_template).fullmatch, resource, method_map, uri_template))

    def find(self, uri: str, req: falcon.Request | None = None) -> tuple[object, dict, dict, str] | None:
        for fullmatch, resource, method_map, template in self._routes:
            match = fullmatch(uri)
            if match:
                params = match.groupdict()
                if req is not None:
                    # Kept for the access log, which wants the repository after the responder ran.
                    req.context.params = params
                return resource, method_map, params, template
        return None


# Routes capture a loose name (anything), so that a malformed name gets NAME_INVALID rather than
# a 404 for an unknown path; responders validate it with NAME_RE before touching storage.
ROUTES: list[tuple[str, str]] = [
    # First, as the most requested (a pull is mostly manifest GETs and HEADs, and routes are tried
    # in order: 0.8 us saved per request). It matches nothing the routes after it match, but for
    # our repository delete below, which it leaves alone.
    ("manifest", rf"/v2/(?!_repositories/){_ANY_NAME}/manifests/(?P<reference>[^/]*)"),
    ("base", r"/v2/?"),
    ("catalog", r"/v2/_catalog"),
    # Ours: repository delete. Before the OCI routes, which would take "a/manifests/b" for their
    # own; no OCI name starts with "_", so it can never shadow one of them.
    ("repository", rf"/v2/_repositories/{_ANY_NAME}"),
    ("tags", rf"/v2/{_ANY_NAME}/tags/list"),
    ("upload", rf"/v2/{_ANY_NAME}/blobs/uploads/(?P<upload_id>[^/]+)"),
    ("uploads", rf"/v2/{_ANY_NAME}/blobs/uploads/?"),
    ("blob", rf"/v2/{_ANY_NAME}/blobs/(?P<digest>[^/]*)"),
    ("referrers", rf"/v2/{_ANY_NAME}/referrers/(?P<digest>[^/]*)"),
]

#: Each API route's template as the spec writes it: what the access log and metrics call the route.
TEMPLATES: dict[str, str] = {
    "base": "/v2/",
    "catalog": "/v2/_catalog",
    "repository": "/v2/_repositories/{name}",
    "tags": "/v2/{name}/tags/list",
    "manifest": "/v2/{name}/manifests/{reference}",
    "upload": "/v2/{name}/blobs/uploads/{reference}",
    "uploads": "/v2/{name}/blobs/uploads/",
    "blob": "/v2/{name}/blobs/{digest}",
    "referrers": "/v2/{name}/referrers/{digest}",
}
