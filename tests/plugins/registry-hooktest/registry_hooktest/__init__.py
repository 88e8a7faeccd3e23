"""A test-only plugin implementing the lifecycle, route and health hooks (see README.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from registry import hookimpl
from registry.health import HealthCheck
from registry.routes import Route


def _mark(line: str) -> None:
    path = os.environ.get("HOOKTEST_MARKERS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@hookimpl
def registry_configure(config: Mapping[str, Any]) -> None:
    _mark("configure")


@hookimpl
def registry_startup(app: Any, config: Mapping[str, Any]) -> None:
    _mark(f"startup {type(app).__name__}")


@hookimpl
def registry_shutdown() -> None:
    _mark("shutdown")


def _hello(environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"hooktest {environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Hooktest", "1")])
    return [body]


@hookimpl
def registry_routes() -> list[Route]:
    return [Route(r"/hooktest(?:/(?P<rest>[a-z]+))?", _hello, listener="debug", name="hooktest")]


def _check() -> None:
    path = os.environ.get("HOOKTEST_UNHEALTHY")
    if path and os.path.exists(path):
        raise RuntimeError(f"{os.path.basename(path)} exists")


@hookimpl
def registry_health_checks() -> list[HealthCheck]:
    return [HealthCheck("hooktest", _check)]
