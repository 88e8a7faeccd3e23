"""Routes that plugins add (``registry_routes``): a descriptor, and the rules a route must obey."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

#: The listeners a route can be served on: the API's, or the debug one (``http.debug.addr``).
Listener = Literal["main", "debug"]

#: Paths a plugin route may never match: the API's, so that no plugin answers for the registry.
_RESERVED_PROBES = ("/v2", "/v2/", "/v2/_catalog", "/v2/a/tags/list", "/v2/a/manifests/b", "/v2/a/blobs/b")


@dataclasses.dataclass(frozen=True)
class Route:
    """One extra HTTP route, declared by ``registry_routes``.

    :param path: a regular expression matched against the whole request path (without
        ``http.prefix``), e.g. ``r"/metrics"`` or ``r"/ui/(?P<page>[a-z]+)"``; named groups are passed
        to the responders as keyword arguments, as for the core's routes (Falcon's ``{x:path}``
        converter cannot sit mid-route, so the registry routes by regular expression).
    :param handler: a Falcon resource (``on_get(req, resp, **groups)``...) or a WSGI application
        (``handler(environ, start_response)``), which then answers every method.
    :param listener: ``"main"`` (beside the API) or ``"debug"`` (the debug listener only).
    :param name: the route's name for ``registry_request_finished`` (default: the path).
    """

    path: str
    handler: Any
    listener: Listener = "main"
    name: str = ""


def check_route(route: Any) -> Route:
    """Return ``route`` if it may be served, else raise ``ValueError`` saying why."""
    if not isinstance(route, Route):
        raise ValueError(f"not a registry.routes.Route: {route!r}")
    if route.listener not in ("main", "debug"):
        raise ValueError(f"route {route.path!r}: listener must be 'main' or 'debug', not {route.listener!r}")
    try:
        pattern = re.compile(route.path)
    except re.error as exc:
        raise ValueError(f"route {route.path!r} is not a regular expression: {exc}") from None
    if not route.path.startswith("/"):
        raise ValueError(f"route {route.path!r} must start with '/'")
    if route.path.startswith("/v2") or any(pattern.fullmatch(p) for p in _RESERVED_PROBES):
        raise ValueError(f"route {route.path!r} would shadow the registry API (/v2/...)")
    if pattern.fullmatch("/debug/health"):
        raise ValueError(f"route {route.path!r} would shadow /debug/health (declare a health check instead)")
    return route


__all__ = ["Listener", "Route", "check_route"]
