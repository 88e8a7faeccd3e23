"""buildah 1.28: push as Docker schema 2 and as OCI, pull back into an empty store, manifest push --all."""

import pytest
from client_harness import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    expect,
    requirement_marks,
)

pytestmark = [pytest.mark.clients, *requirement_marks("buildah", "podman", "busybox")]

NO_TLS = "--tls-verify=false"
FORMATS = {"docker": (DOCKER_MANIFEST, DOCKER_LIST), "oci": (OCI_MANIFEST, OCI_INDEX)}


@pytest.fixture(scope="module")
def host(registry_server, containers_env) -> str:
    containers_env.add_insecure_registry(registry_server.host)
    return registry_server.host


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_push_and_pull_back(fmt, host, containers_env, fresh_store, registry_http, test_images):
    manifest_type, _ = FORMATS[fmt]
    name = f"clients/buildah/{fmt}"
    containers_env.buildah("push", "-q", NO_TLS, "--format", fmt, test_images.amd64, f"docker://{host}/{name}:1")

    r = expect(registry_http.get_manifest(name, "1"), 200)
    manifest = r.json()
    assert r.headers["Content-Type"].split(";")[0] == manifest["mediaType"] == manifest_type
    assert manifest["config"]["digest"] == test_images.config_digest("amd64")
    for layer in manifest["layers"]:
        blob = registry_http.get_blob(name, layer["digest"])
        assert len(blob) == layer["size"]

    image_id = fresh_store.buildah("pull", "-q", NO_TLS, f"{host}/{name}:1").stdout.decode().split()[-1]
    assert image_id == test_images.ids["amd64"]
    pulled, original = fresh_store.image_info(image_id), containers_env.image_info(test_images.amd64)
    assert pulled["RootFS"]["Layers"] == original["RootFS"]["Layers"]


def test_manifest_push_all(host, containers_env, registry_http, test_images):
    local, name = "localhost/clients-buildah-multi:1", "clients/buildah/multi"
    containers_env.buildah("manifest", "create", local)
    for arch in ("amd64", "arm64"):
        containers_env.buildah("manifest", "add", local, f"containers-storage:localhost/busybox:{arch}")
    containers_env.buildah("manifest", "push", "-q", "--all", NO_TLS, local, f"docker://{host}/{name}:1")

    index = expect(registry_http.get_manifest(name, "1"), 200).json()
    configs = {}
    for desc in index["manifests"]:
        child = expect(registry_http.get_manifest(name, desc["digest"]), 200).json()
        configs[desc["platform"]["architecture"]] = child["config"]["digest"]
    assert configs == {arch: test_images.config_digest(arch) for arch in ("amd64", "arm64")}
