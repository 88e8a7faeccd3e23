"""The registry served on radosgw, as a real ``registry serve`` process: the project's real-client
tests (skopeo, podman, buildah, oras-py), a 1 GiB layer in 16 MiB chunks with what it costs the
object store counted, redirects, and radosgw going away and coming back."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from registry_proc import CountingProxy, Registry, running_registry, session
from s3_servers import CONTRIB, REPO, S3Server

MiB, GiB = 1 << 20, 1 << 30
CLIENT_TESTS = ["test_client_skopeo.py", "test_client_podman.py", "test_client_buildah.py", "test_client_oras.py"]


def rgw_options(server: S3Server, bucket: str, endpoint: str | None = None) -> dict:
    return {"regionendpoint": endpoint or server.endpoint, "bucket": bucket, "accesskey": server.accesskey,
            "secretkey": server.secretkey, "createbucket": True}


@pytest.mark.slow
@pytest.mark.clients
def test_real_clients_on_radosgw(rgw_server: S3Server, tmp_path: Path) -> None:
    """tests/clients' skopeo, podman, buildah and oras-py tests, with the registry they start serving
    from radosgw through the rgw driver (chosen by Distribution-style REGISTRY_STORAGE_* overrides,
    which the harness passes on to ``registry serve``)."""
    bucket = f"clients-{os.getpid()}"
    env = {**os.environ, "REGISTRY_STORAGE": "rgw", "REGISTRY_STORAGE_DELETE_ENABLED": "true",
           **{f"REGISTRY_STORAGE_RGW_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
              for k, v in rgw_options(rgw_server, bucket).items()}}
    tests = [str(REPO / "tests" / "clients" / name) for name in CLIENT_TESTS]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    if "skipped" in summary and not os.environ.get("CI"):
        pytest.skip(f"some clients are not installed here: {summary}")
    assert "skipped" not in summary, summary  # under CI every client is installed
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 20, summary
    # The blobs really went to the bucket.
    keys = [o["Key"] for o in rgw_server.client().list_objects_v2(Bucket=bucket, Prefix="docker/registry/v2/blobs/")
            .get("Contents", [])]
    assert len(keys) >= 5, keys



class RssSampler(threading.Thread):
    """Samples a server's VmRSS every 0.2 s until stopped (bounded to 10 minutes)."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(daemon=True)
        self.registry, self.samples = registry, []
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 600
        while not self.stop.wait(0.2) and time.monotonic() < deadline:
            self.samples.append(self.registry.rss())


def pattern(index: int, size: int) -> bytes:
    """Chunk ``index`` of the test layer: distinct, incompressible-looking, made without a big buffer."""
    block = hashlib.sha256(index.to_bytes(8, "big")).digest() * (64 * 1024 // 32)  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.slow
def test_1_gib_layer_in_16_mib_chunks(rgw_server: S3Server, tmp_path: Path) -> None:
    """Pushed in 16 MiB PATCHes and pulled back through the registry (redirects off): the right
    digest, at most 2.1 GiB sent to radosgw (each chunk once as a part, the final move a server-side
    copy), and the server's memory flat."""
    total, chunk = 1 * GiB, 16 * MiB
    proxy = CountingProxy(int(urlsplit(rgw_server.endpoint).port))
    options = rgw_options(rgw_server, f"big-{os.getpid()}", endpoint=f"http://127.0.0.1:{proxy.port}")
    options["chunksize"] = chunk
    try:
        with running_registry(tmp_path, "rgw", options, redirect=False) as registry, session() as http:
            sampler = RssSampler(registry)
            base_rss = registry.rss()
            sampler.start()
            digest = hashlib.sha256()
            r = http.post(f"{registry.url}/v2/big/layer/blobs/uploads/", timeout=60)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            for index, start in enumerate(range(0, total, chunk)):
                data = pattern(index, chunk)
                digest.update(data)
                r = http.patch(location if location.startswith("http") else registry.url + location, data=data,
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Range": f"{start}-{start + chunk - 1}"}, timeout=120)
                assert r.status_code == 202, r.text
                location = r.headers["Location"]
            ref = f"sha256:{digest.hexdigest()}"
            url = location if location.startswith("http") else registry.url + location
            r = http.put(url, params={"digest": ref}, timeout=600)
            assert r.status_code == 201, r.text
            pushed_sent = proxy.sent
            pulled = hashlib.sha256()
            with http.get(f"{registry.url}/v2/big/layer/blobs/{ref}", stream=True, timeout=600,
                          allow_redirects=False) as r:
                assert r.status_code == 200, r.text  # streamed, not redirected: redirects are disabled
                size = 0
                for piece in r.iter_content(1 << 20):
                    pulled.update(piece)
                    size += len(piece)
            sampler.stop.set()
            sampler.join(5)
            peak = max(sampler.samples)
            print(f"\n1 GiB layer: sent to radosgw {pushed_sent / GiB:.3f} GiB while pushing, received "
                  f"{proxy.received / GiB:.3f} GiB in all; RSS {base_rss / MiB:.0f} MiB at start, "
                  f"peak {peak / MiB:.0f} MiB over {len(sampler.samples)} samples")
    finally:
        proxy.close()
    assert (size, pulled.hexdigest()) == (total, digest.hexdigest())
    assert total <= pushed_sent <= 2.1 * GiB
    # Flat: at most a few chunks' worth above where it started, never anything like the layer, and no
    # growth from the first half of the run to the second.
    assert peak - base_rss < 160 * MiB, (base_rss, peak)
    half = len(sampler.samples) // 2
    assert max(sampler.samples[half:]) <= max(sampler.samples[:half]) + 32 * MiB, sampler.samples


def blob(http, registry: Registry, repo: str, data: bytes) -> str:
    ref = f"sha256:{hashlib.sha256(data).hexdigest()}"
    r = http.post(f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": ref}, data=data,
                  headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert r.status_code == 201, r.text
    return ref


def test_blob_get_redirects_to_a_presigned_url(rgw_server: S3Server, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    with running_registry(tmp_path, "rgw", rgw_options(rgw_server, f"redir-{os.getpid()}")) as registry, \
            session() as http:
        ref = blob(http, registry, "redir/one", data)
        r = http.get(f"{registry.url}/v2/redir/one/blobs/{ref}", allow_redirects=False, timeout=30)
        assert r.status_code == 307, r.text
        location = r.headers["Location"]
        assert location.startswith(rgw_server.endpoint) and "X-Amz-Signature=" in location
        fetched = subprocess.run(["curl", "-sf", "--noproxy", "*", location], capture_output=True, timeout=60)
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout == data


def test_redirect_disabled_streams(rgw_server: S3Server, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    with running_registry(tmp_path, "rgw", rgw_options(rgw_server, f"noredir-{os.getpid()}"),
                          redirect=False) as registry, session() as http:
        ref = blob(http, registry, "redir/two", data)
        r = http.get(f"{registry.url}/v2/redir/two/blobs/{ref}", allow_redirects=False, timeout=30)
        assert r.status_code == 200 and r.content == data


def test_radosgw_stopped_gives_503_and_recovers(rgw_server: S3Server, tmp_path: Path) -> None:
    data = os.urandom(10_000)
    options = {**rgw_options(rgw_server, f"outage-{os.getpid()}"), "maxattempts": 2, "connecttimeout": 2}
    with running_registry(tmp_path, "rgw", options) as registry, session() as http:
        ref = blob(http, registry, "outage/repo", data)
        subprocess.run(["bash", str(CONTRIB / "stop-ceph.sh"), "--only-rgw"], env=rgw_server.env, check=True,
                       timeout=60)
        try:
            for method, url in (("GET", f"/v2/outage/repo/blobs/{ref}"), ("HEAD", f"/v2/outage/repo/blobs/{ref}"),
                                ("POST", "/v2/outage/repo/blobs/uploads/"), ("GET", "/v2/outage/repo/tags/list")):
                r = http.request(method, registry.url + url, allow_redirects=False, timeout=60)
                assert r.status_code == 503, (method, url, r.status_code, r.text)
                assert "Retry-After" in r.headers
                if method != "HEAD":
                    assert r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
            assert registry.proc.poll() is None
        finally:
            subprocess.run(["bash", str(CONTRIB / "start-rgw.sh")], env=rgw_server.env, check=True, timeout=120)
        # Back: the same request works again (a bounded wait for radosgw to serve requests).
        deadline = time.monotonic() + 60
        while True:
            r = http.get(f"{registry.url}/v2/outage/repo/blobs/{ref}", timeout=60)
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status_code == 200 and r.content == data
        assert blob(http, registry, "outage/repo", b"after") == f"sha256:{hashlib.sha256(b'after').hexdigest()}"
