"""The ``webhooks`` plugin's hooks (entry point ``webhooks``): Distribution's ``notifications``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any

import falcon

from registry import hookimpl
from registry.routes import Route
from registry_webhooks import lock, notifier
from registry_webhooks.notifier import Notifier, parse_settings

log = logging.getLogger(__name__)

#: The JSON schema of ``notifications``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

# Which plugin managers carry which notifier, so that shutdown unregisters what startup registered.
_registered: list[tuple[Any, Notifier]] = []
_lock = threading.Lock()


@hookimpl
def registry_config_schemas() -> dict[str, Any]:
    return {"notifications": SCHEMA}


@hookimpl
def registry_configure(config: Mapping[str, Any]) -> None:
    # Refuse a bad endpoint, or a queue another process holds, before anything serves.
    settings = parse_settings(config)
    if settings.endpoints:
        lock.acquire(settings.directory)


@hookimpl
def registry_startup(app: Any, config: Mapping[str, Any]) -> None:
    settings = parse_settings(config)
    if not settings.endpoints:
        return
    lock.acquire(settings.directory)
    n = Notifier(settings)
    pm = app.registry_context.pm
    # The event hook is implemented only while endpoints run: the core builds no event otherwise.
    pm.register(n, name=f"webhooks-notifier-{id(n)}")
    with _lock:
        _registered.append((pm, n))
        notifier._running.append(n)
    n.start()


@hookimpl
def registry_shutdown() -> None:
    with _lock:
        pairs = list(_registered)
        _registered.clear()
    for pm, n in pairs:
        pm.unregister(n)  # no more events into the inboxes, then persist and drain them
        n.stop()
        with _lock:
            notifier._running.remove(n)
        lock.release(n.settings.directory)


class _MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"endpoints": notifier.metrics()}


@hookimpl
def registry_routes() -> list[Route]:
    return [Route(r"/debug/webhooks", _MetricsResource(), listener="debug", name="webhooks")]
