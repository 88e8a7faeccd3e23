"""Declares the ``s3`` storage driver to the registry (entry point ``s3``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from importlib import resources
from typing import Any

from registry import hookimpl
from registry.storage.descriptor import DriverDescriptor

log = logging.getLogger(__name__)

#: The JSON schema of ``storage.s3``; it ships in the package, next to this module.
SCHEMA: Mapping[str, Any] = json.loads(resources.files(__package__).joinpath("schema.json").read_text("utf-8"))

#: Every option's default, from the schema (the one place they are written down).
DEFAULTS: Mapping[str, Any] = {k: v["default"] for k, v in SCHEMA["properties"].items() if "default" in v}

_INTEGERS = ("chunksize", "multipartcopychunksize", "multipartcopymaxconcurrency", "multipartcopythresholdsize",
             "redirectexpiry", "maxpoolconnections", "connecttimeout", "readtimeout", "maxattempts")
_BOOLEANS = ("forcepathstyle", "encrypt", "secure", "skipverify", "v4auth", "usedualstack", "accelerate",
             "createbucket")


def options(params: Mapping[str, Any] | None, defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """``params`` with ``defaults`` filled in and the strings an environment variable gives
    (``REGISTRY_STORAGE_S3_CHUNKSIZE=10485760``, ``...SECURE=false``) turned into numbers and booleans."""
    out = {**defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    for name in _INTEGERS:
        out[name] = int(out[name])
    for name in _BOOLEANS:
        value = out[name]
        out[name] = value.lower() == "true" if isinstance(value, str) else bool(value)
    return out


def endpoint_url(opts: Mapping[str, Any]) -> str | None:
    endpoint = opts.get("regionendpoint")
    if not endpoint:
        return None
    if "://" not in endpoint:
        endpoint = ("https://" if opts["secure"] else "http://") + endpoint
    return endpoint


def create_client(opts: Mapping[str, Any]) -> Any:
    """One boto3 S3 client for the driver: thread-safe, its connection pool sized by
    ``maxpoolconnections`` (the server's worker threads plus the parts of a multipart copy)."""
    import boto3  # heavy: imported only when an s3 driver is built
    from botocore.config import Config

    s3_config: dict[str, Any] = {"addressing_style": "path" if opts["forcepathstyle"] else "auto"}
    if opts["usedualstack"] and not opts.get("regionendpoint"):
        s3_config["use_dualstack_endpoint"] = True
    if opts["accelerate"] and not opts.get("regionendpoint"):
        s3_config["use_accelerate_endpoint"] = True
    user_agent = opts.get("useragent") or None
    config = Config(
        signature_version="s3v4",
        s3=s3_config,
        max_pool_connections=opts["maxpoolconnections"],
        connect_timeout=opts["connecttimeout"],
        read_timeout=opts["readtimeout"],
        retries={"max_attempts": opts["maxattempts"], "mode": "standard"},
        user_agent_extra=user_agent,
        # boto3 >= 1.36 otherwise sends aws-chunked bodies with checksum trailers, which S3-compatible
        # stores (Ceph RGW 16 over HTTPS) refuse; the registry verifies digests itself.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    credentials: dict[str, Any] = {}
    if opts.get("accesskey") or opts.get("secretkey"):
        credentials = {"aws_access_key_id": opts.get("accesskey"), "aws_secret_access_key": opts.get("secretkey")}
        if opts.get("sessiontoken"):
            credentials["aws_session_token"] = opts["sessiontoken"]
    session = boto3.session.Session()
    if opts["loglevel"].lower().startswith("debug"):
        logging.getLogger("botocore").setLevel(logging.DEBUG)
    return session.client(
        "s3", region_name=opts["region"], endpoint_url=endpoint_url(opts), config=config,
        verify=False if opts["skipverify"] else None, use_ssl=True if endpoint_url(opts) is None else None,
        **credentials,
    )


def put_args(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of every request that creates an object: storage class, ACL, encryption."""
    args: dict[str, Any] = {}
    if opts["storageclass"] and opts["storageclass"].upper() != "NOSTORAGECLASS":
        args["StorageClass"] = opts["storageclass"]
    if opts["objectacl"]:
        args["ACL"] = opts["objectacl"]
    if opts["encrypt"]:
        if opts.get("keyid"):
            args.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=opts["keyid"])
        else:
            args["ServerSideEncryption"] = "AES256"
    return args


def ensure_bucket(client: Any, opts: Mapping[str, Any]) -> None:
    """Create the bucket when ``createbucket`` is set and it does not exist yet."""
    from botocore.exceptions import ClientError

    bucket = opts["bucket"]
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    constraint = opts.get("locationconstraint")
    if constraint is None and opts["region"] != "us-east-1":
        constraint = opts["region"]
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if constraint:
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": constraint}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def build_driver(
    params: Mapping[str, Any] | None, defaults: Mapping[str, Any] = DEFAULTS, driver_class: type | None = None,
    **extra: Any,
) -> Any:
    """The driver for a validated option mapping; the ``rgw`` plugin passes its own ``driver_class``
    (a subclass of :class:`~registry_s3.driver.S3Driver`) and ``extra`` constructor arguments."""
    from registry_s3.driver import S3Driver, map_error

    opts = options(params, defaults)
    if not opts["v4auth"]:
        log.warning("storage.s3.v4auth: false is ignored: requests are always signed with Signature Version 4")
    client = create_client(opts)
    if opts["createbucket"]:
        try:
            ensure_bucket(client, opts)
        except Exception as exc:  # noqa: BLE001 - reported as the storage error it is
            raise map_error(exc, operation="create_bucket") from exc
    return (driver_class or S3Driver)(
        client, opts["bucket"], rootdirectory=opts["rootdirectory"], chunksize=opts["chunksize"],
        multipartcopychunksize=opts["multipartcopychunksize"],
        multipartcopymaxconcurrency=opts["multipartcopymaxconcurrency"],
        multipartcopythresholdsize=opts["multipartcopythresholdsize"], redirectexpiry=opts["redirectexpiry"],
        put_args=put_args(opts), **extra,
    )


def create_driver(params: Mapping[str, Any] | None) -> Any:
    """The descriptor's factory: ``params`` is the (validated) ``storage.s3`` mapping."""
    return build_driver(params)


def describe(params: Mapping[str, Any] | None) -> str:
    opts = options(params)
    where = endpoint_url(opts) or f"AWS {opts['region']}"
    root = opts["rootdirectory"].strip("/")
    return f"s3 bucket {opts['bucket']}{'/' + root if root else ''} at {where}"


@hookimpl
def registry_storage_drivers() -> list[DriverDescriptor]:
    return [
        DriverDescriptor(
            name="s3", factory=create_driver, schema=SCHEMA, describe=describe,
            description="Amazon S3 or an S3-compatible object store, with CNCF Distribution's s3 options.",
        )
    ]
