"""Per-repository access rules: repository patterns → actions, per user, group, or anyone.

The file (YAML), shared by the htpasswd access controller and the reference token server::

    groups:
      developers: [alice, bob]
    rules:
      - repositories: ["public/**"]
        anonymous: [pull]            # no credentials at all
        authenticated: [pull]        # any user who logged in
      - repositories: ["team/**"]
        users: {alice: [pull, push, delete]}
        groups: {developers: [pull]}
      - repositories: ["{user}/**"]  # every user owns the repositories under their name
        authenticated: ["*"]
    catalog:                         # who may list the catalog (registry:catalog:*)
      users: [alice]
      groups: []

Patterns match whole repository names, case-sensitively: ``*`` matches within one path
component, ``**`` across components, ``?`` one character other than ``/``; ``{user}`` stands for
the authenticated user's name (never matched for anonymous requests). Actions are ``pull``,
``push``, ``delete`` and ``*`` (all three). What a user may do with a repository is the union of
every rule matching it (what ``anonymous`` may do, a logged-in user may too); anything no rule
grants is refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from registry.auth import Access

REPOSITORY_ACTIONS = frozenset({"pull", "push", "delete"})
_PRINCIPALS = ("anonymous", "authenticated", "users", "groups")


def _pattern(glob: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob.startswith("{user}", i):
            out.append("(?P<user>[^/]+)")
            i += len("{user}")
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _actions(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{where}: expected a list of actions")
    actions = set()
    for action in value:
        if action == "*":
            actions |= REPOSITORY_ACTIONS
        elif action in REPOSITORY_ACTIONS:
            actions.add(action)
        else:
            raise ValueError(f"{where}: unknown action {action!r} (pull, push, delete or *)")
    return frozenset(actions)


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise ValueError(f"{where}: expected a list of names")
    return frozenset(value)


@dataclasses.dataclass(frozen=True)
class Rule:
    patterns: tuple[re.Pattern[str], ...]
    anonymous: frozenset[str] = frozenset()
    authenticated: frozenset[str] = frozenset()
    users: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    groups: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    def matches(self, name: str, user: str | None) -> bool:
        for p in self.patterns:
            m = p.match(name)
            if m is None:
                continue
            owner = m.groupdict().get("user")
            if owner is None or (user is not None and owner == user):
                return True
        return False


@dataclasses.dataclass(frozen=True)
class AccessRules:
    """Parsed rules; :meth:`allowed_actions` and :meth:`allows` answer for one user."""

    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    catalog_users: frozenset[str] = frozenset()
    catalog_groups: frozenset[str] = frozenset()

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(g for g, members in self.groups.items() if user in members)

    def allowed_actions(self, user: str | None, name: str) -> frozenset[str]:
        """The repository actions ``user`` (``None``: anonymous) may perform on ``name``."""
        groups = self.groups_of(user) if user is not None else frozenset()
        allowed: set[str] = set()
        for rule in self.rules:
            if not rule.matches(name, user):
                continue
            allowed |= rule.anonymous
            if user is not None:
                allowed |= rule.authenticated
                allowed |= rule.users.get(user, frozenset())
                for g in groups:
                    allowed |= rule.groups.get(g, frozenset())
        return frozenset(allowed)

    def may_list_catalog(self, user: str | None) -> bool:
        if user is None:
            return False
        return user in self.catalog_users or bool(self.groups_of(user) & self.catalog_groups)

    def granted(self, user: str | None, access: Iterable[Access]) -> list[Access]:
        """The part of ``access`` that ``user`` may perform."""
        out = []
        for a in access:
            if a.type == "repository":
                allowed = a.action in self.allowed_actions(user, a.name)
            else:
                allowed = (a.type, a.name, a.action) == ("registry", "catalog", "*") and self.may_list_catalog(user)
            if allowed:
                out.append(a)
        return out

    def allows(self, user: str | None, access: Sequence[Access]) -> bool:
        """Whether ``user`` may perform every one of ``access``."""
        return len(self.granted(user, access)) == len(access)


def parse_rules(text: str) -> AccessRules:
    """Parse the YAML rules file; :class:`ValueError` naming what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping with groups, rules and catalog")
    unknown = set(doc) - {"groups", "rules", "catalog"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(map(str, unknown))} (groups, rules, catalog)")
    raw_groups = doc.get("groups") or {}
    if not isinstance(raw_groups, dict):
        raise ValueError("groups: expected a mapping of group name to users")
    groups = {str(g): _names(m, f"groups.{g}") for g, m in raw_groups.items()}

    def group_names(value: Any, where: str) -> None:
        for g in value:
            if g not in groups:
                raise ValueError(f"{where}: group {g!r} is not defined under groups")

    rules = []
    raw_rules = doc.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ValueError("rules: expected a list")
    for i, raw in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping")
        unknown = set(raw) - {"repositories", *_PRINCIPALS}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(map(str, unknown))}")
        repos = raw.get("repositories")
        if isinstance(repos, str):
            repos = [repos]
        if not repos or not isinstance(repos, list) or not all(isinstance(r, str) and r for r in repos):
            raise ValueError(f"{where}.repositories: expected one or more patterns")
        users = raw.get("users") or {}
        rgroups = raw.get("groups") or {}
        if not isinstance(users, dict) or not isinstance(rgroups, dict):
            raise ValueError(f"{where}: users and groups map names to lists of actions")
        group_names(rgroups, f"{where}.groups")
        rules.append(Rule(
            patterns=tuple(_pattern(r) for r in repos),
            anonymous=_actions(raw.get("anonymous") or [], f"{where}.anonymous"),
            authenticated=_actions(raw.get("authenticated") or [], f"{where}.authenticated"),
            users={str(u): _actions(a, f"{where}.users.{u}") for u, a in users.items()},
            groups={str(g): _actions(a, f"{where}.groups.{g}") for g, a in rgroups.items()},
        ))
    catalog = doc.get("catalog") or {}
    if not isinstance(catalog, dict) or set(catalog) - {"users", "groups"}:
        raise ValueError("catalog: expected a mapping with users and groups")
    catalog_groups = _names(catalog.get("groups") or [], "catalog.groups")
    group_names(catalog_groups, "catalog.groups")
    return AccessRules(
        rules=tuple(rules),
        groups=groups,
        catalog_users=_names(catalog.get("users") or [], "catalog.users"),
        catalog_groups=catalog_groups,
    )


#: What a rules file that cannot be read stands for: nothing is allowed.
NO_ACCESS = AccessRules()
