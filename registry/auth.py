"""Access control types shared by the core and auth plugins.

An access controller (:class:`AccessController`, declared by a :class:`AuthDescriptor` from the
``registry_auth_backends`` hook) is handed every request with the :class:`Access` it needs and
answers with a :class:`Grant`, or raises :class:`AuthenticationRequired` (401 with a
``WWW-Authenticate`` challenge: no credentials, or bad ones) or :class:`registry.errors.Denied`
(403: authenticated, not allowed). What each request needs:

- ``GET /v2/``: nothing (authentication only);
- ``GET``/``HEAD`` of manifests, blobs, tags and referrers: ``repository:<name>:pull``;
- ``PUT`` of a manifest, and every upload request: ``repository:<name>:pull`` and ``push``;
- a cross-repository mount (``POST …/blobs/uploads/?mount=…&from=<src>``): also
  ``repository:<src>:pull``, asked together with the push; refused, the push alone is asked and
  the mount becomes an ordinary upload;
- ``DELETE`` of a manifest or blob: ``repository:<name>:delete``;
- ``GET /v2/_catalog``: ``registry:catalog:*``.

``<name>`` is exactly the name the handler then reads and writes: validated against the spec's
grammar first (``A/b``, ``a/../b`` and ``a/./b`` are ``NAME_INVALID``), after percent-decoding and
without ``http.prefix``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from registry.authheaders import format_challenge
from registry.errors import Unauthorized


@dataclasses.dataclass(frozen=True)
class Access:
    """One action a request needs: ``Access("repository", "library/alpine", "pull")``.

    ``type`` is ``repository`` (actions ``pull``, ``push``, ``delete``) or ``registry`` (name
    ``catalog``, action ``*``), as in Distribution's token scopes.
    """

    type: str
    name: str
    action: str

    @property
    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


@dataclasses.dataclass(frozen=True)
class Grant:
    """A successful authentication: who the client is (``None`` for anonymous), which becomes the
    ``actor.name`` of the request's events, and what the controller knows of it (``details``: a
    token's claims, for instance), which ``registry_authorize`` implementations receive."""

    identity: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def access_detail(access: Iterable[Access]) -> list[dict[str, str]] | None:
    """The ``detail`` of an ``UNAUTHORIZED`` or ``DENIED`` error, as Distribution writes it."""
    detail = [{"Type": a.type, "Name": a.name, "Action": a.action} for a in access]
    return detail or None


def scope_param(access: Iterable[Access]) -> str:
    """The token spec's ``scope`` for ``access``: one ``type:name:actions`` per resource, in order of
    first appearance, space-separated (``repository:a:pull,push repository:b:pull``)."""
    by_resource: dict[tuple[str, str], list[str]] = {}
    for a in access:
        actions = by_resource.setdefault((a.type, a.name), [])
        if a.action not in actions:
            actions.append(a.action)
    return " ".join(f"{t}:{n}:{','.join(actions)}" for (t, n), actions in by_resource.items())


class AuthenticationRequired(Unauthorized):
    """401 ``UNAUTHORIZED`` with a ``WWW-Authenticate`` challenge: raise it from
    :meth:`AccessController.authorize` or from a ``registry_authorize`` implementation.

    :param scheme: the auth scheme (``Basic``, ``Bearer``).
    :param params: the challenge's parameters (``realm``, ``service``, ``scope``, ``error``...),
        written quoted by :func:`registry.authheaders.format_challenge`.
    :param access: what the request needed; the error body's ``detail``.

    ::

        raise AuthenticationRequired("Basic", {"realm": "my-registry"}, access=access)
        raise AuthenticationRequired("Bearer", {"realm": "https://auth.example/token",
                                                "service": "registry", "scope": scope_param(access)})
    """

    def __init__(self, scheme: str, params: Mapping[str, str] | None = None, *,
                 access: Iterable[Access] = (), message: str | None = None) -> None:
        self.challenge = format_challenge(scheme, params)
        super().__init__(message, detail=access_detail(access), headers={"WWW-Authenticate": self.challenge})


class AccessController(abc.ABC):
    """Authenticates a request and decides whether it may perform ``access``.

    A minimal controller letting one user push everything and everyone else pull::

        class OneUser(AccessController):
            def authorize(self, request, access):
                user = basic_user(request)          # your credential check, constant-time
                if user == "admin":
                    return Grant(identity="admin")
                if all(a.action == "pull" for a in access):
                    return Grant()                  # anonymous pull
                if user is None:
                    raise AuthenticationRequired("Basic", {"realm": "registry"}, access=access)
                raise Denied(detail=access_detail(access))

            def challenge(self, request, access):
                return AuthenticationRequired("Basic", {"realm": "registry"}, access=access)

    Called in the request's worker thread, for every request: keep it fast and thread-safe.
    """

    @abc.abstractmethod
    def authorize(self, request: Any, access: Sequence[Access]) -> Grant:
        """Return a :class:`Grant`, or raise :class:`AuthenticationRequired` (401 with a
        challenge for ``WWW-Authenticate``) or :class:`registry.errors.Denied` (403)."""

    def challenge(self, request: Any, access: Sequence[Access]) -> AuthenticationRequired | None:
        """The 401 to send when a ``registry_authorize`` plugin refuses an anonymous request, so
        that the client is asked to log in rather than told it never may; ``None`` (the default)
        sends 403 ``DENIED`` instead."""
        return None


@dataclasses.dataclass(frozen=True)
class AuthDescriptor:
    """Declares one access controller: ``name`` is its key under ``auth:`` in config.yml."""

    name: str
    factory: Callable[[Mapping[str, Any]], AccessController]
    description: str = ""
    schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": ["object", "null"]})
