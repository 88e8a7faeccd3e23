"""Write docs/hooks.md from the docstrings of registry/hookspecs.py (the docstrings are the reference).

Run: ``python contrib/dev/gen_hook_docs.py`` (``--check`` exits 1 when docs/hooks.md is stale).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

from registry import auth as auth_module
from registry import hookspecs
from registry.auth import Access, AccessController, AuthDescriptor, AuthenticationRequired, Grant
from registry.health import HealthCheck, PeriodicCheck
from registry.routes import Route
from registry.storage.descriptor import DriverDescriptor
from registry.storage.middleware import MiddlewareDescriptor

HEADER = """# Hook reference

Generated from `registry/hookspecs.py` by `contrib/dev/gen_hook_docs.py`; do not edit by hand.
Plugins implement hooks with `@registry.hookimpl` and register through the `registry.plugins`
entry-point group. An implementation may take any subset of a hook's arguments.

"""


EPILOGUE = """
## Lifecycle, step by step

`registry serve` loads and validates the configuration, then:

1. `create_app(config, pm)` calls `registry_configure` (once per app; a `ConfigError` refuses to
   start), builds the storage driver and access controller, and collects `registry_routes` and
   `registry_health_checks` (a route under `/v2` is a start-up error).
2. It binds the main listener (`http.addr`) and, with `http.debug.addr`, the debug listener.
3. `app.startup()`: upload purging (`storage.maintenance.uploadpurging`) and every periodic health
   check start, then `registry_startup(app, config)` is called.
4. It serves `app.wsgi_app()` (the app inside every `registry_wsgi_middleware`) on the main
   listener and `app.debug_app` on the debug listener, until SIGTERM or SIGINT.
5. It drains requests in flight (`http.draintimeout`), then `app.shutdown()`: `registry_shutdown()`
   is called, the core's threads stop, and the storage driver's `close()` is called.

Embedding `create_app` in another WSGI server does the same by hand:

```python
import os

from registry.app import create_app
from registry.config import load_config
from registry.plugins import create_plugin_manager

pm = create_plugin_manager()
app = create_app(load_config("config.yml", os.environ, pm), pm)
with app:                    # app.startup() now, app.shutdown() on leaving
    wsgi = app.wsgi_app()    # serve this; and app.debug_app on a private address, if wanted
    ...
```

Every request gets an id: its `X-Request-Id` header if that is a token of at most 128 characters,
else a new UUID. It is sent back in `X-Request-Id` and is the `request.id` of the request's events.

## An access controller

`registry_auth_backends` declares access controllers; the one named under `auth:` in the config is
built by its factory (called with that key's mapping, validated against `schema`). Its
`authorize(request, access)` is called on every API request with the actions the request needs
(`Access("repository", "demo", "pull")`; none for `GET /v2/`) and either returns a
`registry.auth.Grant` (`identity`: the user, which becomes the events' `actor.name`; `details`: what
the controller knows, e.g. a token's claims), or raises `registry.errors.Unauthorized` (401
`UNAUTHORIZED`: not authenticated; give it a `WWW-Authenticate` challenge in `headers`, so the client
knows where to log in) or `registry.errors.Denied` (403 `DENIED`: authenticated, not allowed). The
grant is then passed to `registry_authorize`, which may still deny.

```python
from collections.abc import Mapping, Sequence
from typing import Any

from registry import hookimpl
from registry.auth import Access, AccessController, AuthDescriptor, Grant
from registry.authheaders import format_challenge
from registry.errors import Denied, Unauthorized


class StaticTokens(AccessController):
    # Bearer tokens from the config (auth.statictokens.tokens: token -> user name); read-only.

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self.tokens = dict(tokens)

    def authorize(self, request: Any, access: Sequence[Access]) -> Grant:
        scheme, _, token = (request.get_header("Authorization") or "").partition(" ")
        user = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            params = {"realm": "https://auth.example.com/token", "service": "registry"}
            if access:
                params["scope"] = " ".join(a.scope for a in access)
            # 401 UNAUTHORIZED; the challenge tells the client where to get a token.
            raise Unauthorized(headers={"WWW-Authenticate": format_challenge("Bearer", params)})
        if any(a.action != "pull" for a in access):
            raise Denied()  # 403 DENIED: authenticated, but not allowed
        return Grant(identity=user, details={"token": "static"})


@hookimpl
def registry_auth_backends() -> list[AuthDescriptor]:
    schema = {"type": "object", "required": ["tokens"],
              "properties": {"tokens": {"type": "object", "additionalProperties": {"type": "string"}}}}
    return [AuthDescriptor(name="statictokens", schema=schema,
                           factory=lambda params: StaticTokens(params["tokens"]))]
```

With `auth: {statictokens: {tokens: {s3cret: alice}}}`, `GET /v2/` without a token answers 401 with
`WWW-Authenticate: Bearer realm="https://auth.example.com/token",service="registry"`, a pull with
`Authorization: Bearer s3cret` is served as `alice`, and a push gets 403.

## Descriptors

"""


AUTH_HEADER = """
## Access control

""" + inspect.cleandoc(auth_module.__doc__ or "") + "\n\n"


def _descriptor(cls: type) -> str:
    if dataclasses.is_dataclass(cls):
        params = []
        for field in dataclasses.fields(cls):
            default = "" if field.default is dataclasses.MISSING else f" = {field.default!r}"
            if field.default_factory is not dataclasses.MISSING:
                default = f" = {field.default_factory()!r}"
            params.append(f"{field.name}: {field.type}{default}")
        sig = f"({', '.join(params)})"
    else:
        signature = inspect.signature(cls).replace(return_annotation=inspect.Signature.empty)
        sig = str(signature).replace("'", "")
    doc = inspect.cleandoc(cls.__doc__ or "")
    return f"### `{cls.__module__}.{cls.__name__}`\n\n```python\n{cls.__name__}{sig}\n```\n\n{doc}\n"


def hook_names() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("registry_")]


def render() -> str:
    out = [HEADER, inspect.cleandoc(hookspecs.__doc__ or ""), "\n"]
    source_order = sorted(hook_names(), key=lambda n: inspect.getsourcelines(getattr(hookspecs, n))[1])
    for name in source_order:
        fn = getattr(hookspecs, name)
        opts = getattr(fn, "registry_spec", {}) or {}
        first = " (firstresult: stops at the first non-`None` result)" if opts.get("firstresult") else ""
        sig = str(inspect.signature(fn))
        out.append(f"\n## `{name}`{first}\n\n```python\ndef {name}{sig}\n```\n\n{inspect.cleandoc(fn.__doc__ or '')}\n")
    out.append(EPILOGUE)
    out.append("\n".join(_descriptor(cls) for cls in (Route, HealthCheck, PeriodicCheck, DriverDescriptor,
                                                MiddlewareDescriptor)))
    out.append(AUTH_HEADER)
    out.append("\n".join(_descriptor(cls) for cls in (AuthDescriptor, AccessController, Access, Grant,
                                                       AuthenticationRequired)))
    return "".join(out)


def main() -> int:
    target = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
    text = render()
    if "--check" in sys.argv:
        return 0 if target.exists() and target.read_text() == text else 1
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
