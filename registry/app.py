"""``create_app(config, pm)``: the Falcon application for the OCI Distribution API."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import falcon
import pluggy

from registry.config import (
    build_access_controller,
    build_storage,
    delete_enabled,
    http_headers,
    readonly_enabled,
    redirect_disabled,
)
from registry.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RegistryError,
    Unsupported,
    error_body,
)
from registry.handlers.base import API_VERSION_HEADER, Context
from registry.handlers.blobs import BlobResource
from registry.handlers.listing import CatalogResource, ReferrersResource, TagsResource
from registry.handlers.manifests import ManifestResource
from registry.handlers.storage_errors import registry_error_for
from registry.handlers.uploads import UploadResource, UploadsResource
from registry.plugins import call_each
from registry.routing import ROUTES, RegexRouter
from registry.storage.checked import checked
from registry.storage.driver import StorageDriver, StorageError
from registry.storage.store import Store
from registry.storage.uploads import Uploads

log = logging.getLogger(__name__)

#: Bytes per read when streaming a blob out (Falcon's default of 8 KiB costs CPU per GiB).
STREAM_BLOCK_SIZE = 1 << 20


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RegistryApp(falcon.App):
    _STREAM_BLOCK_SIZE = STREAM_BLOCK_SIZE


class BaseResource:
    """``GET /v2/``: the API version check (and the auth probe clients use)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ctx.authorize(req, [])
        resp.content_type = "application/json"
        resp.data = b"{}"

    on_head = on_get


class _Headers:
    """Adds the API version header and ``http.headers`` to every response."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.headers = [(k, ", ".join(v)) for k, v in http_headers(config).items()] + [API_VERSION_HEADER]

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        for key, value in self.headers:
            resp.set_header(key, value)


class _ReadOnly:
    """Refuses writes in read-only mode (``storage.maintenance.readonly``)."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if req.method in _WRITE_METHODS:
            raise Unsupported("the registry is in read-only mode (storage.maintenance.readonly)")


class _Reporting:
    """Reports each finished request to the ``registry_request_finished`` implementations."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.request_id = str(uuid.uuid4())
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        route = getattr(resource, "route_name", "unknown") if resource is not None else "none"
        call_each(
            self.pm,
            "registry_request_finished",
            method=req.method,
            route=route,
            status=resp.status_code,
            duration=time.perf_counter() - req.context.started,
        )


def _middleware(pm: pluggy.PluginManager, config: Mapping[str, Any]) -> list[object]:
    """Only the middleware the configuration needs: Falcon calls each method of each one on every
    request, and a manifest pull is short enough for that to show."""
    middleware: list[object] = []
    if pm.hook.registry_request_finished.get_hookimpls():
        middleware.append(_Reporting(pm))
    if readonly_enabled(config):
        middleware.append(_ReadOnly())
    # Response methods run last-listed first: the headers are set before the request is reported.
    middleware.append(_Headers(config))
    return middleware


def _send_error(resp: falcon.Response, err: RegistryError) -> None:
    resp.status = err.status
    resp.content_type = "application/json"
    resp.data = error_body(err)
    resp.stream = None
    for key, value in err.headers.items():
        resp.set_header(key, value)


def create_app(
    config: Mapping[str, Any], pm: pluggy.PluginManager, *, driver: StorageDriver | None = None
) -> falcon.App:
    """Build the registry's Falcon app.

    :param config: the validated configuration mapping (Distribution's ``config.yml`` shape).
    :param pm: the plugin manager (see :func:`registry.plugins.create_plugin_manager`).
    :param driver: a storage driver to use instead of the one the config names (tests).
    """
    driver = checked(driver) if driver is not None else build_storage(config, pm)
    store = Store(driver)
    ctx = Context(
        store=store,
        uploads=Uploads(store),
        pm=pm,
        access=build_access_controller(config, pm),
        delete_enabled=delete_enabled(config),
        redirect_enabled=not redirect_disabled(config),
        config=config,
    )
    app = RegistryApp(router=RegexRouter(), middleware=_middleware(pm, config), cors_enable=False)
    app.registry_context = ctx  # for the server's maintenance threads (upload purging)
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.keep_blank_qs_values = True
    resources = {
        "base": BaseResource(ctx),
        "catalog": CatalogResource(ctx),
        "tags": TagsResource(ctx),
        "manifest": ManifestResource(ctx),
        "upload": UploadResource(ctx),
        "uploads": UploadsResource(ctx),
        "blob": BlobResource(ctx),
        "referrers": ReferrersResource(ctx),
    }
    for route_name, pattern in ROUTES:
        resource = resources[route_name]
        resource.route_name = route_name  # type: ignore[attr-defined]
        app.add_route(pattern, resource)

    def registry_error(req: falcon.Request, resp: falcon.Response, ex: RegistryError, params: dict) -> None:
        _send_error(resp, ex)

    def http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict) -> None:
        if ex.status_code == 404:
            err: RegistryError = NotFound()
        elif ex.status_code == 405:
            err = MethodNotAllowed(f"{req.method} is not allowed on this endpoint")
        else:
            err = BadRequest(ex.title or "bad request")
            err.status = ex.status_code  # type: ignore[misc]
        for key, value in (ex.headers or {}).items():
            err.headers.setdefault(key, value)
        _send_error(resp, err)

    def storage_error(req: falcon.Request, resp: falcon.Response, ex: StorageError, params: dict) -> None:
        err, report = registry_error_for(ex)
        log.error("storage error on %s %s: %s: %s", req.method, req.path, type(ex).__name__, ex)
        if report:
            call_each(pm, "registry_report_exception", exc=ex, request=req)
        _send_error(resp, err)

    def unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        log.exception("unhandled error on %s %s", req.method, req.path)
        call_each(pm, "registry_report_exception", exc=ex, request=req)
        _send_error(resp, InternalError())

    # Falcon picks the most specific handler for an exception's type.
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(StorageError, storage_error)
    app.add_error_handler(falcon.HTTPError, http_error)
    app.add_error_handler(RegistryError, registry_error)
    return app

