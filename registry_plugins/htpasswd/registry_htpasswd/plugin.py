"""Declares the ``htpasswd`` access controller to the registry (entry point ``htpasswd``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.auth import AuthDescriptor

#: The JSON schema of ``auth.htpasswd``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def create_controller(options: Mapping[str, Any]) -> Any:
    """The descriptor's factory: ``options`` is the validated ``auth.htpasswd`` mapping."""
    # bcrypt is imported only when this controller is configured.
    from registry_htpasswd.controller import HtpasswdAccessController

    return HtpasswdAccessController(options)


@hookimpl
def registry_auth_backends() -> list[AuthDescriptor]:
    return [
        AuthDescriptor(
            name="htpasswd",
            factory=create_controller,
            schema=SCHEMA,
            description="HTTP Basic users from an htpasswd file of bcrypt hashes, with optional access rules.",
        )
    ]
