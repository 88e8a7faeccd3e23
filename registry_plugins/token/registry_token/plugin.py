"""Declares the ``token`` access controller to the registry (entry point ``token``), and keeps a
``jwks`` URL fresh from ``registry_startup`` to ``registry_shutdown``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.auth import AuthDescriptor

log = logging.getLogger(__name__)

#: The JSON schema of ``auth.token``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

DEFAULT_REFRESH = 300.0


def create_controller(options: Mapping[str, Any]) -> Any:
    """The descriptor's factory: ``options`` is the validated ``auth.token`` mapping."""
    # PyJWT and cryptography are imported only when this controller is configured.
    from registry_token.controller import TokenAccessController

    return TokenAccessController(options)


@hookimpl
def registry_auth_backends() -> list[AuthDescriptor]:
    return [
        AuthDescriptor(
            name="token",
            factory=create_controller,
            schema=SCHEMA,
            description="Bearer tokens (JWT) from a token server, verified against a certificate bundle or a JWKS.",
        )
    ]


class _Refresher:
    def __init__(self, source: Any, interval: float) -> None:
        self.source, self.interval = source, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="jwks-refresh", daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.source.refresh()


_refreshers: list[_Refresher] = []


@hookimpl
def registry_startup(app: Any, config: Mapping[str, Any]) -> None:
    from registry.config import parse_duration
    from registry_token.controller import TokenAccessController

    controller = getattr(getattr(app, "registry_context", None), "access", None)
    if not isinstance(controller, TokenAccessController) or controller.jwks is None or not controller.jwks.is_url:
        return
    options = (config.get("auth") or {}).get("token") or {}
    interval = max(parse_duration(options.get("jwksrefresh", "5m")), 5.0)
    refresher = _Refresher(controller.jwks, interval)
    _refreshers.append(refresher)
    refresher.thread.start()


@hookimpl
def registry_shutdown() -> None:
    while _refreshers:
        refresher = _refreshers.pop()
        refresher.stop.set()
        refresher.thread.join(5)
