"""The ``htpasswd`` access controller: HTTP Basic credentials against an htpasswd file."""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from registry.auth import Access, AccessController, AuthenticationRequired, Grant, access_detail
from registry.config import parse_duration
from registry.errors import Denied, TooManyRequests
from registry_htpasswd.htpasswd import FailureLimiter, Htpasswd
from registry_htpasswd.rules import NO_ACCESS, AccessRules, parse_rules
from registry_htpasswd.watched import WatchedFile

log = logging.getLogger(__name__)

#: Longer Authorization headers are refused unread (a Basic credential is a few hundred bytes).
MAX_AUTHORIZATION = 8192


class BadCredentials(ValueError):
    """An Authorization header that is not well-formed Basic credentials."""


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic …`` value; ``None`` when there is no
    header, it is another scheme, or both are empty; :class:`BadCredentials` when it is malformed."""
    if header is None:
        return None
    if len(header) > MAX_AUTHORIZATION:
        raise BadCredentials("the Authorization header is too long")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCredentials("malformed Basic credentials") from None
    if decoded == ":":
        return None  # what `skopeo --no-creds` sends: no credentials at all, as anonymous
    user, sep, password = decoded.partition(":")
    if not sep or not user or any(ord(c) < 0x20 or c == "\x7f" for c in user):
        raise BadCredentials("malformed Basic credentials")
    return user, password


class HtpasswdAccessController(AccessController):
    """Basic authentication against an htpasswd file, optionally with per-repository rules.

    Without ``rules`` every authenticated user may do everything (as in Distribution) and anonymous
    requests are refused. With ``rules`` (:mod:`registry_htpasswd.rules`), what each user, group or
    anonymous client may do is what the rules grant; ``GET /v2/`` still asks for credentials.
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.realm = str(options["realm"])
        self.users = Htpasswd(str(options["path"]))
        if self.users.error:
            log.error("auth.htpasswd: %s; every login fails until it can be read", self.users.error)
        self.rules: WatchedFile[AccessRules] | None = None
        if options.get("rules"):
            self.rules = WatchedFile(str(options["rules"]), parse_rules, NO_ACCESS, name="access rules file")
            if self.rules.error:
                raise ValueError(self.rules.error)
        window = parse_duration(options.get("failurewindow", "1m"))
        self.limiter = FailureLimiter(int(options.get("maxfailures", 10)), window)

    def challenge(self, request: Any, access: Sequence[Access]) -> AuthenticationRequired:
        return AuthenticationRequired("Basic", {"realm": self.realm}, access=access)

    def authorize(self, request: Any, access: Sequence[Access]) -> Grant:
        addr = request.remote_addr or ""
        try:
            credentials = parse_basic(request.get_header("Authorization"))
        except BadCredentials as exc:
            raise AuthenticationRequired("Basic", {"realm": self.realm}, access=access, message=str(exc)) from None
        user = None
        if credentials is not None:
            wait = self.limiter.retry_after(addr)
            if wait:
                raise TooManyRequests("too many failed logins from this address; retry later",
                                      headers={"Retry-After": str(math.ceil(wait))})
            name, password = credentials
            if not self.users.verify(name, password):
                self.limiter.failed(addr)
                log.warning("failed login for user %r from %s", name, addr)
                raise AuthenticationRequired("Basic", {"realm": self.realm}, access=access,
                                             message="invalid user name or password")
            self.limiter.succeeded(addr)
            user = name
        if self.rules is None:
            if user is None:
                raise self.challenge(request, access)
            return Grant(identity=user)
        rules = self.rules.value()
        if user is None:
            if access and rules.allows(None, access):
                return Grant()
            raise self.challenge(request, access)
        if rules.allows(user, access):
            return Grant(identity=user)
        raise Denied(detail=access_detail(a for a in access if a not in rules.granted(user, access)))
