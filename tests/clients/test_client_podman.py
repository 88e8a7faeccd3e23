"""podman 4.3: push OCI and Docker schema 2, pull back into an empty store, multi-arch manifest lists.

Pulls go into a fresh image store (`fresh_store`), so every blob really comes from the registry. The
image ID is the config digest: equal IDs mean the config came back byte for byte, equal RootFS layer
lists mean the layers unpacked to the same diff IDs.
"""

import json

import pytest
from client_harness import (
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    expect,
    requirement_marks,
)

pytestmark = [pytest.mark.clients, *requirement_marks("podman", "buildah", "busybox")]

NO_TLS = "--tls-verify=false"
FORMATS = {  # podman --format: (manifest, index, layer) media types
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_LAYER_GZIP),
    "v2s2": (DOCKER_MANIFEST, DOCKER_LIST, DOCKER_LAYER_GZIP),
}


@pytest.fixture(scope="module")
def host(registry_server, containers_env) -> str:
    containers_env.add_insecure_registry(registry_server.host)
    return registry_server.host


def _pull(store, ref: str, *args: str) -> dict:
    image_id = store.podman("pull", "-q", NO_TLS, *args, ref).stdout.decode().split()[-1]
    info = store.image_info(image_id)
    assert info["Id"] == image_id
    return info


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_push_and_pull_back(fmt, host, containers_env, fresh_store, registry_http, test_images):
    manifest_type, _, layer_type = FORMATS[fmt]
    name = f"clients/podman/{fmt}"
    containers_env.podman("push", "-q", NO_TLS, "--format", fmt, test_images.amd64, f"docker://{host}/{name}:1")

    r = expect(registry_http.get_manifest(name, "1"), 200)
    manifest = r.json()
    assert r.headers["Content-Type"].split(";")[0] == manifest["mediaType"] == manifest_type
    assert manifest["config"]["digest"] == test_images.config_digest("amd64")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [layer_type]

    pulled = _pull(fresh_store, f"{host}/{name}:1")
    original = containers_env.image_info(test_images.amd64)
    assert pulled["Id"] == test_images.ids["amd64"]
    assert pulled["RootFS"]["Layers"] == original["RootFS"]["Layers"]
    assert pulled["Digest"] == r.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_manifest_push_all_and_pull_by_arch(fmt, host, containers_env, fresh_store, registry_http, test_images):
    manifest_type, index_type, _ = FORMATS[fmt]
    local, name = f"localhost/clients-podman-multi-{fmt}:1", f"clients/podman/multi-{fmt}"
    containers_env.podman("manifest", "create", local)
    for arch in ("amd64", "arm64"):
        containers_env.podman("manifest", "add", local, f"containers-storage:localhost/busybox:{arch}")
    containers_env.podman(
        "manifest", "push", "-q", "--all", "--format", fmt, NO_TLS, local, f"docker://{host}/{name}:1"
    )

    r = expect(registry_http.get_manifest(name, "1"), 200)
    index = r.json()
    assert r.headers["Content-Type"].split(";")[0] == index["mediaType"] == index_type
    by_arch = {d["platform"]["architecture"]: d for d in index["manifests"]}
    assert sorted(by_arch) == ["amd64", "arm64"]
    for arch, desc in by_arch.items():
        assert desc["mediaType"] == manifest_type
        child = expect(registry_http.get_manifest(name, desc["digest"]), 200)
        assert len(child.content) == desc["size"]
        assert json.loads(child.content)["config"]["digest"] == test_images.config_digest(arch)

    for arch in ("arm64", "amd64"):
        pulled = _pull(fresh_store, f"{host}/{name}:1", "--arch", arch)
        assert pulled["Id"] == test_images.ids[arch]
        assert pulled["Architecture"] == arch
