"""A client of one upstream registry: manifests, blobs and tags, with its token or basic auth.

Connections are pooled (urllib3); bodies are streamed, never read whole unless they are small
(manifests, tag lists, tokens, all capped). Credentials go only into ``Authorization`` headers: no
log line, error message or repr carries them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import urllib3

from registry.authheaders import parse_challenges
from registry.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from registry.proxy.settings import Remote

log = logging.getLogger(__name__)

#: What we accept for a manifest: every type this registry stores (schema 1 is never asked for).
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
#: The most of a manifest, tag list or token response we read (a manifest is at most 4 MiB here).
MAX_SMALL_BODY = 4 << 20
#: A token without ``expires_in`` lasts 60 seconds (the token spec's default).
DEFAULT_TOKEN_LIFETIME = 60.0
#: Tokens are dropped this long before they expire, so none dies on the way.
TOKEN_MARGIN = 5.0
#: The most tokens remembered per upstream (one per repository scope).
MAX_TOKENS = 10_000


class UpstreamError(Exception):
    """The upstream did not give what was asked; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class UpstreamNotFound(UpstreamError):
    """The upstream answered 404: it does not have it."""


class UpstreamDenied(UpstreamError):
    """The upstream refused our credentials (401 after authenticating, or 403)."""


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached, timed out, or answered 5xx/429: what is cached still serves."""


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


class RemoteClient:
    """One upstream (:class:`~registry.proxy.settings.Remote`). Thread-safe.

    Auth follows the upstream's challenge, learned on its first 401: ``Basic`` sends the configured
    credentials; ``Bearer`` fetches a token from the realm (with the credentials, or anonymously
    without), one per repository scope, kept until it expires.
    """

    def __init__(self, remote: Remote, pool: urllib3.PoolManager, timeout: urllib3.Timeout | None = None) -> None:
        self.remote = remote
        self.pool = pool
        self.timeout = timeout or urllib3.Timeout(connect=10.0, read=60.0)
        self._lock = threading.Lock()
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}

    # -- auth ------------------------------------------------------------------------------------

    def _credentials(self) -> str | None:
        r = self.remote
        return _basic(r.username, r.password) if r.username is not None and r.password is not None else None

    def _authorization(self, scope: str) -> str | None:
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge[0].lower() == "basic":
                return self._credentials()
            token = self._tokens.get(scope)
            if token is not None and token[1] > time.monotonic():
                return f"Bearer {token[0]}"
        return f"Bearer {self._fetch_token(challenge[1], scope)}"

    def _fetch_token(self, params: Mapping[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise UpstreamDenied(f"upstream {self.remote.url} sent a Bearer challenge without a usable realm")
        query = {"scope": scope} | ({"service": params["service"]} if params.get("service") else {})
        headers = {"Authorization": c} if (c := self._credentials()) else {}
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        try:
            resp = self.pool.request("GET", url, headers=headers, timeout=self.timeout, retries=False,
                                     preload_content=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise UpstreamUnavailable(f"token server of {self.remote.url} unreachable: {type(exc).__name__}") from None
        try:
            body = resp.read(MAX_SMALL_BODY)
        finally:
            resp.release_conn()
        if resp.status in (401, 403):
            raise UpstreamDenied(f"token server of {self.remote.url} refused the credentials ({resp.status})",
                                 resp.status)
        if resp.status != 200:
            raise UpstreamUnavailable(f"token server of {self.remote.url} answered {resp.status}", resp.status)
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable(f"token server of {self.remote.url} sent no token")
        with self._lock:
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.clear()
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - TOKEN_MARGIN, 1.0))
        return token

    def _learn(self, resp: urllib3.BaseHTTPResponse) -> bool:
        """Take the auth scheme from a 401's challenge; whether a retry can do better."""
        try:
            challenges = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
        except ValueError:
            return False
        for scheme, params in challenges:
            if scheme.lower() == "bearer" or (scheme.lower() == "basic" and self._credentials()):
                with self._lock:
                    if self._challenge is not None and self._challenge[1] != params:
                        self._tokens.clear()  # another realm or service: its tokens are not ours
                    self._challenge = (scheme, params)
                return True
        return False

    # -- requests --------------------------------------------------------------------------------

    def request(self, method: str, name: str, path: str, headers: Mapping[str, str] | None = None,
                *, query: Mapping[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        """``method`` on ``/v2/<name>/<path>`` of the upstream, authenticated, body not read.

        Follows redirects (a blob served from object storage; urllib3 drops ``Authorization`` on a
        redirect to another host). The caller reads and releases the response.

        :raises UpstreamNotFound: on 404. :raises UpstreamDenied: when our credentials are refused.
        :raises UpstreamUnavailable: when the upstream is down, times out or answers 5xx or 429.
        """
        url = f"{self.remote.url}/v2/{name}/{path}" + (f"?{urlencode(query)}" if query else "")
        scope = f"repository:{name}:pull"
        for attempt in range(2):
            sent = dict(headers or {})
            auth = self._authorization(scope)
            if auth is not None:
                sent["Authorization"] = auth
            try:
                resp = self.pool.request(method, url, headers=sent, timeout=self.timeout, preload_content=False,
                                         decode_content=False, retries=urllib3.Retry(total=5, connect=2, read=0,
                                                                                     status=0, redirect=5))
            except urllib3.exceptions.HTTPError as exc:
                # The exception's text may hold the URL, never a credential: only its type is shown.
                raise UpstreamUnavailable(f"upstream {self.remote.url} unreachable ({type(exc).__name__})") from None
            if resp.status == 401 and attempt == 0 and self._learn(resp):
                with self._lock:
                    self._tokens.pop(scope, None)  # expired or revoked early: ask for a new one
                _discard(resp)
                continue
            if resp.status < 300:
                return resp
            _discard(resp)
            what = f"upstream {self.remote.url} answered {resp.status} to {method} /v2/{name}/{path}"
            if resp.status == 404:
                raise UpstreamNotFound(what, 404)
            if resp.status in (401, 403):
                raise UpstreamDenied(what, resp.status)
            if resp.status >= 500 or resp.status == 429:
                raise UpstreamUnavailable(what, resp.status)
            raise UpstreamError(what, resp.status)
        raise AssertionError("unreachable")

    def small(self, method: str, name: str, path: str, headers: Mapping[str, str] | None = None,
              query: Mapping[str, str] | None = None) -> tuple[bytes, urllib3.HTTPHeaderDict, str]:
        """A request whose body is small (a manifest, a tag list): ``(body, headers, final URL)``.

        :raises UpstreamError: as :meth:`request`, and for a body over :data:`MAX_SMALL_BODY`.
        """
        resp = self.request(method, name, path, headers, query=query)
        try:
            body = resp.read(MAX_SMALL_BODY + 1) if method != "HEAD" else b""
        except urllib3.exceptions.HTTPError as exc:
            raise UpstreamUnavailable(f"upstream {self.remote.url} broke off ({type(exc).__name__})") from None
        finally:
            resp.release_conn()
        if len(body) > MAX_SMALL_BODY:
            raise UpstreamError(f"upstream {self.remote.url} sent over {MAX_SMALL_BODY} bytes for {path}")
        return body, resp.headers, resp.geturl() or ""

    def manifest(self, name: str, reference: str, method: str = "GET") -> tuple[bytes, Mapping[str, str]]:
        """A manifest (``GET``: its bytes; ``HEAD``: only the headers) by tag or digest."""
        body, headers, _ = self.small(method, name, f"manifests/{reference}", {"Accept": MANIFEST_ACCEPT})
        return body, headers

    def blob(self, name: str, digest: str, method: str = "GET") -> urllib3.BaseHTTPResponse:
        """A blob's response, body unread (stream it, then ``release_conn()``)."""
        return self.request(method, name, f"blobs/{digest}")

    def tags(self, name: str, max_pages: int = 100) -> list[str]:
        """Every tag of ``name`` upstream, following ``Link: rel="next"`` pages (at most ``max_pages``)."""
        found: list[str] = []
        query: dict[str, str] | None = None
        for _ in range(max_pages):
            body, headers, _ = self.small("GET", name, "tags/list", query=query)
            try:
                tags = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise UpstreamError(f"upstream {self.remote.url} sent a tag list that is not JSON") from None
            found.extend(t for t in tags if isinstance(t, str))
            query = _next_query(headers.get("Link", ""))
            if query is None:
                break
        return found


def _next_query(link: str) -> dict[str, str] | None:
    """The query of a ``Link: <...>; rel="next"`` header, or ``None`` when there is no next page."""
    if 'rel="next"' not in link or "<" not in link:
        return None
    target = link.split("<", 1)[1].split(">", 1)[0]
    query = urlsplit(urljoin("http://x/", target)).query
    return dict(parse_qsl(query)) or None


def _discard(resp: urllib3.BaseHTTPResponse) -> None:
    with contextlib.suppress(Exception):  # a connection that broke is just not reused
        resp.drain_conn()
    resp.release_conn()


def new_pool(**kwargs: Any) -> urllib3.PoolManager:
    """The connection pool every upstream shares (a few connections per host; TLS verified)."""
    return urllib3.PoolManager(num_pools=32, maxsize=16, block=False, **kwargs)
