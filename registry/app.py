"""``create_app(config, pm)``: the Falcon application for the OCI Distribution API.

The app has a lifecycle (``startup()``, ``shutdown()``, or ``with app:``), the WSGI application to
serve on the main listener (``wsgi_app()``: the app in the plugins' WSGI middleware) and a second,
small app for the debug listener (``debug_app``: ``/debug/health`` and the plugins' debug routes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import falcon
import pluggy

from registry.config import (
    ConfigError,
    build_access_controller,
    build_storage,
    delete_enabled,
    http_headers,
    readonly_enabled,
    redirect_disabled,
    settings_of,
)
from registry.errors import (
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RegistryError,
    Unavailable,
    Unsupported,
    error_body,
)
from registry.handlers.base import API_VERSION_HEADER, REQUEST_ID_HEADER, Context, request_id
from registry.handlers.blobs import BlobResource
from registry.handlers.listing import CatalogResource, ReferrersResource, TagsResource
from registry.handlers.manifests import ManifestResource
from registry.handlers.repositories import RepositoryResource
from registry.handlers.storage_errors import registry_error_for
from registry.handlers.uploads import UploadResource, UploadsResource
from registry.health import HealthCheck, PeriodicCheck, health_status, storage_check
from registry.ops.quota import attach_quotas
from registry.plugins import call_each, collect, each_caller, options_of
from registry.proxy import PullThroughCache, proxy_settings
from registry.routes import Route, check_route
from registry.routing import NAME_RE, ROUTES, TEMPLATES, RegexRouter
from registry.storage.checked import checked
from registry.storage.driver import Capability, StorageDriver, StorageError
from registry.storage.purge import purger_for
from registry.storage.store import QuotaExceededError, Store
from registry.storage.uploads import Uploads

log = logging.getLogger(__name__)

#: Bytes per read when streaming a blob out (Falcon's default of 8 KiB costs CPU per GiB).
STREAM_BLOCK_SIZE = 1 << 20


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: The bodiless requests answered from a few small reads and no other I/O, by method: the version
#: check, a manifest by tag or digest, and a blob's ``HEAD`` (its ``GET`` streams the blob).
_SMALL_READS: Mapping[str, re.Pattern[str]] = {
    "GET": re.compile(r"/v2/?|/v2/.+/manifests/[^/]*"),
    "HEAD": re.compile(r"/v2/?|/v2/.+/(?:manifests|blobs)/[^/]*"),
}


class RegistryApp(falcon.App):
    """The API's Falcon app, with the registry's lifecycle.

    Whoever serves it calls :meth:`startup` before serving and :meth:`shutdown` after (or uses the
    app as a context manager), serves :meth:`wsgi_app` rather than the app itself, and serves
    :attr:`debug_app` on the debug address if it has one. ``registry serve`` does all of this.
    """

    _STREAM_BLOCK_SIZE = STREAM_BLOCK_SIZE

    #: What the handlers share (storage, plugins, config); set by :func:`create_app`.
    registry_context: Context
    #: The debug listener's app: ``/debug/health`` and the plugins' ``debug`` routes.
    debug_app: falcon.App
    #: The health checks served at ``/debug/health`` (the built-in storage check and the plugins').
    health_checks: list[HealthCheck]
    #: Whether this configuration answers the requests :meth:`is_small_read` names without
    #: waiting on anything but a local file system (see :func:`_answers_small_reads_locally`).
    small_reads_local: bool = False

    def is_small_read(self, method: str, path: str) -> bool:
        """Whether a bodiless ``method`` on ``path`` (below the mount point) is one the app answers
        in microseconds, without a network or a plugin in the way: ``False`` unless
        :attr:`small_reads_local`, and then for ``GET /v2/``, manifest ``GET``/``HEAD`` and blob
        ``HEAD``. :mod:`registry.serve` runs these on its I/O thread."""
        if not self.small_reads_local:
            return False
        pattern = _SMALL_READS.get(method)
        return pattern is not None and pattern.fullmatch(path) is not None

    def _init_lifecycle(self, services: Iterable[Any]) -> None:
        #: What runs beside the requests (upload purging, periodic checks): ``start()``, ``stop(timeout)``.
        self.services = list(services)
        self._state = "created"
        self._state_lock = threading.Lock()
        self._wsgi: Callable[..., Any] | None = None

    def startup(self) -> None:
        """Start the maintenance threads (upload purging, periodic health checks), then call every
        ``registry_startup`` implementation on its own. Calls after the first do nothing."""
        with self._state_lock:
            if self._state != "created":
                return
            self._state = "started"
        ctx = self.registry_context
        for service in self.services:
            try:
                service.start()
            except Exception:
                log.exception("could not start %s", type(service).__name__)
        call_each(ctx.pm, "registry_startup", app=self, config=ctx.config)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Call every ``registry_shutdown`` implementation on its own, stop the maintenance threads
        (waiting up to ``timeout`` seconds for each) and close the storage driver. Calls after the
        first do nothing; an app never started is only closed."""
        with self._state_lock:
            if self._state == "stopped":
                return
            started, self._state = self._state == "started", "stopped"
        ctx = self.registry_context
        if started:
            call_each(ctx.pm, "registry_shutdown")
            for service in reversed(self.services):
                try:
                    service.stop(timeout)
                except Exception:
                    log.exception("could not stop %s", type(service).__name__)
        try:
            ctx.store.driver.close()
        except Exception:
            log.exception("closing the storage driver failed")
        if ctx.proxy is not None:
            ctx.proxy.close()

    def __enter__(self) -> RegistryApp:
        self.startup()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def wsgi_app(self) -> Callable[..., Any]:
        """This app wrapped in every ``registry_wsgi_middleware`` (built once): what the main
        listener serves. The app itself when no plugin wraps it."""
        if self._wsgi is None:
            ctx = self.registry_context
            wsgi: Callable[..., Any] = self
            for impl in reversed(ctx.pm.hook.registry_wsgi_middleware.get_hookimpls()):
                kwargs = {"app": wsgi, "config": ctx.config}
                try:
                    wrapped = impl.function(*[kwargs[name] for name in impl.argnames])
                except Exception:
                    log.exception("plugin %s failed in registry_wsgi_middleware; not wrapping", impl.plugin_name)
                    continue
                if wrapped is not None:
                    if not callable(wrapped):
                        log.error("plugin %s returned a non-callable from registry_wsgi_middleware", impl.plugin_name)
                        continue
                    wsgi = wrapped
            if wsgi is not self:
                self.small_reads_local = False  # a plugin's middleware may do anything on every request
            self._wsgi = wsgi
        return self._wsgi


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
    """Adds the API version header, ``http.headers`` and the request id to every response.

    The request id is made on first use (:func:`registry.handlers.base.request_id`), by an event or
    at the latest here: no ``process_request`` method, whose call every request would pay for.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.headers = [(k, ", ".join(v)) for k, v in http_headers(config).items()] + [API_VERSION_HEADER]

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        for key, value in self.headers:
            resp.set_header(key, value)
        resp.set_header(REQUEST_ID_HEADER, request_id(req))


class _ProxyWrites:
    """Refuses pushes and deletes to a repository an upstream serves (``proxy:``), as Distribution
    refuses them on a pull-through cache: 405 ``UNSUPPORTED``."""

    def __init__(self, cache: PullThroughCache) -> None:
        self.cache = cache

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        name = params.get("name")
        if req.method in _WRITE_METHODS and name is not None:
            client = self.cache.client_for(name)
            if client is not None:
                raise Unsupported(f"repository {name[:300]!r} is a pull-through cache of {client.remote.url}: "
                                  f"{req.method} is not supported (push to the upstream instead)")


class _ReadOnly:
    """Refuses writes in read-only mode (``storage.maintenance.readonly``)."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if req.method in _WRITE_METHODS:
            raise Unsupported("the registry is in read-only mode (storage.maintenance.readonly)")


#: The access log: one line per request, at ``info``, unless ``log.accesslog.disabled``.
access_log = logging.getLogger("registry.access")


_LOADED_NS = time.time_ns()


class _AccessRecord(logging.LogRecord):
    """An access-log record, made without ``Logger.info``'s walk up the stack for the caller and
    ``LogRecord``'s path splitting (together half of an access line's cost): every attribute a
    formatter may name is set, the source ones to this module."""

    def __init__(self, args: tuple[Any, ...], access: dict[str, Any]) -> None:
        now = time.time_ns()
        self.name = "registry.access"
        self.msg = "%s %s %s"
        self.args = args
        self.access = access
        self.levelname = "INFO"
        self.levelno = logging.INFO
        self.pathname, self.filename, self.module = __file__, "app.py", "app"
        self.exc_info = self.exc_text = self.stack_info = None
        self.lineno = 0
        self.funcName = "process_response"
        self.created = now / 1e9
        self.msecs = (now % 1_000_000_000) // 1_000_000 + 0.0
        self.relativeCreated = (now - _LOADED_NS) / 1e6
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.processName = "MainProcess"
        self.process = os.getpid()
        self.taskName = None


def _bytes_out(req: falcon.Request, resp: falcon.Response) -> int:
    if req.method == "HEAD":
        return 0
    data = resp.data
    if data is not None:
        return len(data)
    length = resp.content_length
    return int(length) if length else 0


class _Finish(_Headers):
    """The headers of :class:`_Headers`, then the access-log line and ``registry_request_finished``:
    one object, so that a request pays for one ``process_request`` and one ``process_response``.

    The access line carries the method, the route's template, the repository when the route has
    one, the status, bytes in and out, the duration, the request id, the remote address and the user
    agent, as ``extra={"access": {...}}`` for the formatters: never a header, so never credentials.
    """

    def __init__(self, config: Mapping[str, Any], pm: pluggy.PluginManager, *, log_access: bool) -> None:
        super().__init__(config)
        self.log_access = log_access
        self.on_finished = each_caller(pm, "registry_request_finished")

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        rid = request_id(req)
        for key, value in self.headers:
            resp.set_header(key, value)
        resp.set_header(REQUEST_ID_HEADER, rid)
        duration = time.perf_counter() - req.context.started
        route = getattr(resource, "route_name", "unknown") if resource is not None else "none"
        status = resp.status_code
        bytes_in = req.content_length or 0
        bytes_out = _bytes_out(req, resp)
        if self.log_access and access_log.isEnabledFor(logging.INFO):
            name = (req.context.get("params") or {}).get("name")
            fields = {
                "method": req.method,
                "route": TEMPLATES.get(route, route),
                "repository": name if name is not None and NAME_RE.fullmatch(name) else None,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(duration * 1000, 3),
                "request_id": rid,
                "remote_addr": req.remote_addr or "",
                "user_agent": req.user_agent or "",
            }
            access_log.handle(_AccessRecord((req.method, fields["route"], status), fields))
        if self.on_finished is not None:
            self.on_finished(method=req.method, route=route, status=status, duration=duration,
                             bytes_in=bytes_in, bytes_out=bytes_out)


class _HealthGate:
    """While a health check fails, the API answers 503 ``UNAVAILABLE`` (as Distribution's
    ``health.Handler`` does), so that a load balancer takes this node out of rotation;
    ``/debug/health`` says which check failed."""

    def __init__(self, checks: list[HealthCheck]) -> None:
        self.checks = checks

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if health_status(self.checks):
            raise Unavailable("health check failed: please see /debug/health")


def _middleware(pm: pluggy.PluginManager, config: Mapping[str, Any], checks: list[HealthCheck],
                proxy: PullThroughCache | None = None) -> list[object]:
    """Only the middleware the configuration needs: Falcon calls each method of each one on every
    request, and a manifest pull is short enough for that to show."""
    # Decided once: at a level above info (``log.level: warn``) no access line would be written,
    # and a request should not pay for making one.
    log_access = (options_of(config, "log.accesslog").get("disabled") is not True
                  and access_log.isEnabledFor(logging.INFO))
    finish = log_access or bool(pm.hook.registry_request_finished.get_hookimpls())
    # First: its process_request times the request before another middleware can refuse it.
    middleware: list[object] = [_Finish(config, pm, log_access=log_access)] if finish else []
    if checks:
        middleware.append(_HealthGate(checks))
    if readonly_enabled(config):
        middleware.append(_ReadOnly())
    if proxy is not None:
        middleware.append(_ProxyWrites(proxy))
    if not finish:
        middleware.append(_Headers(config))
    return middleware


def _send_error(resp: falcon.Response, err: RegistryError) -> None:
    resp.status = err.status
    resp.content_type = "application/json"
    resp.data = error_body(err)
    resp.stream = None
    for key, value in err.headers.items():
        resp.set_header(key, value)


class _HealthResource:
    """``GET /debug/health``: ``{}`` when every check passes, else 503 and the failures by name."""

    route_name = "health"

    def __init__(self, checks: list[HealthCheck]) -> None:
        self.checks = checks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        failed = health_status(self.checks)
        resp.status = falcon.HTTP_503 if failed else falcon.HTTP_200
        resp.content_type = "application/json"
        resp.data = json.dumps(failed).encode()

    on_head = on_get


class _WSGIResource:
    """A plugin's WSGI application as a Falcon resource: every method goes to it, with the request's
    environ; its (small: a metrics page, a status page) response is read whole."""

    def __init__(self, wsgi: Callable[..., Any], route_name: str) -> None:
        self.wsgi = wsgi
        self.route_name = route_name

    def on_request(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        started: dict[str, Any] = {}
        written: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started["status"], started["headers"] = status, headers
            return written.append

        body = self.wsgi(req.env, start_response)
        try:
            written.extend(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        resp.status = started.get("status", "500 Internal Server Error")
        for key, value in started.get("headers", ()):
            if key.lower() != "content-length":  # Falcon sets it from the body
                resp.append_header(key, value)
        resp.data = b"".join(written)

    on_get = on_head = on_post = on_put = on_patch = on_delete = on_options = on_request


def _resource_of(route: Route) -> object:
    name = route.name or route.path
    handler = route.handler
    if any(hasattr(handler, f"on_{m}") for m in ("get", "head", "post", "put", "patch", "delete", "options")):
        if not hasattr(handler, "route_name"):
            try:
                handler.route_name = name
            except AttributeError:
                pass  # a resource with __slots__: reported as "unknown"
        return handler
    if callable(handler):
        return _WSGIResource(handler, name)
    raise ValueError(f"route {route.path!r}: the handler is neither a Falcon resource nor a WSGI application")


def _plugin_routes(pm: pluggy.PluginManager) -> list[Route]:
    try:
        return [check_route(route) for route in collect(pm, "registry_routes", isolated=True)]
    except ValueError as exc:
        raise ConfigError([f"plugin route refused: {exc}"]) from exc


def _plugin_health_checks(pm: pluggy.PluginManager) -> list[HealthCheck]:
    checks = []
    for check in collect(pm, "registry_health_checks", isolated=True):
        if not (isinstance(getattr(check, "name", None), str) and callable(getattr(check, "check", None))):
            raise ConfigError([f"registry_health_checks: not a registry.health.HealthCheck: {check!r}"])
        checks.append(check)
    return checks


def _add_error_handlers(app: falcon.App, pm: pluggy.PluginManager) -> None:
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

    def quota_error(req: falcon.Request, resp: falcon.Response, ex: QuotaExceededError, params: dict) -> None:
        # A refusal by configuration, not a storage fault: no error line, no report.
        log.info("quota refused %s %s: %s", req.method, req.path, ex)
        _send_error(resp, registry_error_for(ex)[0])

    def unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        log.exception("unhandled error on %s %s", req.method, req.path)
        call_each(pm, "registry_report_exception", exc=ex, request=req)
        _send_error(resp, InternalError())

    # Falcon picks the most specific handler for an exception's type.
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(StorageError, storage_error)
    app.add_error_handler(QuotaExceededError, quota_error)
    app.add_error_handler(falcon.HTTPError, http_error)
    app.add_error_handler(RegistryError, registry_error)


def _new_falcon_app(cls: type[falcon.App], pm: pluggy.PluginManager, middleware: list[object]) -> Any:
    app = cls(router=RegexRouter(), middleware=middleware, cors_enable=False)
    app.req_options.auto_parse_form_urlencoded = False
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.keep_blank_qs_values = True
    _add_error_handlers(app, pm)
    return app


def _answers_small_reads_locally(ctx: Context, checks: list[HealthCheck]) -> bool:
    """Whether every step of a small read (see :meth:`RegistryApp.is_small_read`) is known to be
    quick: a driver that declares :attr:`Capability.LOCAL_READS`, no access controller (a token
    or htpasswd check may cost milliseconds of CPU), no ``registry_authorize`` implementation (it
    may ask a remote service), no pull-through cache (a miss fetches from the upstream) and only
    periodic health checks (the API's health gate runs the others on every request). Event and
    request-finished hooks are allowed: their contract is to queue slow work and to stay cheap."""
    return (Capability.LOCAL_READS in ctx.store.driver.capabilities
            and ctx.access is None and ctx.proxy is None
            and not ctx.pm.hook.registry_authorize.get_hookimpls()
            and all(isinstance(c.check, PeriodicCheck) for c in checks))


def create_app(
    config: Mapping[str, Any], pm: pluggy.PluginManager, *, driver: StorageDriver | None = None
) -> RegistryApp:
    """Build the registry's Falcon app.

    Calls every ``registry_configure`` implementation (once per app, before anything is built) and
    collects the plugins' routes and health checks; nothing is started until
    :meth:`RegistryApp.startup`.

    :param config: the validated configuration mapping (Distribution's ``config.yml`` shape).
    :param pm: the plugin manager (see :func:`registry.plugins.create_plugin_manager`).
    :param driver: a storage driver to use instead of the one the config names (tests). It is closed
        by :meth:`RegistryApp.shutdown` as the configured one would be.
    :raises ConfigError: when a plugin refuses the configuration, the storage driver or access
        controller cannot be built, or a plugin declares a route that is not allowed.
    """
    pm.hook.registry_configure(config=config, pm=pm)
    driver = checked(driver) if driver is not None else build_storage(config, pm)
    on_call = each_caller(pm, "registry_storage_call")
    if on_call is not None:
        # Chosen once: without a metrics plugin the plain wrapper, which times nothing, stays.
        def report(driver_name: str, operation: str, seconds: float, error: BaseException | None) -> None:
            on_call(driver=driver_name, operation=operation, seconds=seconds, error=error)

        driver = checked(driver, on_call=report)
    store = attach_quotas(Store(driver), config)  # without quota rules: no counter I/O at all
    proxied = proxy_settings(config)
    ctx = Context(
        store=store,
        uploads=Uploads(store),
        pm=pm,
        access=build_access_controller(config, pm),
        delete_enabled=delete_enabled(config),
        redirect_enabled=not redirect_disabled(config),
        config=config,
        external_url=settings_of(config).http.host,
        include_references=bool(((config.get("notifications") or {}).get("events") or {}).get("includereferences")),
        proxy=PullThroughCache(proxied, store, spool_dir=driver.spool_directory()) if proxied else None,
    )
    routes = _plugin_routes(pm)
    checks = _plugin_health_checks(pm)
    builtin = storage_check(driver, config)
    if builtin is not None:
        checks.insert(0, builtin)
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        raise ConfigError([f"two health checks share a name: {sorted(n for n in names if names.count(n) > 1)[0]!r}"])

    app: RegistryApp = _new_falcon_app(RegistryApp, pm, _middleware(pm, config, checks, ctx.proxy))
    app.registry_context = ctx
    app.health_checks = checks
    app.small_reads_local = _answers_small_reads_locally(ctx, checks)
    resources = {
        "base": BaseResource(ctx),
        "catalog": CatalogResource(ctx),
        "tags": TagsResource(ctx),
        "manifest": ManifestResource(ctx),
        "upload": UploadResource(ctx),
        "uploads": UploadsResource(ctx),
        "blob": BlobResource(ctx),
        "referrers": ReferrersResource(ctx),
        "repository": RepositoryResource(ctx),
    }
    for route_name, pattern in ROUTES:
        resource = resources[route_name]
        resource.route_name = route_name  # type: ignore[attr-defined]
        app.add_route(pattern, resource)
    try:
        # After the API's routes, which the regex router tries first: a plugin never shadows them.
        for route in routes:
            if route.listener == "main":
                app.add_route(route.path, _resource_of(route))
        debug = _new_falcon_app(falcon.App, pm, [])
        debug.add_route(r"/debug/health", _HealthResource(checks))
        for route in routes:
            if route.listener == "debug":
                debug.add_route(route.path, _resource_of(route))
    except ValueError as exc:
        raise ConfigError([f"plugin route refused: {exc}"]) from exc
    app.debug_app = debug

    services: list[Any] = [c.check for c in checks if isinstance(c.check, PeriodicCheck)]
    purger = purger_for(driver, config)
    if purger is not None:
        services.insert(0, purger)
    app._init_lifecycle(services)
    return app
