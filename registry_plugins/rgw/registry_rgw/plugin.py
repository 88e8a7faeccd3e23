"""Declares the ``rgw`` storage driver to the registry (entry point ``rgw``).

It is the ``s3`` driver (:mod:`registry_s3`) with what Ceph's radosgw needs, measured on Ceph 16:

- path-style addressing only (no virtual-hosted buckets without wildcard DNS);
- ``CompleteMultipartUpload`` answers with an empty ETag: the driver HEADs the object after it;
- ``x-amz-checksum-*`` are ignored and boto3 >= 1.36's default aws-chunked checksum trailers get
  ``MissingContentLength`` over HTTPS: checksums are sent only when required (the s3 driver always
  does so) and digests are verified by the registry;
- ``CreateBucket`` accepts no LocationConstraint but the zonegroup's name (``zonegroup``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor

#: The JSON schema of ``storage.rgw``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: The s3 driver's option names this driver leaves at values RGW needs.
_FIXED = {"forcepathstyle": True, "usedualstack": False, "accelerate": False, "v4auth": True}


def s3_options(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``storage.s3`` options meaning the same as these ``storage.rgw`` ones."""
    defaults = {k: v["default"] for k, v in SCHEMA["properties"].items() if "default" in v}
    opts = {**defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    opts["locationconstraint"] = opts.pop("zonegroup")
    opts.update(_FIXED)
    return opts


def create_driver(params: Mapping[str, Any] | None) -> Any:
    """The descriptor's factory: ``params`` is the (validated) ``storage.rgw`` mapping."""
    from registry_s3.plugin import DEFAULTS, build_driver

    from registry_rgw.driver import RGWDriver

    return build_driver(s3_options(params), DEFAULTS, driver_class=RGWDriver, empty_etag_after_complete=True)


def describe(params: Mapping[str, Any] | None) -> str:
    opts = s3_options(params)
    root = str(opts.get("rootdirectory") or "").strip("/")
    return f"rgw bucket {opts['bucket']}{'/' + root if root else ''} at {opts['regionendpoint']}"


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="rgw", factory=create_driver, schema=SCHEMA, describe=describe,
            description="Ceph Object Gateway (radosgw), on the s3 driver with RGW's defaults and quirks.",
        )
    ]
