"""Declares the ``azure`` storage driver to the registry (entry point ``azure``).

Nothing of the Azure SDK is imported here: ``azure-storage-blob`` is imported when a driver is built,
``azure-identity`` only for the credential types that need it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor
from registry.storage.driver import StorageDriver

#: The JSON schema of ``storage.azure``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))


def create_driver(params: Mapping[str, Any] | None) -> StorageDriver:
    """The descriptor's factory: ``params`` is the (validated) ``storage.azure`` mapping."""
    from registry_azure.driver import from_parameters

    return from_parameters(params or {})


def describe(params: Mapping[str, Any] | None) -> str:
    """Where the data goes, for the start-up log (never the key or a secret)."""
    params = params or {}
    realm = params.get("realm") or "core.windows.net"
    where = params.get("serviceurl") or f"https://{params.get('accountname', '?')}.blob.{realm}"
    root = (params.get("rootdirectory") or "").strip("/")
    return f"azure container {params.get('container', '?')}{'/' + root if root else ''} at {where}"


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="azure",
            factory=create_driver,
            schema=SCHEMA,
            description="Azure Blob Storage (or Azurite): block blobs, server-side copies, SAS redirects.",
            describe=describe,
        )
    ]
