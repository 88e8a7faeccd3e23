"""The web UI plugin (entry point ``ui``): a ``ui:`` config section, routes under ``ui.path``.

Routes (under ``http.prefix``, ``ui.path`` = ``/ui`` by default):

- ``/ui/``: the catalog (``?q=`` prefix search, ``?n=``/``?last=`` pagination);
- ``/ui/r/<name>``: a repository's tags;
- ``/ui/r/<name>/-/m/<digest or tag>``: a manifest or index, its referrers;
- ``/ui/r/<name>/-/delete``: the delete confirmation (GET) and the delete (POST);
- ``/ui/login``, ``/ui/logout``, ``/ui/static/<file>``.

``-`` cannot be a component of a repository name (components start with a letter or digit), so
these paths never collide with a name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import falcon
import pluggy

from registry import hookimpl
from registry.errors import RegistryError
from registry.plugins import options_of
from registry.routes import Route

log = logging.getLogger(__name__)

#: The JSON schema of ``ui``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: The UI built for the app being configured (``registry_configure`` → ``registry_routes``), and
#: every UI not yet bound to its app (``registry_startup`` finds its own by the config object).
_current: Any = None
_unbound: list[Any] = []

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


class _Resource:
    """One route of the UI: sets the security headers on every answer and turns what goes wrong
    into an HTML page (the API's handlers answer in OCI JSON; a browser wants a page)."""

    def __init__(self, ui: Any, get: str | None = None, post: str | None = None) -> None:
        self.ui, self._get, self._post = ui, get, post

    def _call(self, method: str | None, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        from registry_ui.pages import SECURITY_HEADERS

        for key, value in SECURITY_HEADERS.items():
            resp.set_header(key, value)
        if method is None:
            resp.status = falcon.HTTP_405
            resp.set_header("Allow", ", ".join(m for m, f in (("GET", self._get), ("POST", self._post)) if f))
            resp.content_type, resp.text = "text/plain; charset=utf-8", "method not allowed\n"
            return
        if self.ui.ctx is None:
            resp.status = falcon.HTTP_503
            resp.content_type, resp.text = "text/plain; charset=utf-8", "the registry is starting\n"
            return
        try:
            getattr(self.ui, method)(req, resp, **params)
        except RegistryError as exc:
            # What the access controller or the store refused (429 after failed logins, say): a
            # page, with the error's headers (Retry-After), rather than the API's JSON.
            for key, value in exc.headers.items():
                resp.set_header(key, value)
            self.ui.fail(req, resp, None, exc.status, exc.message or exc.code)

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self._call(self._get, req, resp, **params)

    def on_head(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self._call(self._get, req, resp, **params)
        resp.text = resp.data = None

    def on_post(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        self._call(self._post, req, resp, **params)


class _Redirect:
    def __init__(self, ui: Any) -> None:
        self.ui = ui

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_301
        resp.location = req.root_path + self.ui.path + "/"

    on_head = on_get


class _Static:
    def on_get(self, req: falcon.Request, resp: falcon.Response, file: str) -> None:
        from registry_ui.pages import SECURITY_HEADERS, static_file

        for key, value in SECURITY_HEADERS.items():
            resp.set_header(key, value)
        data = static_file(file)
        if data is None:
            resp.status = falcon.HTTP_404
            resp.content_type, resp.text = "text/plain; charset=utf-8", "not found\n"
            return
        resp.content_type = _STATIC_TYPES.get(file[file.rfind("."):], "application/octet-stream")
        resp.set_header("Cache-Control", "public, max-age=3600")
        resp.data = data

    on_head = on_get


def ui_routes(ui: Any) -> list[Route]:
    p = re.escape(ui.path)
    name = r"(?P<name>(?:(?!/-/)[^?#])+?)"
    return [
        Route(path=p, handler=_Redirect(ui), name="ui"),
        Route(path=p + "/", handler=_Resource(ui, "catalog"), name="ui.catalog"),
        Route(path=p + r"/static/(?P<file>[a-z0-9-]+\.(?:css|png|svg))", handler=_Static(), name="ui.static"),
        Route(path=p + "/login", handler=_Resource(ui, "login", "login_post"), name="ui.login"),
        Route(path=p + "/logout", handler=_Resource(ui, None, "logout"), name="ui.logout"),
        Route(path=p + r"/r/" + name + r"/-/m/(?P<reference>[^/]+)", handler=_Resource(ui, "manifest"),
              name="ui.manifest"),
        Route(path=p + r"/r/" + name + r"/-/delete", handler=_Resource(ui, "delete_form", "delete"),
              name="ui.delete"),
        Route(path=p + r"/r/" + name + "/?", handler=_Resource(ui, "repository"), name="ui.repository"),
    ]


@hookimpl
def registry_config_schemas() -> Mapping[str, Mapping[str, Any]]:
    return {"ui": SCHEMA}


def enabled(config: Mapping[str, Any]) -> bool:
    """The UI is served when ``ui:`` is present (even empty) and not ``enabled: false``."""
    return "ui" in config and options_of(config, "ui").get("enabled") is not False


@hookimpl
def registry_configure(config: Mapping[str, Any], pm: pluggy.PluginManager) -> None:
    global _current
    if not enabled(config):
        _current = None
        return
    from registry_ui.pages import UI

    _current = UI(options_of(config, "ui"), config)
    _unbound.append(_current)
    del _unbound[:-8]  # apps built and never started (tests) are forgotten


@hookimpl
def registry_routes() -> list[Route] | None:
    if _current is None:
        return None
    return ui_routes(_current)


@hookimpl
def registry_startup(app: Any, config: Mapping[str, Any]) -> None:
    for ui in list(_unbound):
        if ui.config is config:
            ui.ctx = app.registry_context
            _unbound.remove(ui)
            log.info("ui: serving %s", ui.path + "/")
