"""Reports the registry's unhandled errors to Bugsnag (Distribution's ``reporting.bugsnag``).

Every error the core turns into a 500 reaches ``registry_report_exception``; this plugin sends it
with the request's method, route template, repository and request id, and nothing from the
request's headers, query or body: never a credential. The client still gets the OCI error JSON (the
core writes it; this hook only hears of it). Events are sent from ``bugsnag``'s own thread, so a
slow or unreachable endpoint never holds a request up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.plugins import options_of

log = logging.getLogger(__name__)

#: The JSON schema of ``reporting.bugsnag``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: The configured client, or ``None`` without ``reporting.bugsnag.apikey``.
_client: Any = None


def make_client(options: Mapping[str, Any]) -> Any:
    """A ``bugsnag.Client`` for ``reporting.bugsnag``: no ``sys.excepthook`` (the registry decides
    what is reported), no sessions, no environment (it holds the request's headers)."""
    import bugsnag

    endpoint = options.get("endpoint")
    return bugsnag.Client(
        api_key=options["apikey"],
        release_stage=options.get("releasestage") or "production",
        endpoint=endpoint,
        session_endpoint=endpoint,
        auto_capture_sessions=False,
        send_environment=False,
        install_sys_hook=False,
        logger=logging.getLogger("registry_bugsnag.client"),
    )


def request_context(request: Any) -> dict[str, Any]:
    """What an event says of the request: method, route template, path, repository, request id."""
    from registry.grammar import NAME_RE
    from registry.handlers.base import request_id
    from registry.routing import ROUTES, TEMPLATES

    template = getattr(request, "uri_template", None)
    route = next((TEMPLATES[name] for name, pattern in ROUTES if pattern == template), template)
    params = request.context.get("params") or {}
    name = params.get("name")
    return {
        "method": request.method,
        "route": route,
        "path": request.path,
        "repository": name if isinstance(name, str) and NAME_RE.fullmatch(name) else None,
        "requestId": request_id(request),
    }


@hookimpl
def registry_config_schemas() -> Mapping[str, Mapping[str, Any]]:
    return {"reporting.bugsnag": SCHEMA}


@hookimpl
def registry_configure(config: Mapping[str, Any]) -> None:
    global _client
    options = options_of(config, "reporting.bugsnag")
    _client = make_client(options) if options.get("apikey") else None


@hookimpl
def registry_report_exception(exc: BaseException, request: Any | None) -> None:
    client = _client
    if client is None:
        return
    metadata: dict[str, Any] = {}
    context = None
    if request is not None:
        metadata["request"] = request_context(request)
        context = f"{request.method} {metadata['request']['route']}"
    client.notify(exc, context=context, metadata=metadata, severity="error", unhandled=True,
                  severity_reason={"type": "unhandledException"})
