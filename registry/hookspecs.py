"""The whole plugin API of the registry.

Plugins implement these hooks with ``@registry.hookimpl`` and are found through the
``registry.plugins`` entry-point group (built-in drivers load exactly the same way). Hooks only ever
gain arguments; an implementation may accept any subset of a hook's arguments.

Threads: configuration and declaration hooks run once, in the main thread, before serving. Request
hooks (auth) run in the request's worker thread. Event and reporting hooks run in the worker thread
that finished the work, after the response's fate is decided; the core calls each implementation on
its own and logs and swallows its exceptions, so one failing plugin never blocks another or the client.

Lifecycle: :func:`registry.app.create_app` calls ``registry_configure`` (once per app) and collects
the declarations (routes, health checks); ``app.startup()`` starts the core's maintenance threads
(upload purging, the storage health check) and calls ``registry_startup``; ``app.shutdown()`` calls
``registry_shutdown``, stops those threads and closes the storage driver. ``registry serve`` calls
both around serving (shutdown after requests in flight have drained); whoever embeds ``create_app``
in another WSGI server calls them too, or uses the app as a context manager::

    app = create_app(config, create_plugin_manager())
    with app:                      # app.startup() ... app.shutdown()
        wsgi = app.wsgi_app()      # the app wrapped in every registry_wsgi_middleware
        serve_somehow(wsgi)        # and app.debug_app on the debug address, if any

The debug listener (``http.debug.addr``, off by default) serves ``/debug/health`` and the routes
plugins declare for it; it never serves the API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from registry import PROJECT

if TYPE_CHECKING:
    from registry.auth import Access, AuthDescriptor, Grant
    from registry.health import HealthCheck
    from registry.routes import Route
    from registry.storage.descriptor import DriverDescriptor
    from registry.storage.middleware import MiddlewareDescriptor

hookspec = pluggy.HookspecMarker(PROJECT)

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_config_schemas() -> Mapping[str, Mapping[str, Any]] | None:
    """Declare JSON schemas for config sections this plugin reads.

    :return: a mapping of dotted section paths to JSON schemas, e.g.
        ``{"reporting.bugsnag": {"type": "object", "required": ["apikey"]}}``; the core composes them
        into the config schema. ``None`` declares nothing. Storage and auth schemas are declared with
        their descriptors instead.

    All results are used. Called once at start-up, in the main thread.
    """


@hookspec
def registry_configure(config: Mapping[str, Any], pm: pluggy.PluginManager) -> None:
    """Receive the validated configuration (the whole ``config.yml`` mapping, overrides applied).

    :param config: the full configuration; a plugin reads only its own section.
    :param pm: the plugin manager building the app. A plugin whose per-request or per-storage-call
        hooks only matter when its section enables them may register an object implementing them
        here (and unregister it when a later configuration disables them): the core skips the work
        of a hook nobody implements, so a disabled feature then costs requests nothing.
    :return: nothing; raise :class:`registry.config.ConfigError` to refuse to start.

    All implementations are called, once per app, by :func:`registry.app.create_app`, in the main
    thread, before the app serves.
    """


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_startup(app: Any, config: Mapping[str, Any]) -> None:
    """Start what the plugin runs beside the requests (a delivery queue, a key refresher...).

    :param app: the registry's Falcon app (:class:`registry.app.RegistryApp`), about to serve.
    :param config: the full configuration; a plugin reads only its own section.
    :return: ignored.

    Called by ``app.startup()`` (``registry serve`` calls it once its listeners are bound), in the
    main thread, after the core's own threads have started. Every implementation is called on its
    own; exceptions are logged and swallowed, so one plugin failing to start never stops another.
    Threads started here should be daemon threads, stopped in :func:`registry_shutdown`.
    """


@hookspec
def registry_shutdown() -> None:
    """Stop what :func:`registry_startup` started; flush what must not be lost.

    :return: ignored.

    Called by ``app.shutdown()`` (``registry serve`` calls it on SIGTERM or SIGINT, after requests
    in flight have drained), in the main thread, before the core stops its threads and closes the
    storage driver. Every implementation is called on its own; exceptions are logged and swallowed.
    Return within a few seconds: the process is exiting.
    """


# ---------------------------------------------------------------------------------------------
# Routes and middleware
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_routes() -> Sequence[Route] | None:
    """Declare extra HTTP routes, on the main listener or the debug listener.

    :return: a list of :class:`registry.routes.Route` (``path``: a regular expression matched
        against the whole path, its named groups passed as keyword arguments; ``handler``: a Falcon
        resource with ``on_get``... responders, or a WSGI application; ``listener``: ``"main"``
        or ``"debug"``), or ``None``. A route may not start with ``/v2`` (the API's own routes
        are never shadowed), nor be ``/debug/health``; either is a start-up error. Main-listener
        routes are tried after the API's.

    All results are used; an implementation that raises is logged and skipped. Called once per
    app by :func:`registry.app.create_app`, in the main thread; the handlers run in request worker
    threads.
    """


@hookspec
def registry_wsgi_middleware(app: Any, config: Mapping[str, Any]) -> Any | None:
    """Wrap the registry's WSGI application (New Relic, a profiler, an access log...).

    :param app: the WSGI application to wrap: the Falcon app, or what an earlier implementation
        returned.
    :param config: the full configuration; a plugin reads only its own section.
    :return: a WSGI callable wrapping ``app``, or ``None`` to leave it as it is.

    Each implementation wraps the previous result, in pluggy's order (the last registered plugin
    wraps the app itself, the first registered is outermost); one that raises is logged and
    skipped. Called
    once by ``app.wsgi_app()``, which ``registry serve`` serves on the main listener (the debug
    listener is not wrapped), in the main thread.
    """


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_storage_drivers() -> Sequence[DriverDescriptor] | None:
    """Declare storage drivers.

    :return: a list of :class:`registry.storage.descriptor.DriverDescriptor` (name, factory, schema,
        description), or ``None``. The core picks the one whose ``name`` is the driver key under
        ``storage:`` in the config; two plugins declaring one name is a start-up error.

    All results are used. Called in the main thread.
    """


@hookspec
def registry_storage_middleware() -> Sequence[MiddlewareDescriptor] | None:
    """Declare storage middleware: wrappers that config composes around the driver.

    :return: a list of :class:`registry.storage.middleware.MiddlewareDescriptor` (name,
        ``factory(inner_driver, options) -> driver``, schema of ``options``, description), or
        ``None``. Each entry of ``middleware.storage`` in the config names one; the first entry wraps
        the driver, the next wraps that, and so on. A name no plugin declares, or declared twice, is
        a start-up error. Subclass :class:`registry.storage.middleware.StorageMiddleware` to forward
        every operation you do not change.

    All results are used. Called in the main thread, when the config schema is composed and when
    the storage is built.
    """


@hookspec
def registry_storage_call(driver: str, operation: str, seconds: float, error: BaseException | None) -> None:
    """Hear of one call into the storage driver, for metrics.

    :param driver: the driver's name (``filesystem``, ``s3``...).
    :param operation: the driver method (``get_content``, ``stat``, ``writer``, ``move``...), or
        ``writer.<method>`` for a writer's (``writer.write``, ``writer.commit``...); ``walk`` is not
        reported (it is lazy).
    :param seconds: how long the call took (for ``reader`` and ``writer``: opening them).
    :param error: the :class:`registry.storage.driver.StorageError` the call raised (what the core
        sees, ``PathNotFoundError`` included), or ``None``.
    :return: ignored.

    Called by the storage wrapper after every driver call, in the thread that made it. When no
    plugin implements this hook the wrapper does no timing at all. Every implementation is called
    on its own; exceptions are logged and swallowed. Keep it cheap: a manifest pull makes three calls.
    """


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_auth_backends() -> Sequence[AuthDescriptor] | None:
    """Declare access controllers (``htpasswd``, ``token``, ...).

    :return: a list of :class:`registry.auth.AuthDescriptor` (name, factory, schema), or ``None``.
        The core picks the one named under ``auth:`` in the config (no ``auth:`` means anonymous
        access with every action allowed) and builds it once with ``factory(options)``, the
        validated ``auth.<name>`` mapping; a factory that raises refuses the start.

    The controller (:class:`registry.auth.AccessController`) is handed every API request with the
    :class:`registry.auth.Access` it needs (``repository:<name>:pull`` for reads, ``pull`` and
    ``push`` for writes, ``delete``, ``registry:catalog:*`` for the catalog, nothing for ``GET
    /v2/``, and a mount's ``repository:<from>:pull`` with its push) and returns a
    :class:`registry.auth.Grant`, or raises :class:`registry.auth.AuthenticationRequired` (401
    with a ``WWW-Authenticate`` challenge: no or bad credentials) or :class:`registry.errors.Denied`
    (403 ``DENIED``: authenticated, not allowed). The name it is asked about is exactly the name
    the handler stores (validated, percent-decoded, without ``http.prefix``). See
    :class:`registry.auth.AccessController` below for an example.

    All results are used. Called in the main thread.
    """


@hookspec(firstresult=True)
def registry_authorize(
    request: Any, identity: str | None, access: Sequence[Access], grant: Grant
) -> bool | None:
    """Veto or allow a request after the access controller has authenticated it.

    :param request: the Falcon request.
    :param identity: the authenticated subject, or ``None`` for an anonymous request.
    :param access: the repository actions the request needs (``Access(type, name, action)``).
    :param grant: what the access controller returned (:class:`registry.auth.Grant`: ``identity``
        and the controller's ``details``, e.g. a token's claims); ``Grant()`` when anonymous.
    :return: ``False`` to deny, ``True`` to allow, ``None`` to let the next implementation (and
        finally the access controller's own decision) stand. A denied anonymous request gets the
        access controller's challenge (401, so the client logs in) when it has one, else 403
        ``DENIED``; an authenticated one gets 403 ``DENIED``. To answer 401 with a challenge of
        its own, an implementation raises :class:`registry.auth.AuthenticationRequired`::

            @hookimpl
            def registry_authorize(request, identity, access):
                if identity is None and any(a.name.startswith("private/") for a in access):
                    raise AuthenticationRequired("Basic", {"realm": "registry"}, access=access)
                return None

    Stops at the first non-``None`` result. Called in the request's worker thread, for every API
    request (``GET /v2/`` with an empty ``access``); keep it fast.
    """


# ---------------------------------------------------------------------------------------------
# Notification
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_event(event: Mapping[str, Any]) -> None:
    """Hear of a change or an access after it has been committed.

    :param event: one event in Distribution's notification envelope format (``id``, ``timestamp``,
        ``action`` = ``push``/``pull``/``delete``/``mount``, ``target`` with ``url`` for pushes,
        pulls and mounts, ``request`` with ``id``/``addr``/``host``/``method``/``useragent``,
        ``actor`` with the authenticated ``name``, ``source``), valid against ``schemas/event.json``.
        A redirected blob pull is a pull too.
    :return: ignored.

    Every implementation is called on its own, in the request's worker thread, after storage is
    committed; exceptions are logged and swallowed. Slow work (HTTP delivery) belongs on the
    plugin's own queue.
    """


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_report_exception(exc: BaseException, request: Any | None) -> None:
    """Hear of an unhandled exception (the client received a 500 with an error body).

    :param exc: the exception, with its traceback.
    :param request: the Falcon request being served, or ``None`` outside a request.
    :return: ignored.

    Every implementation is called on its own; exceptions are logged and swallowed.
    """


@hookspec
def registry_request_finished(
    method: str, route: str, status: int, duration: float, bytes_in: int, bytes_out: int
) -> None:
    """Hear of a finished request, for metrics.

    :param method: the HTTP method.
    :param route: the route's name (``blob``, ``manifest``, ``upload``...), not the raw path, so
        that metrics have bounded cardinality (``registry.routing.TEMPLATES`` maps the API's names
        to the spec's templates).
    :param status: the HTTP status code sent.
    :param duration: seconds from the start of handling to the response being ready.
    :param bytes_in: the request body's declared length (``Content-Length``; 0 without one).
    :param bytes_out: the response body's length (0 for ``HEAD``).
    :return: ignored.

    Every implementation is called on its own; exceptions are logged and swallowed. Keep it cheap:
    it runs on every request.
    """


# ---------------------------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_health_checks() -> Sequence[HealthCheck] | None:
    """Declare health checks, served at ``/debug/health`` on the debug listener.

    :return: a list of :class:`registry.health.HealthCheck` (``name``, ``check``: a callable taking
        no arguments that returns when healthy and raises when not, the exception's text being
        what ``/debug/health`` shows), or ``None``. ``/debug/health`` answers 200 ``{}`` when every
        check passes and 503 ``{"<name>": "<error text>"}`` when any fails, and meanwhile every
        request on the main listener gets 503 ``UNAVAILABLE``, as in Distribution (a load balancer
        takes the node out of rotation).
        A check that needs slow work runs it on its own thread; :class:`registry.health.PeriodicCheck`
        does that (started and stopped with the app) and turns unhealthy after ``threshold``
        consecutive failures, like the built-in ``health.storagedriver`` check.

    All results are used; an implementation that raises is logged and skipped. Called once per
    app by :func:`registry.app.create_app`, in the main thread. Each ``check`` is called on every
    ``/debug/health`` request and every API request, in its worker thread, on its own (an
    exception is that check's failure, never the others'): it must take microseconds, not a round
    trip.
    """
