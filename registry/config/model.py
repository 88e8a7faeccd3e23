"""What every configuration module shares: the validated mapping, its error and key paths."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.config.settings import Settings

#: A key's path in the configuration: ``("storage", "s3", "bucket")``, ``("notifications", "endpoints", 0)``.
KeyPath = tuple[str | int, ...]

#: Keys under ``storage:`` that configure the core rather than name a driver.
STORAGE_KEYS = frozenset({"delete", "maintenance", "redirect", "cache", "tag"})
#: The ``auth:`` key that explicitly means anonymous access (as in Distribution).
NO_AUTH = "none"


class ConfigError(Exception):
    """The configuration cannot be used; ``errors`` lists every problem, one line each.

    Each line starts with the dotted path of the offending key (``storage.s3: 'bucket' is a required
    property``). Plugins raise it from ``registry_configure`` to refuse to start.
    """

    def __init__(self, errors: Iterable[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


class Config(dict[str, Any]):
    """The validated configuration: the ``config.yml`` mapping with overrides applied.

    It is a plain ``dict`` for plugins (``registry_configure`` receives it); the attributes say where
    it came from, and :attr:`settings` is the core's typed view of it.

    :ivar source: the file read, or ``None`` for the embedded default.
    :ivar env_overrides: environment variable name -> the key path it set.
    :ivar ignored_env: ``REGISTRY_*`` variables that named no configuration key (warned about).
    :ivar not_acted_on: dotted keys that were accepted but nothing acts on (warned about).
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        env_overrides: Mapping[str, KeyPath] | None = None,
        ignored_env: Sequence[str] = (),
    ) -> None:
        super().__init__(data or {})
        self.source = source
        self.env_overrides: dict[str, KeyPath] = dict(env_overrides or {})
        self.ignored_env: list[str] = list(ignored_env)
        self.not_acted_on: list[str] = []

    @functools.cached_property
    def settings(self) -> Settings:
        """The typed settings, built on first use; the mapping is not to be changed after that."""
        from registry.config.settings import Settings

        return Settings.from_mapping(self)


def dotted(path: KeyPath) -> str:
    """``("notifications", "endpoints", 0, "url")`` -> ``notifications.endpoints[0].url``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out
