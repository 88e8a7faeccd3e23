"""The exported driver suite against real S3 servers, run the way an operator runs it:
``pytest --pyargs registry.testing.conformance --registry-storage-driver=s3
--registry-storage-config=FILE``, in a fresh interpreter, once on radosgw and once on moto."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from s3_servers import S3Server

pytestmark = pytest.mark.slow


def run_suite(tmp_path: Path, driver: str, options: dict) -> int:
    """Run the suite with ``options`` as the driver's parameters file; returns the number passed."""
    config = tmp_path / f"{driver}.yaml"
    config.write_text(json.dumps(options))  # JSON is YAML
    command = [sys.executable, "-m", "pytest", "--pyargs", "registry.testing.conformance",
               f"--registry-storage-driver={driver}", f"--registry-storage-config={config}",
               "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert not re.search(r"\d+ (failed|error)", summary), summary
    match = re.search(r"(\d+) passed", summary)
    assert match, summary
    return int(match.group(1))


def assert_bucket_empty(server: S3Server, bucket: str) -> None:
    """Nothing left behind: no object (tails included) and no unfinished multipart upload."""
    client = server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_conformance(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    # A root directory, as most deployments have, and the smallest chunk size S3 allows, so that the
    # suite's multi-MiB files go through multipart uploads, tails and multipart copies.
    options = s3_server.options(bucket, rootdirectory="/registry", chunksize=5 << 20,
                                multipartcopythresholdsize=5 << 20, multipartcopychunksize=5 << 20)
    assert run_suite(tmp_path, "s3", options) >= 85
    assert_bucket_empty(s3_server, bucket)
