"""The rgw driver against a real radosgw: the exported suite, and RGW's quirks it handles."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from registry_rgw.driver import RGWDriver
from registry_rgw.plugin import create_driver, s3_options
from s3_servers import S3Server
from test_s3_conformance import assert_bucket_empty, run_suite

from registry.storage.driver import StorageError


def options(server: S3Server, bucket: str, **extra) -> dict:
    return {"regionendpoint": server.endpoint, "bucket": bucket, "accesskey": server.accesskey,
            "secretkey": server.secretkey, **extra}


@pytest.mark.slow
def test_conformance(rgw_server: S3Server, tmp_path: Path) -> None:
    # The driver creates the bucket (zonegroup "default" as the LocationConstraint).
    bucket = f"rgw-{uuid.uuid4().hex[:12]}"
    config = options(rgw_server, bucket, createbucket=True, rootdirectory="/r", chunksize=5 << 20,
                     multipartcopythresholdsize=5 << 20, multipartcopychunksize=5 << 20)
    assert run_suite(tmp_path, "rgw", config) >= 85
    assert_bucket_empty(rgw_server, bucket)


def test_bucket_is_created_in_the_zonegroup_whatever_the_region(rgw_server: S3Server) -> None:
    """RGW refuses a LocationConstraint other than its zonegroup, which the s3 driver sends for a
    region outside us-east-1; the rgw driver sends the zonegroup."""
    from registry_s3.plugin import build_driver

    s3_bucket, rgw_bucket = f"s3-{uuid.uuid4().hex[:12]}", f"rgw-{uuid.uuid4().hex[:12]}"
    with pytest.raises(StorageError, match="InvalidLocationConstraint|create_bucket"):
        build_driver(options(rgw_server, s3_bucket, createbucket=True, region="eu-west-1", forcepathstyle=True))
    driver = create_driver(options(rgw_server, rgw_bucket, createbucket=True, region="eu-west-1"))
    assert isinstance(driver, RGWDriver) and driver.name == "rgw"
    driver.put_content("/x", b"y")
    assert driver.get_content("/x") == b"y"
    driver.delete("/x")
    assert driver.empty_etag_after_complete


def test_rgw_fixes_what_rgw_needs() -> None:
    opts = s3_options({"bucket": "b", "regionendpoint": "http://127.0.0.1:1"})
    assert opts["forcepathstyle"] is True and opts["locationconstraint"] == "default"
    assert s3_options({"bucket": "b", "regionendpoint": "x", "zonegroup": "zg"})["locationconstraint"] == "zg"


def test_large_move_is_one_copy_by_reference(rgw_server: S3Server) -> None:
    """radosgw copies an object by reference: the rgw driver moves anything up to 5 GiB with one
    CopyObject (a multipart UploadPartCopy copies every byte: ~10x slower at 512 MiB), and the copy
    keeps its bytes after the source is deleted."""
    import hashlib
    import os

    bucket = f"rgw-{uuid.uuid4().hex[:12]}"
    driver = create_driver(options(rgw_server, bucket, createbucket=True, chunksize=5 << 20))
    assert driver.copy_threshold == 5 << 30
    data = os.urandom(40 << 20)  # above the s3 driver's 32 MiB threshold; a multipart upload of 8 parts
    with driver.writer("/big/src") as w:
        w.write(data)
        w.commit()
    calls: list[str] = []
    real_call = driver.call

    def counting(operation: str, *args, **kwargs):
        calls.append(operation)
        return real_call(operation, *args, **kwargs)

    driver.call = counting  # type: ignore[method-assign]
    driver.move("/big/src", "/big/dst")
    assert "copy_object" in calls and "upload_part_copy" not in calls
    assert driver.stat("/big/dst").size == len(data)
    with driver.reader("/big/dst") as r:
        assert hashlib.sha256(r.read()).digest() == hashlib.sha256(data).digest()
    driver.delete("/big")
    assert_bucket_empty(rgw_server, bucket)
