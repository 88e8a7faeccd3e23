"""``proxy:``: the upstreams of the pull-through cache, read and checked once.

Two forms, which may be combined:

* Distribution's single upstream (``remoteurl``, ``username``, ``password``, ``ttl``): it serves every
  repository (prefix ``""``), as in Distribution.
* ``remotes``: a list of upstreams, each for the repositories under its ``prefix`` (ours; Distribution
  allows one upstream). The longest matching prefix wins; a repository no prefix matches is an
  ordinary local repository (pushes allowed).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from registry.config.durations import parse_duration
from registry.config.model import ConfigError
from registry.grammar import NAME_COMPONENT

#: Distribution's default ``proxy.ttl``: 7 days.
DEFAULT_TTL = 168 * 3600.0

# A prefix is one or more name components, each followed by "/": it can only ever match whole
# components of a repository name, and what is left after it is a valid upstream name.
_PREFIX_RE = re.compile(rf"^(?:{NAME_COMPONENT}/)+\Z")


@dataclasses.dataclass(frozen=True)
class Remote:
    """One upstream registry and the local repositories it serves."""

    #: The local names it serves start with this (``""``: every name); it is cut off upstream.
    prefix: str
    #: ``scheme://host[:port]``, no trailing slash.
    url: str
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)  # never in a repr, never logged
    #: Seconds a cached tag is served before it is checked against the upstream again.
    ttl: float = DEFAULT_TTL

    def upstream_name(self, name: str) -> str:
        """The upstream repository for local ``name`` (which this remote matched)."""
        return name[len(self.prefix):]


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    """Every configured upstream, longest prefix first (so the first match is the best)."""

    remotes: tuple[Remote, ...]

    def match(self, name: str) -> Remote | None:
        """The upstream that serves repository ``name``, or ``None`` for a local repository."""
        for remote in self.remotes:
            if name.startswith(remote.prefix) and len(name) > len(remote.prefix):
                return remote
        return None


def _remote(entry: Mapping[str, Any], where: str, problems: list[str], prefix: str | None) -> Remote | None:
    if not isinstance(entry, Mapping):
        problems.append(f"{where}: must be a mapping")
        return None
    url = entry.get("remoteurl")
    if not isinstance(url, str) or not url:
        problems.append(f"{where}.remoteurl: required (the upstream's URL, e.g. https://registry-1.docker.io)")
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{where}.remoteurl: {url!r} must be an http:// or https:// URL with a host")
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        problems.append(f"{where}.remoteurl: {url!r} must be the upstream's root (no path, query, fragment "
                        "or credentials; use username and password)")
        return None
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        problems.append(f"{where}.remoteurl: {url!r} has an invalid port")
        return None
    username, password = entry.get("username"), entry.get("password")
    if (username is None) != (password is None):
        problems.append(f"{where}: username and password go together (set both or neither)")
        return None
    ttl = DEFAULT_TTL
    if entry.get("ttl") is not None:
        try:
            ttl = parse_duration(entry["ttl"])
        except ValueError as exc:
            problems.append(f"{where}.ttl: {exc}")
            return None
        if ttl < 0:
            problems.append(f"{where}.ttl: must not be negative")
            return None
    if prefix is None:
        prefix = entry.get("prefix")
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            problems.append(f"{where}.prefix: {prefix!r} must be repository name components each ending in "
                            "'/', e.g. 'dockerhub/' or 'mirror/quay/'")
            return None
    return Remote(prefix, f"{parts.scheme}://{parts.netloc}", username and str(username),
                  password and str(password), ttl)


def proxy_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with the ``proxy:`` section (empty when it is fine or absent)."""
    try:
        proxy_settings(config)
    except ConfigError as exc:
        return list(exc.errors)
    return []


def proxy_settings(config: Mapping[str, Any]) -> ProxySettings | None:
    """The upstreams ``proxy:`` configures, or ``None`` when it configures none (not a cache).

    :raises ConfigError: naming every problem (a bad URL, a prefix that is not name components, two
        upstreams for one prefix, a username without a password).
    """
    section = config.get("proxy")
    if not section:
        return None
    problems: list[str] = []
    if not isinstance(section, Mapping):
        raise ConfigError(["proxy: must be a mapping"])
    remotes: list[Remote] = []
    if section.get("remoteurl") is not None or section.get("username") is not None:
        remote = _remote(section, "proxy", problems, prefix="")
        if remote is not None:
            remotes.append(remote)
    entries = section.get("remotes")
    if entries is not None:
        if not isinstance(entries, list):
            problems.append("proxy.remotes: must be a list of upstreams")
            entries = []
        for i, entry in enumerate(entries):
            remote = _remote(entry, f"proxy.remotes[{i}]", problems, prefix=None)
            if remote is not None:
                remotes.append(remote)
    seen: set[str] = set()
    for remote in remotes:
        if remote.prefix in seen:
            problems.append(f"proxy: two upstreams for the prefix {remote.prefix!r}")
        seen.add(remote.prefix)
    if problems:
        raise ConfigError(problems)
    if not remotes:
        return None
    return ProxySettings(tuple(sorted(remotes, key=lambda r: len(r.prefix), reverse=True)))
