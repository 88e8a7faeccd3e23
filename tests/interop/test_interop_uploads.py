"""Uploads across the pair: blobs written through one server (every upload style) are read through the other.

An image goes up over plain HTTP, its blobs monolithically (POST + PUT), chunked (POST, PATCH…, PUT) or in
a single POST (ours only: Distribution 2.8.2 answers 202 and drops the body), then skopeo pulls it through
the other server. python-dxf pushes and pulls single blobs the same way round.
"""

import os

import pytest
from client_harness import (
    client_env,
    expect,
    find_tool,
    read_dir_transport,
    requirement_marks,
    run,
    sha256_digest,
)

pytestmark = [pytest.mark.interop, *requirement_marks("skopeo", "buildah", "busybox", "dxf", "docker-registry")]

CHUNK = 256 * 1024  # the ~2 MB busybox layer goes up in 8 PATCHes and a tail


def _upload(http, repo: str, data: bytes, method: str) -> str:
    if method == "monolithic":
        return http.upload_monolithic(repo, data)
    if method == "chunked":
        return http.upload_chunked(repo, data, CHUNK)
    r = expect(http.upload_single_post(repo, data), 201)
    assert r.headers["Docker-Content-Digest"] == sha256_digest(data)
    return sha256_digest(data)


@pytest.mark.parametrize("method", ["monolithic", "chunked", "single-post"])
def test_image_uploaded_through_one_is_pulled_through_the_other(
    method, direction, containers_env, test_images, tmp_path
):
    if method == "single-post" and not direction.src.is_ours:
        pytest.skip("single-POST upload: Distribution 2.8.2 answers 202 and drops the body")
    image = test_images.manifest()
    name = direction.repo(f"upload-{method}")
    for digest in image.blob_digests():
        data = image.blob(digest)
        assert _upload(direction.src_http, name, data, method) == digest
        r = expect(direction.dst_http.request("HEAD", f"/v2/{name}/blobs/{digest}"), 200)
        assert int(r.headers["Content-Length"]) == len(data)
        assert direction.dst_http.get_blob(name, digest) == data
    direction.src_http.put_manifest(name, "1", image.raw, image.media_type)

    containers_env.skopeo(
        "copy", "-q", "--src-tls-verify=false", f"docker://{direction.dst.host}/{name}:1", f"dir:{tmp_path / 'out'}"
    )
    manifest, blobs = read_dir_transport(tmp_path / "out")
    assert manifest == image.raw
    for digest in image.blob_digests():
        assert blobs[digest] == image.blob(digest)


def _dxf(server, *args: str) -> bytes:
    env = client_env({"DXF_HOST": server.host, "DXF_INSECURE": "1", "DXF_PROGRESS": "0"})
    return run([find_tool("dxf"), *args], env=env).stdout


def test_dxf_blob_pushed_through_one_is_pulled_through_the_other(direction, tmp_path):
    name = direction.repo("dxf")
    data = os.urandom(300_000)
    (tmp_path / "blob").write_bytes(data)
    digest = _dxf(direction.src, "push-blob", name, str(tmp_path / "blob"), "@latest").decode().strip()
    assert digest == sha256_digest(data)
    assert _dxf(direction.dst, "pull-blob", name, digest) == data
    assert _dxf(direction.dst, "get-alias", name, "latest").decode().split() == [digest]
    assert _dxf(direction.dst, "pull-blob", name, "@latest") == data
    # Mounted through the reader into a second repository, still the same bytes there.
    other = name + "-mounted"
    assert _dxf(direction.dst, "mount-blob", other, name, digest).decode().strip() == digest
    assert _dxf(direction.src, "pull-blob", other, digest) == data
