"""Referrers across the pair: what @sigstore/oci attaches through one server, read through the other.

Through Distribution (no referrers API) the client keeps a `sha256-<hex>` tag index; the spec's "Enabling
the Referrers API" says a registry MUST then list those manifests in its referrers API — so ours must,
reading the same root.
"""

import json

import pytest
from client_harness import OCI_INDEX, expect, referrers_tag, requirement_marks, sigstore_attach

pytestmark = [
    pytest.mark.interop,
    *requirement_marks("node", "buildah", "busybox", "docker-registry", node_packages=("@sigstore/oci",)),
]

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _attach(server, http, repo: str, test_images, tmp_path) -> tuple[str, dict]:
    image = http.push_layout_entry(repo, test_images.manifest(), tag="v1")
    (tmp_path / "bundle.json").write_bytes(json.dumps({"repo": repo}).encode())
    result = sigstore_attach(server, repo, "v1", tmp_path / "bundle.json", BUNDLE)
    assert result["imageDigest"] == image
    return image, result["artifact"]


def test_tag_schema_index_written_through_distribution_is_listed_by_ours(
    registry_pair, pair_http, test_images, tmp_path
):
    repo = "interop/referrers/from-distribution"
    image, artifact = _attach(registry_pair.distribution, pair_http["distribution"], repo, test_images, tmp_path)
    tag_index = expect(pair_http["distribution"].get_manifest(repo, referrers_tag(image)), 200).json()
    assert tag_index["mediaType"] == OCI_INDEX
    assert artifact["digest"] in [d["digest"] for d in tag_index["manifests"]]

    if not registry_pair.ours.supports_referrers:
        pytest.skip("the referrers API is checked against ours only")
    r = expect(pair_http["ours"].referrers(repo, image), 200)
    listed = {d["digest"]: d for d in r.json()["manifests"]}
    assert artifact["digest"] in listed
    assert listed[artifact["digest"]]["artifactType"] == BUNDLE


def test_artifact_attached_through_ours_is_served_by_distribution(registry_pair, pair_http, test_images, tmp_path):
    repo = "interop/referrers/from-ours"
    image, artifact = _attach(registry_pair.ours, pair_http["ours"], repo, test_images, tmp_path)
    r = expect(pair_http["distribution"].get_manifest(repo, artifact["digest"]), 200)
    assert r.json()["subject"]["digest"] == image
    assert r.json()["artifactType"] == BUNDLE
