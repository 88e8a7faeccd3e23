"""New Relic APM for the registry (Distribution's ``reporting.newrelic``).

With a ``licensekey``, the agent is initialized when the app is built (``registry_configure``), the
API's WSGI app is wrapped in the agent's ``WSGIApplicationWrapper`` (``registry_wsgi_middleware``;
the debug listener is not), each transaction is named by the route's template and method
(``registry_request_finished``, which runs inside the transaction), and every error the registry
turns into a 500 is recorded with ``notice_error`` (``registry_report_exception``). The agent's own
``NEW_RELIC_*`` environment variables still apply (``NEW_RELIC_DEVELOPER_MODE=true``: no network).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources
from typing import Any

import pluggy

from registry import hookimpl
from registry.plugins import options_of
from registry.routing import TEMPLATES

log = logging.getLogger(__name__)

#: The JSON schema of ``reporting.newrelic``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: The application name when ``reporting.newrelic.name`` is not set.
DEFAULT_NAME = "registry"

#: The transactions' group: their metrics are ``WebTransaction/Registry/<METHOD> <template>``.
GROUP = "Registry"

#: The configured application's name, or ``None`` without ``reporting.newrelic.licensekey``.
_name: str | None = None


def start_agent(options: Mapping[str, Any]) -> str:
    """Initialize the agent (once per process: the agent is global) for ``reporting.newrelic``."""
    import newrelic.agent

    newrelic.agent.initialize()
    settings = newrelic.agent.global_settings()
    settings.license_key = options["licensekey"]
    settings.app_name = options.get("name") or DEFAULT_NAME
    # The agent's Falcon instrumentation notices every exception an error handler turned into a
    # response, 404s included: the client's errors are not the registry's, so they are ignored.
    ignored = list(settings.error_collector.ignore_classes)
    settings.error_collector.ignore_classes = ignored + [n for n in client_error_classes() if n not in ignored]
    # The agent logs to the "newrelic" logger, under the registry's handler and format.
    logging.getLogger("newrelic").setLevel(logging.DEBUG if options.get("verbose") else logging.WARNING)
    return settings.app_name


def client_error_classes() -> list[str]:
    """The agent's names (``module:Class``) of every exception class that answers with a 4xx: the
    registry's OCI errors below 500, and Falcon's HTTP errors (an unknown route, a bad method).
    The agent's ``ignore_classes`` matches exact classes, not subclasses, hence the whole tree."""
    import falcon

    from registry.errors import RegistryError

    def tree(cls: type) -> list[type]:
        return [cls] + [sub for child in cls.__subclasses__() for sub in tree(child)]

    classes = [c for c in tree(RegistryError) if c.status < 500] + tree(falcon.HTTPError)
    return sorted({f"{c.__module__}:{c.__qualname__}" for c in classes})


@hookimpl
def registry_config_schemas() -> Mapping[str, Mapping[str, Any]]:
    return {"reporting.newrelic": SCHEMA}


#: The name under which :class:`Naming` is registered while the agent is configured.
NAMING = "newrelic.naming"


class Naming:
    """Names each transaction (``registry_request_finished`` runs inside it), registered only with
    a ``licensekey``: installed and not configured, the plugin costs requests nothing."""

    @hookimpl
    def registry_request_finished(self, method: str, route: str) -> None:
        import newrelic.agent

        newrelic.agent.set_transaction_name(f"{method} {TEMPLATES.get(route, route)}", group=GROUP)


@hookimpl
def registry_configure(config: Mapping[str, Any], pm: pluggy.PluginManager) -> None:
    global _name
    options = options_of(config, "reporting.newrelic")
    _name = start_agent(options) if options.get("licensekey") else None
    registered = pm.get_plugin(NAMING)
    if _name is not None and registered is None:
        pm.register(Naming(), name=NAMING)
    elif _name is None and registered is not None:
        pm.unregister(name=NAMING)


@hookimpl
def registry_startup() -> None:
    if _name is not None:
        import newrelic.agent

        # Waits the agent's startup_timeout (NEW_RELIC_STARTUP_TIMEOUT, default 0: connect in the
        # background, and requests before the connection are not recorded).
        newrelic.agent.register_application(name=_name)


@hookimpl
def registry_shutdown() -> None:
    if _name is not None:
        import newrelic.agent

        # The last harvest: what the process recorded since the previous one is sent, not lost.
        newrelic.agent.shutdown_agent(timeout=5)


@hookimpl
def registry_wsgi_middleware(app: Any) -> Any | None:
    if _name is None:
        return None
    import newrelic.agent

    return newrelic.agent.WSGIApplicationWrapper(app, application=newrelic.agent.application(_name))


@hookimpl
def registry_report_exception(exc: BaseException, request: Any | None) -> None:
    if _name is None:
        return
    import newrelic.agent

    attributes = {}
    if request is not None:
        from registry.handlers.base import request_id

        attributes["request.id"] = request_id(request)
    newrelic.agent.notice_error(error=(type(exc), exc, exc.__traceback__), attributes=attributes, status_code=500)
