"""skopeo 1.9: copy an OCI layout in and back out, inspect, list tags, delete, copy --all of an index.

skopeo ignores CONTAINERS_REGISTRIES_CONF, so every command names --tls-verify=false itself.
"""

import json

import pytest
from client_harness import expect, oci_layout_entry, read_dir_transport, requirement_marks, sha256_digest

pytestmark = [pytest.mark.clients, *requirement_marks("skopeo", "buildah", "busybox")]

NO_TLS = "--tls-verify=false"
COPY = ("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false")


@pytest.fixture(scope="module")
def pushed(registry_server, containers_env, test_images) -> str:
    """The amd64 busybox OCI layout, copied to clients/skopeo/busybox:1."""
    ref = f"docker://{registry_server.host}/clients/skopeo/busybox:1"
    containers_env.skopeo(*COPY, test_images.layout_ref, ref)
    return ref


def test_copy_from_layout_keeps_manifest_bytes(pushed, containers_env, registry_http, test_images):
    image = test_images.manifest()
    raw = containers_env.skopeo("inspect", "--raw", NO_TLS, pushed).stdout
    assert raw == image.raw
    r = expect(registry_http.get_manifest("clients/skopeo/busybox", "1"), 200)
    assert r.headers["Docker-Content-Digest"] == image.digest
    assert r.headers["Content-Type"].split(";")[0] == image.media_type


def test_copy_back_to_dir_gives_same_blobs(pushed, containers_env, test_images, tmp_path):
    image = test_images.manifest()
    containers_env.skopeo(*COPY, pushed, f"dir:{tmp_path / 'out'}")
    manifest, blobs = read_dir_transport(tmp_path / "out")
    assert manifest == image.raw
    for digest in image.blob_digests():  # config and every layer
        assert sha256_digest(blobs[digest]) == digest
        assert blobs[digest] == image.blob(digest)


def test_inspect(pushed, containers_env, test_images):
    image = test_images.manifest()
    info = json.loads(containers_env.skopeo("inspect", NO_TLS, pushed).stdout)
    assert info["Digest"] == image.digest
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Layers"] == [layer["digest"] for layer in image.json["layers"]]
    config = json.loads(containers_env.skopeo("inspect", "--config", NO_TLS, pushed).stdout)
    assert config == json.loads(image.blob(image.json["config"]["digest"]))


def test_list_tags(pushed, registry_server, containers_env, registry_http):
    repo = f"docker://{registry_server.host}/clients/skopeo/tags"
    for tag in ("1", "2", "latest"):
        containers_env.skopeo(*COPY, pushed, f"{repo}:{tag}")  # registry to registry, blobs reused
    listing = json.loads(containers_env.skopeo("list-tags", NO_TLS, repo).stdout)
    assert listing["Repository"] == f"{registry_server.host}/clients/skopeo/tags"
    assert sorted(listing["Tags"]) == ["1", "2", "latest"]
    if registry_server.is_ours:  # the spec's lexical order; Distribution 2.8.2 lists in directory order
        assert registry_http.tags("clients/skopeo/tags") == ["1", "2", "latest"]


def test_delete_removes_the_manifest_and_its_tags(pushed, registry_server, containers_env, registry_http):
    name = "clients/skopeo/delete"
    for tag in ("a", "b"):
        containers_env.skopeo(*COPY, pushed, f"docker://{registry_server.host}/{name}:{tag}")
    digest = registry_http.descriptor(name, "a")["digest"]
    containers_env.skopeo("delete", NO_TLS, f"docker://{registry_server.host}/{name}:a")
    # skopeo deletes by digest: the manifest goes, and with it every tag that pointed at it.
    expect(registry_http.head_manifest(name, digest), 404)
    expect(registry_http.get_manifest(name, digest), 404)
    for tag in ("a", "b"):
        expect(registry_http.get_manifest(name, tag), 404)
    r = registry_http.request("GET", f"/v2/{name}/tags/list")
    if r.status_code == 200:
        assert not set(r.json().get("tags") or []) & {"a", "b"}
    else:
        expect(r, 404)


def test_copy_all_of_a_multi_arch_index(registry_server, containers_env, registry_http, test_images, tmp_path):
    index = test_images.index()
    ref = f"docker://{registry_server.host}/clients/skopeo/multi:1"
    containers_env.skopeo(*COPY, "--all", test_images.multi_ref, ref)
    assert containers_env.skopeo("inspect", "--raw", NO_TLS, ref).stdout == index.raw
    children = index.children()
    assert len(children) == 2
    for child in children:
        r = expect(registry_http.get_manifest("clients/skopeo/multi", child.digest), 200)
        assert r.content == child.raw
    # skopeo inspect resolves the index to the platform asked for, but reports the index's digest.
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        overrides = ["--override-arch", arch] + (["--override-variant", variant] if variant else [])
        info = json.loads(containers_env.skopeo(*overrides, "inspect", NO_TLS, ref).stdout)
        assert info["Digest"] == index.digest
        assert info["Architecture"] == arch
        config = json.loads(containers_env.skopeo(*overrides, "inspect", "--config", NO_TLS, ref).stdout)
        assert config["architecture"] == arch
    # And back out, --all, into a new OCI layout: the same index and manifests.
    out = tmp_path / "multi-out"
    containers_env.skopeo(*COPY, "--all", ref, f"oci:{out}:multi")
    copied = oci_layout_entry(out, "multi")
    assert copied.digest == index.digest
    assert [c.raw for c in copied.children()] == [c.raw for c in children]
