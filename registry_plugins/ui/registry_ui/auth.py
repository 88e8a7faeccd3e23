"""Who is looking at a page, and what the configured access controller lets them see and do.

The UI never decides access itself: every question goes to the registry's access controller (and the
``registry_authorize`` plugins) through :meth:`registry.handlers.base.Context.authorize`, with the
same :class:`registry.auth.Access` the API would ask for. With HTTP Basic (htpasswd) the browser
sends its credentials on every request, as to the API. With Bearer tokens (the ``token``
controller) the browser cannot: the UI keeps a login session (a random id in an HttpOnly cookie,
the token server's refresh token on the server side) and, once per page, asks the token server for
one access token covering every scope the page needs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from registry.auth import Access, AuthenticationRequired
from registry.errors import Denied, RegistryError

log = logging.getLogger(__name__)

#: Seconds a delete form's CSRF token stays valid.
CSRF_SECONDS = 3600
#: Seconds a token-login session lives without use, and the most sessions kept.
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10000
#: The token server refuses forms above 16 KiB and more than 32 scope parameters.
SCOPES_PER_PARAM = 64
TOKEN_TIMEOUT = 10.0
SESSION_COOKIE = "registry_ui_session"


class LoginFailed(Exception):
    """The token server refused the user name and password (or could not be reached)."""


class _WithAuthorization:
    """A request whose ``Authorization`` header is ``value`` (a Bearer token the UI obtained): what
    the token controller reads. Everything else is the real request's."""

    def __init__(self, req: Any, value: str | None) -> None:
        self._req = req
        self._value = value

    def get_header(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name.lower() == "authorization":
            return self._value
        return self._req.get_header(name, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._req, attr)


class Sessions:
    """Token-login sessions: random id → (user, refresh token, last use). In memory, bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def create(self, user: str, refresh_token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._items[sid] = (user, refresh_token, time.monotonic())
            while len(self._items) > MAX_SESSIONS:
                self._items.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> tuple[str, str] | None:
        if not sid:
            return None
        with self._lock:
            item = self._items.get(sid)
            if item is None:
                return None
            if time.monotonic() - item[2] > SESSION_SECONDS:
                del self._items[sid]
                return None
            self._items[sid] = (item[0], item[1], time.monotonic())
            self._items.move_to_end(sid)
            return item[0], item[1]

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._items.pop(sid or "", None)


class TokenClient:
    """Talks to the token server (``auth.token.realm``) the way docker and containerd do."""

    def __init__(self, realm: str, service: str) -> None:
        self.realm = realm
        self.service = service

    def _post(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        data = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(self.realm, data=data, method="POST",  # noqa: S310 - http(s) only
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT) as resp:  # noqa: S310 - the configured realm
                body = json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as exc:
            raise LoginFailed(f"the token server answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            # Never the form: it holds the password or the refresh token.
            log.warning("ui: token server %s unreachable or unreadable: %s", self.realm, type(exc).__name__)
            raise LoginFailed("the token server could not be reached") from None
        if not isinstance(body, dict):
            raise LoginFailed("the token server's answer is not a JSON object")
        return body

    def login(self, user: str, password: str) -> str:
        """The refresh token for ``user``; :class:`LoginFailed` when refused."""
        body = self._post([("grant_type", "password"), ("username", user), ("password", password),
                           ("service", self.service), ("client_id", "registry-ui"), ("access_type", "offline")])
        refresh = body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise LoginFailed("the token server gave no refresh token")
        return refresh

    def access_token(self, refresh_token: str | None, scopes: Sequence[str]) -> str | None:
        """An access token for ``scopes``: the user's (from the refresh token) or anonymous."""
        params = [" ".join(scopes[i:i + SCOPES_PER_PARAM]) for i in range(0, len(scopes), SCOPES_PER_PARAM)]
        try:
            if refresh_token is None:
                query = urllib.parse.urlencode([("service", self.service)] + [("scope", p) for p in params])
                sep = "&" if "?" in self.realm else "?"
                with urllib.request.urlopen(self.realm + sep + query, timeout=TOKEN_TIMEOUT) as resp:  # noqa: S310
                    body = json.loads(resp.read(1 << 20))
            else:
                body = self._post([("grant_type", "refresh_token"), ("refresh_token", refresh_token),
                                   ("service", self.service), ("client_id", "registry-ui")]
                                  + [("scope", p) for p in params])
        except LoginFailed:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ui: no token from %s: %s", self.realm, type(exc).__name__)
            return None
        token = body.get("access_token") or body.get("token") if isinstance(body, dict) else None
        return token if isinstance(token, str) and token else None


def token_client_of(controller: Any) -> TokenClient | None:
    """A :class:`TokenClient` when the access controller takes Bearer tokens from a realm."""
    realm, service = getattr(controller, "realm", None), getattr(controller, "service", None)
    if (isinstance(realm, str) and realm.startswith(("http://", "https://")) and isinstance(service, str)
            and hasattr(controller, "verify")):
        return TokenClient(realm, service)
    return None


class Viewer:
    """One request's view of the registry: its identity and a memo of the controller's answers."""

    def __init__(self, ctx: Any, req: Any, *, tokens: TokenClient | None, session: tuple[str, str] | None) -> None:
        self.ctx = ctx
        self.tokens = tokens
        self.session = session
        self._req = req
        self._answers: dict[Access, bool] = {}
        self.bad_credentials = False
        self.challenge: AuthenticationRequired | None = None
        self.identity: str | None = session[0] if session else None
        if tokens is None and ctx.access is not None and req.get_header("Authorization"):
            try:
                self.identity = ctx.access.authorize(req, []).identity
            except AuthenticationRequired as exc:
                # Sent, and refused: the browser asks again on a 401 with a Basic challenge.
                self.bad_credentials, self.challenge = True, exc
            except Denied:
                pass

    @property
    def token_login(self) -> bool:
        return self.tokens is not None

    @property
    def can_login(self) -> bool:
        return self.ctx.access is not None and self.identity is None

    def prepare(self, access: Iterable[Access]) -> None:
        """Ask the token server once for every scope the page will need (token auth only)."""
        wanted = [a for a in dict.fromkeys(access) if a not in self._answers]
        if self.tokens is None or not wanted:
            return
        token = self.tokens.access_token(self.session[1] if self.session else None, [a.scope for a in wanted])
        req = _WithAuthorization(self._req, f"Bearer {token}" if token else None)
        for a in wanted:
            self._answers[a] = self._ask(req, a)

    def _ask(self, req: Any, a: Access) -> bool:
        try:
            self.ctx.authorize(req, [a])
        except (AuthenticationRequired, Denied) as exc:
            if isinstance(exc, AuthenticationRequired) and self.challenge is None:
                self.challenge = exc
            return False
        except RegistryError as exc:  # 429 from a controller's failure limit, say
            log.info("ui: access %s refused: %s", a.scope, exc.code)
            return False
        return True

    def can(self, name: str, action: str) -> bool:
        a = Access("repository", name, action)
        answer = self._answers.get(a)
        if answer is None:
            if self.tokens is not None:
                self.prepare([a])
                return self._answers[a]
            answer = self._answers[a] = self._ask(self._req, a)
        return answer


class Csrf:
    """CSRF tokens for the delete forms: an HMAC of the identity, the repository and a time, so a
    form made for one user and repository is refused for another, and an old one expires."""

    def __init__(self, secret: str | None) -> None:
        self.key = (secret or secrets.token_hex(32)).encode()

    def _mac(self, identity: str | None, name: str, stamp: int) -> str:
        msg = f"{identity or ''}\0{name}\0{stamp}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def token(self, identity: str | None, name: str) -> str:
        stamp = int(time.time())
        return f"{stamp}.{self._mac(identity, name, stamp)}"

    def check(self, value: str | None, identity: str | None, name: str) -> bool:
        stamp_text, _, mac = (value or "").partition(".")
        if not stamp_text.isdigit() or len(stamp_text) > 12:
            return False
        stamp = int(stamp_text)
        if not 0 <= time.time() - stamp <= CSRF_SECONDS:
            return False
        return hmac.compare_digest(mac, self._mac(identity, name, stamp))
