"""Scale-out: three ``registry serve`` processes on one radosgw bucket behind nginx's round-robin
(contrib/nginx/registry-cluster.conf), as docs/s3.md describes growing past one machine."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from registry_proc import Registry, running_registry, session
from s3_servers import REPO, S3Server

from tests.nginx import nginx_cluster

pytestmark = pytest.mark.slow

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
UPSTREAM = "X-Registry-Upstream"


class Cluster:
    def __init__(self, url: str, backends: list[Registry]) -> None:
        self.url, self.backends = url, backends


@pytest.fixture(scope="module")
def cluster(rgw_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    options = {"regionendpoint": rgw_server.endpoint, "bucket": f"cluster-{os.getpid()}", "createbucket": True,
               "accesskey": rgw_server.accesskey, "secretkey": rgw_server.secretkey, "chunksize": 5 * MiB}
    with contextlib.ExitStack() as stack:
        backends = [stack.enter_context(running_registry(workdir / f"r{i}", "rgw", options, redirect=False))
                    for i in range(3)]
        url = stack.enter_context(nginx_cluster(workdir, [b.url.removeprefix("http://") for b in backends]))
        yield Cluster(url, backends)


def absolute(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


def push_blob(http: requests.Session, url: str, repo: str, chunks: list[bytes]) -> tuple[str, set[str]]:
    """POST, one PATCH per chunk, PUT: returns the digest and the processes that answered."""
    digest = f"sha256:{hashlib.sha256(b''.join(chunks)).hexdigest()}"
    r = http.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=60)
    assert r.status_code == 202, r.text
    seen, location, offset = {r.headers[UPSTREAM]}, absolute(url, r.headers["Location"]), 0
    for chunk in chunks:
        r = http.patch(location, data=chunk, timeout=120, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        seen.add(r.headers[UPSTREAM])
        location = absolute(url, r.headers["Location"])
    r = http.put(location, params={"digest": digest}, timeout=300)
    assert r.status_code == 201, r.text
    seen.add(r.headers[UPSTREAM])
    return digest, seen


def push_image(url: str, repo: str, tag: str, seed: int) -> tuple[str, str, set[str]]:
    """A small image (config + one chunked layer) tagged ``tag``; returns (manifest digest, layer digest,
    processes that answered the layer's requests)."""
    with session() as http:
        layer = [hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32)
                 for i, size in enumerate((6 * MiB, 1 * MiB, 5 * MiB + 32, 4096))]
        layer_digest, seen = push_blob(http, url, repo, layer)
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        config_digest, _ = push_blob(http, url, repo, [config])
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": sum(map(len, layer))}],
        }).encode()
        r = http.put(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST},
                     timeout=60)
        assert r.status_code == 201, r.text
        return f"sha256:{hashlib.sha256(manifest).hexdigest()}", layer_digest, seen


def test_chunked_upload_across_processes(cluster: Cluster) -> None:
    manifest, layer, seen = push_image(cluster.url, "scale/one", "v1", seed=0)
    assert len(seen) == 3, f"the upload's requests all landed on {seen}"
    # Every process serves what the others stored.
    with session() as http:
        for backend in cluster.backends:
            r = http.get(f"{backend.url}/v2/scale/one/blobs/{layer}", timeout=60)
            assert r.status_code == 200 and f"sha256:{hashlib.sha256(r.content).hexdigest()}" == layer
            r = http.get(f"{backend.url}/v2/scale/one/manifests/v1", headers={"Accept": OCI_MANIFEST}, timeout=60)
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == manifest


def test_eight_concurrent_pushers_lose_nothing(cluster: Cluster) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {n: pool.submit(push_image, cluster.url, f"scale/pusher{n}", "latest", seed=100 + n)
                   for n in range(8)}
        pushed = {n: f.result(timeout=600) for n, f in futures.items()}
    with session() as http:
        for n, (manifest, layer, _) in pushed.items():
            backend = cluster.backends[n % 3]
            r = http.get(f"{backend.url}/v2/scale/pusher{n}/manifests/latest", headers={"Accept": OCI_MANIFEST},
                         timeout=60)
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == manifest
            r = http.get(f"{backend.url}/v2/scale/pusher{n}/blobs/{layer}", timeout=60)
            assert f"sha256:{hashlib.sha256(r.content).hexdigest()}" == layer
        catalog = http.get(f"{cluster.url}/v2/_catalog", timeout=60).json()["repositories"]
    assert {f"scale/pusher{n}" for n in range(8)} <= set(catalog)


@pytest.mark.clients
def test_real_clients_through_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """skopeo copies an image in through nginx and back out; podman pulls it into an empty store."""
    sys.path.insert(0, str(REPO / "tests" / "clients"))
    from client_harness import ContainersEnv, build_test_images, read_dir_transport, require_tools

    require_tools("skopeo", "podman", "buildah", "busybox")
    env = ContainersEnv(tmp_path / "containers")
    (tmp_path / "images").mkdir()
    images = build_test_images(env, tmp_path / "images")
    host = cluster.url.removeprefix("http://")
    env.add_insecure_registry(host)
    ref = f"{host}/scale/clients:1"
    env.skopeo("copy", "-q", "--dest-tls-verify=false", images.layout_ref, f"docker://{ref}")
    env.skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"dir:{tmp_path / 'out'}")
    manifest, _ = read_dir_transport(tmp_path / "out")
    assert manifest == images.manifest().raw
    fresh = env.fresh(tmp_path / "fresh")
    fresh.podman("pull", "-q", "--tls-verify=false", ref)
    assert fresh.image_info(ref)
