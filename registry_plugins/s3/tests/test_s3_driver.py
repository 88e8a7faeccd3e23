"""The s3 driver's own behaviours, beyond the shared suite: how uploads map onto multipart uploads
(on radosgw and moto), the part-size rule, error mapping, redirects and options."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.request
from importlib import resources

import jsonschema
import pytest
from registry_s3.driver import MAX_PARTS, MIN_PART, S3Driver, part_size, tail_key
from registry_s3.plugin import build_driver, options
from s3_servers import S3Server

from registry.storage.driver import (
    ConflictError,
    PathNotFoundError,
    StorageThrottledError,
    StorageUnavailableError,
)

MiB, GiB = 1 << 20, 1 << 30


def parts_needed(chunksize: int, total: int) -> int:
    offset = parts = 0
    while offset < total:
        offset += part_size(chunksize, offset)
        parts += 1
    return parts


@pytest.mark.parametrize("chunksize", [5 * MiB, 10 * MiB, 16 * MiB])
def test_a_100_gib_layer_fits_in_the_part_limit(chunksize: int) -> None:
    assert parts_needed(chunksize, 100 * GiB) < MAX_PARTS
    assert parts_needed(chunksize, 5 * 1024 * GiB) < MAX_PARTS  # S3's largest object
    # Below 1,000 parts' worth, parts are exactly the chunk size: small layers are not affected.
    assert part_size(chunksize, 999 * chunksize) == chunksize
    assert part_size(chunksize, 1000 * chunksize) == 2 * chunksize


def test_fixed_parts_would_not_fit() -> None:
    """The rule is needed: with fixed 10 MiB parts a 100 GiB layer takes 10,240 parts."""
    assert -(-100 * GiB // (10 * MiB)) > MAX_PARTS


@pytest.fixture
def driver(s3_server: S3Server) -> S3Driver:
    return build_driver(s3_server.options(s3_server.new_bucket(), rootdirectory="/r", chunksize=5 * MiB))


def test_chunks_become_parts_and_small_rests_wait_in_the_tail(driver: S3Driver, s3_server: S3Server) -> None:
    """An upload's chunks of 5 MiB and more are each one part, sent once; a rest under 5 MiB waits
    as the tail object and goes out with the next chunk; another driver (another process) resumes it."""
    path = "/up/data"
    driver.put_content(path, b"")
    chunks = [os.urandom(6 * MiB), os.urandom(1 * MiB), os.urandom(7 * MiB), os.urandom(123)]
    drivers = [driver, build_driver(s3_server.options(driver.bucket, rootdirectory="/r", chunksize=5 * MiB))]
    for n, chunk in enumerate(chunks):
        writer = drivers[n % 2].writer(path, append=True)
        assert writer.size == sum(map(len, chunks[:n]))
        writer.write(chunk)
        writer.close()
    client, key = s3_server.client(), driver.key(path)
    uploads = [u for u in client.list_multipart_uploads(Bucket=driver.bucket)["Uploads"] if u["Key"] == key]
    assert len(uploads) == 1
    parts = client.list_parts(Bucket=driver.bucket, Key=key, UploadId=uploads[0]["UploadId"])["Parts"]
    assert [p["Size"] for p in parts] == [6 * MiB, 8 * MiB]  # the 1 MiB chunk went out with the 7 MiB one
    assert client.head_object(Bucket=driver.bucket, Key=tail_key(key))["ContentLength"] == 123
    assert tail_key(key) not in "".join(driver.list("/up"))  # listings hide the driver's own keys
    writer = drivers[1].writer(path, append=True)
    writer.commit()
    data = b"".join(chunks)
    assert hashlib.sha256(driver.get_content(path)).digest() == hashlib.sha256(data).digest()
    assert client.list_multipart_uploads(Bucket=driver.bucket).get("Uploads", []) == []
    with pytest.raises(PathNotFoundError):
        driver.stat(f"/up/data{'~'}tail")  # not a storage path, and gone anyway
    driver.delete("/up")
    assert client.list_objects_v2(Bucket=driver.bucket).get("KeyCount", 0) == 0


def test_only_an_uploads_parts_go_unsigned(driver: S3Driver, s3_server: S3Server) -> None:
    """An appending writer's parts (an upload's data, hashed again by the registry before it becomes
    a blob) are sent as UNSIGNED-PAYLOAD over plain HTTP, and the store takes them; a fresh
    writer's parts and every other body keep their SHA-256 in the signature."""
    sent: list[tuple[str, str]] = []

    def record(request, event_name: str, **_) -> None:
        header = request.headers.get("X-Amz-Content-SHA256", b"")
        sent.append((event_name.rsplit(".", 1)[-1], header.decode() if isinstance(header, bytes) else header))

    driver.client.meta.events.register("before-send.s3", record)
    data = [os.urandom(5 * MiB + 1), os.urandom(MIN_PART), os.urandom(11 * MiB)]
    driver.put_content("/up/data", b"")
    writer = driver.writer("/up/data", append=True)
    writer.write(data[0])
    writer.close()
    writer = driver.writer("/up/data", append=True)
    writer.write(data[1])
    writer.commit()
    with driver.writer("/fresh") as fresh:  # 11 MiB at 5 MiB parts: a multipart upload of its own
        fresh.write(data[2])
        fresh.commit()
    driver.client.meta.events.unregister("before-send.s3", record)
    assert driver.get_content("/up/data") == data[0] + data[1]
    assert driver.get_content("/fresh") == data[2]
    parts = [h for op, h in sent if op == "UploadPart"]
    assert parts[:2] == ["UNSIGNED-PAYLOAD"] * 2 and len(parts) == 4
    assert all(len(h) == 64 for h in parts[2:])  # the fresh writer's: hex SHA-256
    assert all(h != "UNSIGNED-PAYLOAD" for op, h in sent if op != "UploadPart")
    driver.delete("/up")
    driver.delete("/fresh")


def test_a_second_writer_of_one_upload_conflicts(driver: S3Driver) -> None:
    path = "/up/data"
    driver.put_content(path, b"")
    first, second = driver.writer(path, append=True), driver.writer(path, append=True)
    first.write(b"a" * 100)
    second.write(b"b" * 100)
    first.close()
    with pytest.raises(ConflictError):
        second.close()
    final = driver.writer(path, append=True)
    final.commit()
    assert driver.get_content(path) == b"a" * 100
    driver.delete("/up")


def test_delete_aborts_unfinished_uploads_below(driver: S3Driver, s3_server: S3Server) -> None:
    driver.put_content("/u/1/data", b"")
    writer = driver.writer("/u/1/data", append=True)
    writer.write(os.urandom(MIN_PART))
    writer.close()
    driver.delete("/u")
    assert s3_server.client().list_multipart_uploads(Bucket=driver.bucket).get("Uploads", []) == []
    with pytest.raises(PathNotFoundError):
        driver.stat("/u")


def test_big_move_is_a_multipart_copy(s3_server: S3Server) -> None:
    driver = build_driver(s3_server.options(s3_server.new_bucket(), multipartcopythresholdsize=5 * MiB,
                                            multipartcopychunksize=5 * MiB))
    data = os.urandom(11 * MiB)
    driver.put_content("/a", data)
    driver.move("/a", "/b")
    assert driver.get_content("/b") == data
    with pytest.raises(PathNotFoundError):
        driver.stat("/a")


def test_redirect_url_is_presigned_and_expires(driver: S3Driver) -> None:
    driver.put_content("/blob", b"redirected")
    url = driver.redirect_url("GET", "/blob")
    assert url and "X-Amz-Expires=1200" in url and "X-Amz-Signature=" in url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        assert response.read() == b"redirected"
    assert driver.redirect_url("PUT", "/blob") is None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: nothing listens there


def test_unreachable_endpoint_is_unavailable_quickly() -> None:
    driver = build_driver({"bucket": "b", "regionendpoint": f"http://127.0.0.1:{closed_port()}",
                           "accesskey": "a", "secretkey": "s", "forcepathstyle": True, "maxattempts": 2})
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as caught:
        driver.get_content("/x")
    assert not isinstance(caught.value, StorageThrottledError)
    assert time.monotonic() - started < 10


def test_slowdown_is_throttling_with_the_retry_hint() -> None:
    """A fake (botocore's Stubber): no real server slows down on demand."""
    from botocore.stub import Stubber

    driver = build_driver({"bucket": "b", "regionendpoint": "http://127.0.0.1:9", "accesskey": "a",
                           "secretkey": "s", "forcepathstyle": True})
    with Stubber(driver.client) as stub:
        stub.add_client_error("get_object", service_error_code="SlowDown", http_status_code=503,
                              response_meta={"HTTPHeaders": {"retry-after": "7"}})
        stub.add_client_error("get_object", service_error_code="InternalError", http_status_code=500)
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        with pytest.raises(StorageThrottledError) as throttled:
            driver.get_content("/x")
        assert throttled.value.retry_after == 7
        with pytest.raises(StorageUnavailableError) as unavailable:
            driver.get_content("/x")
        assert not isinstance(unavailable.value, StorageThrottledError)
        with pytest.raises(PathNotFoundError):
            driver.get_content("/x")


def test_options_from_environment_strings() -> None:
    opts = options({"bucket": "b", "chunksize": "6291456", "secure": "false", "forcepathstyle": "true"})
    assert (opts["chunksize"], opts["secure"], opts["forcepathstyle"]) == (6 * MiB, False, True)
    assert opts["region"] == "us-east-1" and opts["multipartcopythresholdsize"] == 32 * MiB


@pytest.mark.parametrize("package", ["registry_s3", "registry_rgw"])
def test_every_option_is_described(package: str) -> None:
    pytest.importorskip(package)
    schema = json.loads(resources.files(package).joinpath("schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    for name, spec in schema["properties"].items():
        assert len(spec.get("description", "")) > 20, name
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors({"bucket": "b", "regionendpoint": "http://127.0.0.1:1"}))
    assert list(validator.iter_errors({"bucket": "b", "regionendpoint": "x", "nosuchoption": 1}))
    assert list(validator.iter_errors({"bucket": "b", "regionendpoint": "x", "chunksize": "ten"}))


@pytest.mark.parametrize(("package", "page"), [("registry_s3", "s3.md"), ("registry_rgw", "rgw.md")])
def test_every_option_is_documented(package: str, page: str) -> None:
    from s3_servers import REPO

    pytest.importorskip(package)
    schema = json.loads(resources.files(package).joinpath("schema.json").read_text("utf-8"))
    text = (REPO / "docs" / page).read_text("utf-8")
    missing = [name for name in schema["properties"] if f"| `{name}` |" not in text]
    assert not missing, f"docs/{page} lacks {missing}"
