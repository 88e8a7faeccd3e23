"""Declares the ``prefixed`` storage middleware (entry point ``prefixed`` in group ``registry.plugins``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.driver import StorageDriver
from registry.storage.middleware import MiddlewareDescriptor
from registry_prefixed.driver import PrefixedDriver

#: The JSON schema of a ``middleware.storage`` entry's ``options`` for ``prefixed``, shipped in the package.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def create_middleware(inner: StorageDriver, options: Mapping[str, Any]) -> PrefixedDriver:
    """Wrap ``inner`` (the configured driver, or the middleware listed before this one); the registry
    has checked ``options`` against :data:`SCHEMA` already."""
    return PrefixedDriver(inner, options["prefix"])


@hookimpl
def registry_storage_middleware() -> list[MiddlewareDescriptor]:
    return [
        MiddlewareDescriptor(
            name="prefixed",
            factory=create_middleware,
            schema=SCHEMA,
            description="Everything under a prefix of the storage below (an example plugin).",
        )
    ]
