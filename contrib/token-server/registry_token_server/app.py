"""The token endpoint: ``GET /token`` (Basic auth, as docker and podman ask) and the OAuth2
``POST /token`` (``grant_type=password`` and ``refresh_token``, as containerd and docker ask)."""

from __future__ import annotations

import datetime
import json
import logging
import math
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import falcon
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from registry_htpasswd.controller import BadCredentials, parse_basic
from registry_htpasswd.htpasswd import FailureLimiter, Htpasswd
from registry_htpasswd.rules import AccessRules
from registry_htpasswd.watched import WatchedFile
from registry_token.keys import libtrust_kid

from registry.auth import Access

log = logging.getLogger(__name__)

MAX_SCOPES = 32
MAX_FORM = 16384
REFRESH_AUDIENCE_SUFFIX = "#refresh"


def parse_scope(scope: str) -> list[Access]:
    """``repository:name:pull,push`` (names may hold ``:`` before the actions, as a host:port
    does) → accesses; a scope of another form is ignored, as the spec allows."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name or not actions:
        return []
    kind = kind.split("(")[0]  # "repository(plugin)" is still a repository
    return [Access(kind, name, a) for a in dict.fromkeys(actions.split(",")) if a]


class TokenIssuer:
    """Signs tokens for what the rules grant (everything for a logged-in user without rules)."""

    def __init__(self, *, key: ec.EllipticCurvePrivateKey, issuer: str, service: str, users: Htpasswd,
                 rules: WatchedFile[AccessRules] | None, expiry: int = 300, refresh_expiry: int = 30 * 86400,
                 limiter: FailureLimiter | None = None) -> None:
        self.key, self.issuer, self.service = key, issuer, service
        self.kid = libtrust_kid(key.public_key())
        self.users, self.rules = users, rules
        self.expiry, self.refresh_expiry = expiry, refresh_expiry
        self.limiter = limiter or FailureLimiter()

    def granted(self, user: str | None, wanted: Sequence[Access]) -> list[Access]:
        if self.rules is None:
            return list(wanted) if user is not None else []
        return self.rules.value().granted(user, wanted)

    def access_token(self, user: str | None, wanted: Sequence[Access]) -> tuple[str, list[Access]]:
        granted = self.granted(user, wanted)
        by_resource: dict[tuple[str, str], list[str]] = {}
        for a in granted:
            by_resource.setdefault((a.type, a.name), []).append(a.action)
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + self.expiry,
            "nbf": now - 1, "iat": now, "jti": secrets.token_hex(16),
            "access": [{"type": t, "name": n, "actions": acts} for (t, n), acts in by_resource.items()],
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid}), granted

    def refresh_token(self, user: str) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.issuer + REFRESH_AUDIENCE_SUFFIX,
                  "exp": now + self.refresh_expiry, "iat": now, "jti": secrets.token_hex(16)}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})

    def user_of_refresh_token(self, token: str) -> str | None:
        """The user a refresh token was issued to, if it is ours, unexpired, and the user still exists."""
        try:
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"],
                                audience=self.issuer + REFRESH_AUDIENCE_SUFFIX, issuer=self.issuer,
                                options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            return None
        user = claims.get("sub")
        return user if isinstance(user, str) and self.users.has_user(user) else None

    def login(self, addr: str, user: str, password: str) -> None:
        """Check a password; :class:`Refused` (401) or :class:`TooMany` (429) when it fails."""
        wait = self.limiter.retry_after(addr)
        if wait:
            raise TooMany(wait)
        if not self.users.verify(user, password):
            self.limiter.failed(addr)
            log.warning("failed login for user %r from %s", user, addr)
            raise Refused("invalid user name or password")
        self.limiter.succeeded(addr)


class Refused(Exception):
    pass


class TooMany(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__("too many failed logins")
        self.wait = wait


def _error(resp: falcon.Response, status: int, code: str, message: str) -> None:
    resp.status = status
    resp.content_type = "application/json"
    resp.data = json.dumps({"errors": [{"code": code, "message": message}], "error": code.lower(),
                            "error_description": message}).encode()


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class TokenResource:
    def __init__(self, issuer: TokenIssuer, realm: str) -> None:
        self.issuer, self.realm = issuer, realm

    def _scopes(self, values: list[str]) -> list[Access] | None:
        if len(values) > MAX_SCOPES:
            return None
        wanted: list[Access] = []
        for value in values:
            for scope in value.split(" "):  # some clients join several scopes in one parameter
                wanted.extend(parse_scope(scope))
        return wanted

    def _service_ok(self, resp: falcon.Response, service: str | None) -> bool:
        if service is not None and service != self.issuer.service:
            _error(resp, 400, "INVALID_REQUEST", f"this server issues tokens for {self.issuer.service!r} only")
            return False
        return True

    def _reply(self, resp: falcon.Response, user: str | None, wanted: list[Access], *, offline: bool,
               oauth: bool) -> None:
        token, granted = self.issuer.access_token(user, wanted)
        body: dict[str, Any] = {"access_token": token, "expires_in": self.issuer.expiry, "issued_at": _now_iso()}
        if oauth:
            body["scope"] = " ".join(f"{a.type}:{a.name}:{a.action}" for a in granted)
        else:
            body["token"] = token
        if offline and user is not None:
            body["refresh_token"] = self.issuer.refresh_token(user)
        resp.content_type = "application/json"
        resp.set_header("Cache-Control", "no-store")
        resp.data = json.dumps(body).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._service_ok(resp, req.get_param("service")):
            return
        wanted = self._scopes(req.get_param_as_list("scope", default=[]) or [])
        if wanted is None:
            _error(resp, 400, "INVALID_REQUEST", "too many scopes")
            return
        try:
            credentials = parse_basic(req.get_header("Authorization"))
        except BadCredentials as exc:
            _error(resp, 401, "UNAUTHORIZED", str(exc))
            resp.set_header("WWW-Authenticate", f'Basic realm="{self.realm}"')
            return
        user = None
        if credentials is not None:
            try:
                self.issuer.login(req.remote_addr or "", *credentials)
            except Refused as exc:
                _error(resp, 401, "UNAUTHORIZED", str(exc))
                resp.set_header("WWW-Authenticate", f'Basic realm="{self.realm}"')
                return
            except TooMany as exc:
                _error(resp, 429, "TOOMANYREQUESTS", "too many failed logins; retry later")
                resp.set_header("Retry-After", str(math.ceil(exc.wait)))
                return
            user = credentials[0]
        self._reply(resp, user, wanted, offline=req.get_param("offline_token") == "true", oauth=False)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        length = req.content_length or 0
        if length > MAX_FORM:
            _error(resp, 413, "INVALID_REQUEST", "form too large")
            return
        try:
            form = parse_qs(req.bounded_stream.read(MAX_FORM).decode("utf-8"), max_num_fields=MAX_SCOPES + 16)
        except (UnicodeDecodeError, ValueError):
            _error(resp, 400, "INVALID_REQUEST", "malformed form")
            return

        def one(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        if not self._service_ok(resp, one("service")):
            return
        wanted = self._scopes(form.get("scope", []))
        if wanted is None:
            _error(resp, 400, "INVALID_REQUEST", "too many scopes")
            return
        grant = one("grant_type")
        if grant == "password":
            user, password = one("username"), one("password")
            if not user or password is None:
                _error(resp, 400, "INVALID_REQUEST", "username and password are required")
                return
            try:
                self.issuer.login(req.remote_addr or "", user, password)
            except Refused as exc:
                _error(resp, 401, "UNAUTHORIZED", str(exc))
                return
            except TooMany as exc:
                _error(resp, 429, "TOOMANYREQUESTS", "too many failed logins; retry later")
                resp.set_header("Retry-After", str(math.ceil(exc.wait)))
                return
            self._reply(resp, user, wanted, offline=one("access_type") == "offline", oauth=True)
        elif grant == "refresh_token":
            user = self.issuer.user_of_refresh_token(one("refresh_token") or "")
            if user is None:
                _error(resp, 401, "UNAUTHORIZED", "invalid refresh token")
                return
            self._reply(resp, user, wanted, offline=True, oauth=True)
        else:
            _error(resp, 400, "UNSUPPORTED_GRANT_TYPE", "grant_type must be password or refresh_token")


def create_token_app(issuer: TokenIssuer, realm: str) -> falcon.App:
    app = falcon.App(cors_enable=False)
    app.req_options.auto_parse_form_urlencoded = False
    app.add_route("/token", TokenResource(issuer, realm))

    def unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        if isinstance(ex, falcon.HTTPError):
            _error(resp, ex.status_code, "INVALID_REQUEST", ex.title or "bad request")
            return
        log.exception("unhandled error on %s %s", req.method, req.path)
        _error(resp, 500, "UNKNOWN", "internal server error")

    app.add_error_handler(Exception, unexpected)
    return app
