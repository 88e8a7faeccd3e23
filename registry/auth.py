"""Access control types shared by the core and auth plugins."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any


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
    """A successful authentication: who the client is (``None`` for anonymous)."""

    identity: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class AccessController(abc.ABC):
    """Authenticates a request and decides whether it may perform ``access``."""

    @abc.abstractmethod
    def authorize(self, request: Any, access: Sequence[Access]) -> Grant:
        """Return a :class:`Grant`, or raise :class:`registry.errors.Unauthorized` (with a
        ``challenge`` for ``WWW-Authenticate``) or :class:`registry.errors.Denied`."""


@dataclasses.dataclass(frozen=True)
class AuthDescriptor:
    """Declares one access controller: ``name`` is its key under ``auth:`` in config.yml."""

    name: str
    factory: Callable[[Mapping[str, Any]], AccessController]
    description: str = ""
    schema: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"type": ["object", "null"]})
