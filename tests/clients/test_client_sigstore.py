"""@sigstore/oci 0.7.2 (Node): attach artifacts to an image the way sigstore-js stores attestations.

The client pushes an artifact manifest with `subject` and `artifactType`, then probes the referrers API.
With it (ours: `OCI-Subject` on the PUT, 200 from /referrers/) the referrers API lists the artifact;
without it (Distribution 2.8.2) the client maintains a `sha256-<hex>` tag index instead.
"""

import json

import pytest
from client_harness import (
    OCI_EMPTY,
    OCI_INDEX,
    expect,
    referrers_tag,
    requirement_marks,
    sha256_digest,
    sigstore_attach,
)

pytestmark = [
    pytest.mark.clients,
    *requirement_marks("node", "buildah", "busybox", node_packages=("@sigstore/oci",)),
]

REPO = "clients/sigstore/image"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_attach_artifacts_to_an_image(registry_server, registry_http, test_images, tmp_path):
    image = registry_http.push_layout_entry(REPO, test_images.manifest(), tag="v1")
    attached = {}
    for n in (1, 2):  # the second attach must add to what the first left, not replace it
        payload = json.dumps({"bundle": n}).encode()
        (tmp_path / f"bundle{n}.json").write_bytes(payload)
        result = sigstore_attach(registry_server, REPO, "v1", tmp_path / f"bundle{n}.json", BUNDLE)
        assert result["imageDigest"] == image
        artifact = result["artifact"]
        manifest = expect(registry_http.get_manifest(REPO, artifact["digest"]), 200).json()
        assert manifest["artifactType"] == BUNDLE
        assert manifest["config"]["mediaType"] == OCI_EMPTY
        assert manifest["subject"]["digest"] == image
        assert [layer["digest"] for layer in manifest["layers"]] == [sha256_digest(payload)]
        assert manifest["annotations"]["org.example.client"] == "sigstore-oci"
        attached[artifact["digest"]] = artifact

    if registry_server.supports_referrers:
        r = expect(registry_http.referrers(REPO, image), 200)
        listed = {d["digest"]: d for d in r.json()["manifests"]}
    else:  # Distribution: the client's fallback, an index under the referrers tag schema
        r = expect(registry_http.get_manifest(REPO, referrers_tag(image)), 200)
        assert r.json()["mediaType"] == OCI_INDEX
        listed = {d["digest"]: d for d in r.json()["manifests"]}
    assert set(attached) <= set(listed)
    for digest in attached:
        assert listed[digest]["artifactType"] == BUNDLE
        assert listed[digest]["annotations"]["org.example.client"] == "sigstore-oci"
