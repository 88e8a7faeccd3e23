"""``WWW-Authenticate`` challenges (RFC 9110 §11), written and read, for token and basic auth.

Grammar (RFC 9110 §11.2, §11.6.1, §5.6)::

    WWW-Authenticate = #challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )
    token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    quoted-string    = DQUOTE *( qdtext / quoted-pair ) DQUOTE

:func:`format_challenge` writes one challenge with every parameter value quoted (clients such as
Docker's expect ``realm="…"``), separated by commas as Distribution writes them::

    >>> format_challenge("Bearer", {"realm": "https://auth.example/token", "service": "registry"})
    'Bearer realm="https://auth.example/token",service="registry"'

:func:`parse_challenge` reads one back, :func:`parse_challenges` a whole header value (several
challenges, as RFC 9110 allows). Scheme and parameter names are case-insensitive: the scheme comes
back as written, parameter names lower-cased. A ``token68`` challenge (``Negotiate abc==``) comes
back as the single parameter :data:`TOKEN68` (the empty name, which no real parameter can have).
Malformed input raises :class:`ValueError`, never anything else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["TOKEN68", "format_challenge", "format_challenges", "parse_challenge", "parse_challenges"]

#: The parameter name under which a token68 challenge carries its token.
TOKEN68 = ""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS = " \t"


def _is_quotable(ch: str) -> bool:
    """HTAB, SP, VCHAR or obs-text: what a quoted-pair may carry (everything but CTLs and >0xFF)."""
    o = ord(ch)
    return ch == "\t" or 0x20 <= o <= 0x7E or 0x80 <= o <= 0xFF


def _is_qdtext(ch: str) -> bool:
    o = ord(ch)
    return ch in "\t " or o == 0x21 or 0x23 <= o <= 0x5B or 0x5D <= o <= 0x7E or 0x80 <= o <= 0xFF


def _quote(value: str) -> str:
    out = []
    for ch in value:
        if not _is_quotable(ch):
            raise ValueError(f"{ch!r} cannot appear in a header value")
        out.append("\\" + ch if ch in '"\\' else ch)
    return '"' + "".join(out) + '"'


def format_challenge(scheme: str, params: Mapping[str, str] | None = None) -> str:
    """One challenge: ``scheme`` then each parameter as ``name="value"`` (quoted, escaped).

    ``params`` may instead hold only :data:`TOKEN68` for the token68 form. Raises
    :class:`ValueError` for a scheme or name that is not a token, a token68 that is not one, a
    repeated name (names are case-insensitive), or a value with control characters or characters
    beyond Latin-1, which no header can carry.
    """
    if not _TOKEN.fullmatch(scheme):
        raise ValueError(f"auth scheme {scheme!r} is not a token")
    params = dict(params or {})
    if not params:
        return scheme
    if TOKEN68 in params:
        token = params[TOKEN68]
        if len(params) != 1:
            raise ValueError("a token68 challenge has no other parameters")
        if not _TOKEN68.fullmatch(token):
            raise ValueError(f"{token!r} is not a token68")
        return f"{scheme} {token}"
    seen: set[str] = set()
    parts = []
    for name, value in params.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"parameter name {name!r} is not a token")
        if name.lower() in seen:
            raise ValueError(f"parameter {name!r} given twice")
        seen.add(name.lower())
        parts.append(f"{name}={_quote(value)}")
    return f"{scheme} " + ",".join(parts)


def format_challenges(challenges: list[tuple[str, Mapping[str, str]]]) -> str:
    """Several challenges in one header value, as :func:`parse_challenges` reads them."""
    return ", ".join(format_challenge(scheme, params) for scheme, params in challenges)


class _Reader:
    def __init__(self, text: str) -> None:
        self.s, self.i, self.n = text, 0, len(text)

    def at_end(self) -> bool:
        return self.i >= self.n

    def peek(self) -> str:
        return self.s[self.i] if self.i < self.n else ""

    def skip_ows(self) -> None:
        while self.i < self.n and self.s[self.i] in _OWS:
            self.i += 1

    def token(self) -> str | None:
        m = _TOKEN.match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        return m.group()

    def quoted(self) -> str:
        assert self.s[self.i] == '"'
        self.i += 1
        out = []
        while self.i < self.n:
            ch = self.s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(out)
            if ch == "\\":
                if self.i + 1 >= self.n or not _is_quotable(self.s[self.i + 1]):
                    raise ValueError(f"bad escape at {self.i} in {self.s!r}")
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if not _is_qdtext(ch):
                raise ValueError(f"{ch!r} at {self.i} is not allowed in a quoted string")
            out.append(ch)
            self.i += 1
        raise ValueError(f"unterminated quoted string in {self.s!r}")

    def param_follows(self) -> bool:
        """Whether ``token BWS "="`` starts here (an auth-param, not the next challenge)."""
        m = _TOKEN.match(self.s, self.i)
        if not m:
            return False
        j = m.end()
        while j < self.n and self.s[j] in _OWS:
            j += 1
        return j < self.n and self.s[j] == "="

    def error(self, what: str) -> ValueError:
        return ValueError(f"{what} at {self.i} in {self.s!r}")


def _token68_here(r: _Reader) -> str | None:
    """A token68 that is the whole rest of this challenge (followed by OWS and "," or the end)."""
    m = _TOKEN68.match(r.s, r.i)
    if not m:
        return None
    j = m.end()
    while j < r.n and r.s[j] in _OWS:
        j += 1
    if j < r.n and r.s[j] != ",":
        return None
    r.i = m.end()
    return m.group()


def parse_challenges(value: str) -> list[tuple[str, dict[str, str]]]:
    """Every challenge in a ``WWW-Authenticate`` value, in order: ``[(scheme, params), …]``."""
    r = _Reader(value)
    challenges: list[tuple[str, dict[str, str]]] = []
    while True:
        # The list rule allows empty elements: ", , Basic".
        r.skip_ows()
        while r.peek() == ",":
            r.i += 1
            r.skip_ows()
        if r.at_end():
            break
        scheme = r.token()
        if scheme is None:
            raise r.error("expected an auth scheme")
        params: dict[str, str] = {}
        challenges.append((scheme, params))
        if r.at_end() or r.peek() == ",":
            continue  # a scheme alone
        if r.peek() != " ":
            raise r.error("expected a space after the auth scheme")
        r.skip_ows()
        if r.peek() == ",":
            # Empty list elements may come first ("Basic , realm=x"); a scheme alone if no param follows.
            start = r.i
            while r.peek() == ",":
                r.i += 1
                r.skip_ows()
            if not r.param_follows():
                r.i = start
                continue
        if r.at_end():
            continue
        token68 = _token68_here(r)
        if token68 is not None:
            params[TOKEN68] = token68
            continue
        while True:
            name = r.token()
            if name is None:
                raise r.error("expected a parameter name")
            r.skip_ows()
            if r.peek() != "=":
                raise r.error("expected '='")
            r.i += 1
            r.skip_ows()
            if r.peek() == '"':
                param_value = r.quoted()
            else:
                token = r.token()
                if token is None:
                    raise r.error("expected a token or a quoted string")
                param_value = token
            key = name.lower()
            if key in params:
                raise r.error(f"parameter {name!r} repeated")
            params[key] = param_value
            r.skip_ows()
            if r.at_end():
                break
            if r.peek() != ",":
                raise r.error("expected ','")
            while r.peek() == ",":
                r.i += 1
                r.skip_ows()
            if r.at_end() or not r.param_follows():
                break  # the next challenge (or trailing commas)
    return challenges


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """Exactly one challenge: ``(scheme, params)``; :class:`ValueError` for none or several."""
    challenges = parse_challenges(value)
    if len(challenges) != 1:
        raise ValueError(f"expected one challenge, found {len(challenges)} in {value!r}")
    return challenges[0]
