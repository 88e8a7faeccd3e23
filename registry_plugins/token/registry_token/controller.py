"""The ``token`` access controller: Bearer JWTs from a token server (the Docker token spec)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from registry.auth import Access, AccessController, AuthenticationRequired, Grant, access_detail, scope_param
from registry.errors import Denied
from registry_token.keys import ASYMMETRIC, JWKSource, TrustedKeys, key_fits, load_bundle

log = logging.getLogger(__name__)

#: Clock skew allowed on ``exp`` and ``nbf``, seconds.
LEEWAY = 60
#: Longer Authorization headers are refused unread.
MAX_TOKEN = 16384
_UNTRUSTED_KEY_HEADERS = ("jwk", "jku", "x5u")


class InvalidToken(ValueError):
    """A token that is not one this registry trusts; the message says why (for the log)."""


def allowed_algorithms(configured: Sequence[str] | None) -> tuple[str, ...]:
    """``signingalgorithms`` without what is never accepted (HMAC, ``none``); all asymmetric
    algorithms when empty. :class:`ValueError` when nothing usable is left or a name is unknown."""
    if not configured:
        return ASYMMETRIC
    out = []
    for alg in configured:
        if alg in ASYMMETRIC:
            out.append(alg)
        elif alg in ("HS256", "HS384", "HS512"):
            log.warning("auth.token.signingalgorithms: %s ignored: HMAC tokens are never accepted", alg)
        else:
            raise ValueError(f"signingalgorithms: unknown algorithm {alg!r} (one of {', '.join(ASYMMETRIC)})")
    if not out:
        raise ValueError("signingalgorithms: no asymmetric algorithm left (HMAC tokens are never accepted)")
    return tuple(out)


def token_access(claims: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """The ``access`` claim as ``(type, name) → actions``; :class:`InvalidToken` when malformed."""
    raw = claims.get("access", [])
    if not isinstance(raw, list):
        raise InvalidToken("the access claim is not a list")
    out: dict[tuple[str, str], frozenset[str]] = {}
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise InvalidToken("an access entry is not an object")
        kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions", [])
        if not isinstance(kind, str) or not isinstance(name, str) or not isinstance(actions, list) \
                or not all(isinstance(a, str) for a in actions):
            raise InvalidToken("an access entry is malformed")
        out[(kind, name)] = out.get((kind, name), frozenset()) | frozenset(actions)
    return out


class TokenAccessController(AccessController):
    """Verifies Bearer tokens against trusted keys and matches their ``access`` claim exactly.

    A token's entries grant actions on exactly the named resource (no patterns); ``*`` among an
    entry's actions grants every action on it, as in Distribution.
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.realm = str(options["realm"])
        self.service = str(options["service"])
        self.issuer = str(options["issuer"])
        self.autoredirect = bool(options.get("autoredirect", False))
        self.autoredirect_path = str(options.get("autoredirectpath") or "/auth/token/")
        self.algorithms = allowed_algorithms(options.get("signingalgorithms"))
        bundle = load_bundle(str(options["rootcertbundle"])) if options.get("rootcertbundle") else []
        self.jwks = JWKSource(str(options["jwks"])) if options.get("jwks") else None
        if not bundle and self.jwks is None:
            raise ValueError("one of rootcertbundle or jwks is required")
        self.keys = TrustedKeys(bundle, self.jwks)

    # ------------------------------------------------------------------------------------------

    def _realm(self, request: Any) -> str:
        if not self.autoredirect:
            return self.realm
        proto = (request.get_header("X-Forwarded-Proto") or "https").split(",")[0].strip().lower()
        proto = proto if proto in ("http", "https") else "https"
        return f"{proto}://{request.host}{self.autoredirect_path}"

    def _challenge(self, request: Any, access: Sequence[Access], error: str | None = None,
                   description: str | None = None) -> dict[str, str]:
        params = {"realm": self._realm(request), "service": self.service}
        scope = scope_param(access)
        if scope:
            params["scope"] = scope
        if error:
            params["error"] = error
        if description:
            params["error_description"] = description
        return params

    def challenge(self, request: Any, access: Sequence[Access]) -> AuthenticationRequired:
        return AuthenticationRequired("Bearer", self._challenge(request, access), access=access)

    # ------------------------------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its signature, issuer, audience and times check out."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(f"algorithm {str(alg)[:20]!r} is not accepted")
        if any(h in header for h in _UNTRUSTED_KEY_HEADERS):
            raise InvalidToken("keys named by the token itself (jwk, jku, x5u) are not trusted")
        now = datetime.datetime.now(datetime.UTC)
        if "x5c" in header:
            try:
                key: Any = self.keys.from_x5c(header["x5c"], now)
            except ValueError as exc:
                raise InvalidToken(str(exc)) from None
        elif isinstance(header.get("kid"), str):
            key = self.keys.by_kid(header["kid"])
            if key is None:
                raise InvalidToken("signed with an unknown key (kid)")
        else:
            raise InvalidToken("names no key (kid or x5c)")
        if not key_fits(alg, key):
            raise InvalidToken(f"the key does not fit algorithm {alg}")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.service, issuer=self.issuer, leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"], "verify_signature": True, "verify_exp": True,
                         "verify_nbf": True, "verify_iss": True, "verify_aud": True, "strict_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        token_access(claims)  # malformed access claims are refused outright
        return claims

    def authorize(self, request: Any, access: Sequence[Access]) -> Grant:
        header = request.get_header("Authorization")
        if header is None:
            raise self.challenge(request, access)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(header) > MAX_TOKEN:
            raise AuthenticationRequired("Bearer", self._challenge(request, access, "invalid_token"), access=access,
                                         message="a Bearer token is required")
        try:
            claims = self.verify(token)
        except InvalidToken as exc:
            log.warning("token refused from %s: %s", request.remote_addr or "", exc)
            raise AuthenticationRequired("Bearer", self._challenge(request, access, "invalid_token"), access=access,
                                         message="invalid token") from None
        subject = claims.get("sub")
        identity = subject if isinstance(subject, str) and subject else None
        granted = token_access(claims)
        missing = [a for a in access if not _granted(granted, a)]
        if not missing:
            return Grant(identity=identity, details=claims)
        params = self._challenge(request, access, "insufficient_scope")
        if identity is None:
            raise AuthenticationRequired("Bearer", params, access=missing, message="insufficient scope")
        # RFC 6750 §3.1: insufficient scope is 403, with the challenge so a client may ask again.
        raise Denied(detail=access_detail(missing), headers={"WWW-Authenticate": AuthenticationRequired(
            "Bearer", params).challenge})


def _granted(granted: Mapping[tuple[str, str], frozenset[str]], a: Access) -> bool:
    actions = granted.get((a.type, a.name), frozenset())
    return a.action in actions or "*" in actions
