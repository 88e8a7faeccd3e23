"""The whole plugin API of the registry.

Plugins implement these hooks with ``@registry.hookimpl`` and are found through the
``registry.plugins`` entry-point group (built-in drivers load exactly the same way). Hooks only ever
gain arguments; an implementation may accept any subset of a hook's arguments.

Threads: configuration and declaration hooks run once, in the main thread, before serving. Request
hooks (auth) run in the request's worker thread. Event and reporting hooks run in the worker thread
that finished the work, after the response's fate is decided; the core calls each implementation on
its own and logs and swallows its exceptions, so one failing plugin never blocks another or the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from registry import PROJECT

if TYPE_CHECKING:
    from registry.auth import Access, AuthDescriptor
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
def registry_configure(config: Mapping[str, Any]) -> None:
    """Receive the validated configuration (the whole ``config.yml`` mapping, overrides applied).

    :param config: the full configuration; a plugin reads only its own section.
    :return: nothing; raise :class:`registry.config.ConfigError` to refuse to start.

    All implementations are called, once, in the main thread, before the app serves.
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


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_auth_backends() -> Sequence[AuthDescriptor] | None:
    """Declare access controllers (``htpasswd``, ``token``, ...).

    :return: a list of :class:`registry.auth.AuthDescriptor` (name, factory, schema), or ``None``.
        The core picks the one named under ``auth:`` in the config (no ``auth:`` means anonymous
        access with every action allowed).

    All results are used. Called in the main thread.
    """


@hookspec(firstresult=True)
def registry_authorize(request: Any, identity: str | None, access: Sequence[Access]) -> bool | None:
    """Veto or allow a request after the access controller has authenticated it.

    :param request: the Falcon request.
    :param identity: the authenticated subject, or ``None`` for an anonymous request.
    :param access: the repository actions the request needs (``Access(type, name, action)``).
    :return: ``False`` to deny (the client gets ``DENIED``), ``True`` to allow, ``None`` to let the
        next implementation (and finally the access controller's own decision) stand.

    Stops at the first non-``None`` result. Called in the request's worker thread.
    """


# ---------------------------------------------------------------------------------------------
# Notification
# ---------------------------------------------------------------------------------------------


@hookspec
def registry_event(event: Mapping[str, Any]) -> None:
    """Hear of a change or an access after it has been committed.

    :param event: one event in Distribution's notification envelope format (``id``, ``timestamp``,
        ``action`` = ``push``/``pull``/``delete``/``mount``, ``target``, ``request``, ``actor``,
        ``source``), valid against ``schemas/event.json``.
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
def registry_request_finished(method: str, route: str, status: int, duration: float) -> None:
    """Hear of a finished request, for metrics.

    :param method: the HTTP method.
    :param route: the route's name (``blob``, ``manifest``, ``upload``...), not the raw path, so
        that metrics have bounded cardinality.
    :param status: the HTTP status code sent.
    :param duration: seconds from the start of handling to the response being ready.
    :return: ignored.

    Every implementation is called on its own; exceptions are logged and swallowed. Keep it cheap:
    it runs on every request.
    """
