"""python-dxf 12 (its `dxf` command): blobs in and out, aliases (tags), cross-repo mount, delete, catalog."""

import errno
import os

import pytest
from client_harness import client_env, expect, find_tool, requirement_marks, run, sha256_digest

pytestmark = [pytest.mark.clients, *requirement_marks("dxf")]


@pytest.fixture
def dxf(registry_server):
    def call(*args: str, check: bool = True):
        env = client_env({"DXF_HOST": registry_server.host, "DXF_INSECURE": "1", "DXF_PROGRESS": "0"})
        return run([find_tool("dxf"), *args], env=env, check=check)

    return call


def _push(dxf, repo: str, path, data: bytes, *alias: str) -> str:
    path.write_bytes(data)
    digest = dxf("push-blob", repo, str(path), *alias).stdout.decode().strip()
    assert digest == sha256_digest(data)
    return digest


def test_push_and_pull_blob(dxf, registry_http, tmp_path):
    data = os.urandom(200_000)
    digest = _push(dxf, "clients/dxf/blobs", tmp_path / "blob", data)
    assert dxf("pull-blob", "clients/dxf/blobs", digest).stdout == data  # dxf checks the digest as it reads
    assert dxf("blob-size", "clients/dxf/blobs", digest).stdout.decode().strip() == str(len(data))
    assert registry_http.get_blob("clients/dxf/blobs", digest) == data
    # Pushing it again finds it by HEAD and uploads nothing.
    assert dxf("push-blob", "clients/dxf/blobs", str(tmp_path / "blob")).stdout.decode().strip() == digest


def test_aliases(dxf, registry_http, tmp_path):
    repo = "clients/dxf/aliases"
    first = _push(dxf, repo, tmp_path / "one", b"first blob\n")
    second = _push(dxf, repo, tmp_path / "two", b"second blob\n", "@single")  # push-blob FILE @ALIAS
    dxf("set-alias", repo, "both", first, second)
    assert sorted(dxf("list-aliases", repo).stdout.decode().split()) == ["both", "single"]
    assert dxf("get-alias", repo, "both").stdout.decode().split() == [first, second]
    assert dxf("get-alias", repo, "single").stdout.decode().split() == [second]
    assert dxf("pull-blob", repo, "@both").stdout == b"first blob\nsecond blob\n"
    assert sorted(registry_http.tags(repo)) == ["both", "single"]


def test_mount_blob_across_repositories(dxf, registry_http, tmp_path):
    data = os.urandom(50_000)
    digest = _push(dxf, "clients/dxf/mount-from", tmp_path / "blob", data)
    assert not registry_http.blob_exists("clients/dxf/mount-to", digest)
    # `mount-blob TARGET FROM DIGEST`: dxf fails unless the registry answers 201 Created.
    assert dxf("mount-blob", "clients/dxf/mount-to", "clients/dxf/mount-from", digest).stdout.decode().strip() == digest
    assert registry_http.blob_exists("clients/dxf/mount-to", digest)
    assert dxf("pull-blob", "clients/dxf/mount-to", digest).stdout == data


def test_delete_blob(dxf, registry_http, tmp_path):
    repo = "clients/dxf/delete"
    digest = _push(dxf, repo, tmp_path / "blob", b"short-lived\n")
    dxf("del-blob", repo, digest)
    expect(registry_http.request("HEAD", f"/v2/{repo}/blobs/{digest}"), 404)
    gone = dxf("pull-blob", repo, digest, check=False)
    assert gone.returncode == errno.ENOENT, gone.stderr.decode()


def test_list_repos(dxf, tmp_path):
    for name in ("clients/dxf/catalog-a", "clients/dxf/catalog-b"):
        digest = _push(dxf, name, tmp_path / "blob", b"catalog\n")
        dxf("set-alias", name, "latest", digest)  # a repository shows in the catalog once it has a manifest
    repos = dxf("list-repos").stdout.decode().split()
    assert {"clients/dxf/catalog-a", "clients/dxf/catalog-b"} <= set(repos)
    assert len(repos) == len(set(repos))  # pagination neither repeats nor (above) loses a name
