"""Images across the pair: skopeo pushes through one server and pulls through the other (one root)."""

import json

import pytest
from client_harness import expect, oci_layout_entry, read_dir_transport, requirement_marks, sha256_digest

pytestmark = [pytest.mark.interop, *requirement_marks("skopeo", "buildah", "busybox", "docker-registry")]

COPY = ("copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false")
NO_TLS = "--tls-verify=false"


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_image_pushed_through_one_is_pulled_through_the_other(fmt, direction, containers_env, test_images, tmp_path):
    name = direction.repo(f"image-{fmt}")
    containers_env.skopeo(*COPY, "--format", fmt, test_images.layout_ref, f"docker://{direction.src.host}/{name}:1")
    pushed = expect(direction.src_http.get_manifest(name, "1"), 200)

    raw = containers_env.skopeo("inspect", "--raw", NO_TLS, f"docker://{direction.dst.host}/{name}:1").stdout
    assert raw == pushed.content
    assert (
        expect(direction.dst_http.head_manifest(name, "1"), 200).headers["Docker-Content-Digest"]
        == (pushed.headers["Docker-Content-Digest"])
    )

    containers_env.skopeo(*COPY, f"docker://{direction.dst.host}/{name}:1", f"dir:{tmp_path / 'out'}")
    manifest, blobs = read_dir_transport(tmp_path / "out")
    assert manifest == pushed.content
    doc = json.loads(manifest)
    original = test_images.manifest()
    assert doc["config"]["digest"] == original.json["config"]["digest"]  # the config survives conversion
    for desc in [doc["config"], *doc["layers"]]:
        assert sha256_digest(blobs[desc["digest"]]) == desc["digest"]
        assert len(blobs[desc["digest"]]) == desc["size"]
    if fmt == "oci":  # no conversion: byte-identical to the layout
        assert manifest == original.raw


def test_multi_arch_index_both_ways(direction, containers_env, test_images, tmp_path):
    index = test_images.index()
    name = direction.repo("multi")
    containers_env.skopeo(*COPY, "--all", test_images.multi_ref, f"docker://{direction.src.host}/{name}:1")
    r = expect(direction.dst_http.get_manifest(name, "1"), 200)
    assert r.content == index.raw
    assert r.headers["Docker-Content-Digest"] == index.digest
    for child in index.children():
        assert expect(direction.dst_http.get_manifest(name, child.digest), 200).content == child.raw

    out = tmp_path / "out"
    containers_env.skopeo(*COPY, "--all", f"docker://{direction.dst.host}/{name}:1", f"oci:{out}:multi")
    copied = oci_layout_entry(out, "multi")
    assert copied.digest == index.digest
    for mine, theirs in zip(copied.children(), index.children(), strict=True):
        assert mine.raw == theirs.raw
        for digest in theirs.blob_digests():
            assert mine.blob(digest) == theirs.blob(digest)


def test_tag_listing_is_consistent(registry_pair, pair_http, containers_env, test_images):
    name = "interop/tags"
    ours, dist = registry_pair.ours, registry_pair.distribution
    for server, tags in ((ours, ("1.0", "a", "latest")), (dist, ("1.1", "b", "stable"))):
        for tag in tags:
            containers_env.skopeo(*COPY, test_images.layout_ref, f"docker://{server.host}/{name}:{tag}")
    expected = sorted(["1.0", "1.1", "a", "b", "latest", "stable"])
    # The spec wants lexical order; Distribution 2.8.2 lists tags in directory order.
    assert sorted(pair_http["distribution"].tags(name)) == expected
    if registry_pair.ours.is_ours:
        assert pair_http["ours"].tags(name) == expected
    else:
        assert sorted(pair_http["ours"].tags(name)) == expected
    for server in (ours, dist):
        listing = json.loads(containers_env.skopeo("list-tags", NO_TLS, f"docker://{server.host}/{name}").stdout)
        assert sorted(listing["Tags"]) == expected
    assert name in pair_http["ours"].catalog()
    assert sorted(pair_http["ours"].catalog()) == sorted(pair_http["distribution"].catalog())


def test_manifest_deleted_through_one_is_gone_through_the_other(direction, containers_env, test_images):
    name = direction.repo("delete")
    for tag in ("x", "y"):
        containers_env.skopeo(*COPY, test_images.layout_ref, f"docker://{direction.src.host}/{name}:{tag}")
    digest = direction.dst_http.descriptor(name, "x")["digest"]
    expect(direction.src_http.request("DELETE", f"/v2/{name}/manifests/{digest}"), 202)
    expect(direction.dst_http.head_manifest(name, digest), 404)
    for tag in ("x", "y"):
        expect(direction.dst_http.get_manifest(name, tag), 404)
