"""Quotas and immutable tags in real ``registry serve`` processes: two processes on one storage root
share the counters (a push on one counts on the other, concurrent pushes through both lose no
update), and a real client (skopeo) gets a clean DENIED on a quota and an immutable-tag refusal."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests import pushing

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

from registry.ops.quota import read_usage  # noqa: E402
from registry.ops.usage import disk_usage  # noqa: E402
from registry.storage.checked import checked  # noqa: E402
from registry.storage.store import Store  # noqa: E402

SCRIPT = Path(sys.executable).with_name("registry")
START_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (contrib/dev/install-test-deps.sh installs it under CI)")
    pytest.skip(reason)


@contextlib.contextmanager
def serve(root: Path, workdir: Path, extra: dict) -> Iterator[str]:
    """``registry serve`` on the filesystem ``root`` with ``extra`` config keys; yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"}, **extra}
    path = workdir / f"config-{port}.yml"
    path.write_text(json.dumps(config))
    log = workdir / f"registry-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SCRIPT), "serve", str(path)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        with pushing.session() as s:
            while True:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(requests.RequestException):
                    if s.get(url + "/v2/", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def post_blob(s: requests.Session, url: str, repo: str, data: bytes) -> requests.Response:
    return s.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": pushing.digest(data)}, data=data,
                  headers={"Content-Type": "application/octet-stream"}, timeout=30)


pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the registry script is not installed")


def test_two_processes_share_the_counters(tmp_path) -> None:
    root = tmp_path / "root"
    rules = {"quotas": [{"pattern": "shared/*", "limit": 100_000}, {"pattern": "busy", "limit": "1GiB"}]}
    with serve(root, tmp_path / "a", rules) as a, serve(root, tmp_path / "b", rules) as b, pushing.session() as s:
        first = random.Random(1).randbytes(60_000)
        assert post_blob(s, a, "shared/x", first).status_code == 201
        second = random.Random(2).randbytes(50_000)
        r = post_blob(s, b, "shared/x", second)  # b sees what a counted
        assert r.status_code == 403, r.text
        (error,) = r.json()["errors"]
        assert error["code"] == "DENIED" and "60000 bytes" in error["message"] and "100000 bytes" in error["message"]
        r = s.delete(f"{b}/v2/shared/x/blobs/{pushing.digest(first)}", timeout=30)
        assert r.status_code == 202
        assert post_blob(s, a, "shared/x", second).status_code == 201  # a sees what b gave back

        # 24 pushes at once through both processes into one repository: no update is lost.
        blobs = [random.Random(100 + i).randbytes(3000 + i) for i in range(24)]
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: post_blob(s, (a, b)[i % 2], "busy", blobs[i]).status_code,
                                  range(len(blobs))))
        assert codes == [201] * len(blobs)
    store = Store(checked(FilesystemDriver(rootdirectory=str(root))))
    walked = {r.name: r.bytes for r in disk_usage(store).repositories}
    assert walked == {"shared/x": 50_000, "busy": sum(map(len, blobs))}
    for name, size in walked.items():
        assert read_usage(store.driver, name)[0] == size
    # One counter file per process.
    assert len(store.driver.list("/docker/registry/v2/repositories/busy/_usage")) == 2


def test_concurrent_pushes_over_admit_at_most_the_pushes_in_flight(tmp_path) -> None:
    """12 pushes of 10,000 bytes, 8 at a time through two processes, into a 50,000-byte quota: at
    least the 5 that fit are accepted, at most the 8 in flight more (measured: 5 or 6, as reservations
    in the other process become visible within milliseconds); the counters equal the walk, and a
    refused blob is not stored."""
    root = tmp_path / "root"
    rules = {"quotas": [{"pattern": "race", "limit": 50_000}]}
    blobs = [random.Random(500 + i).randbytes(10_000) for i in range(12)]
    with (serve(root, tmp_path / "a", rules) as a, serve(root, tmp_path / "b", rules) as b,
          pushing.session() as s, ThreadPoolExecutor(8) as pool):
        codes = list(pool.map(lambda i: post_blob(s, (a, b)[i % 2], "race", blobs[i]).status_code,
                              range(len(blobs))))
    assert set(codes) <= {201, 403} and 5 <= codes.count(201) <= 5 + 8, codes
    store = Store(checked(FilesystemDriver(rootdirectory=str(root))))
    (row,) = disk_usage(store).repositories
    assert row.bytes == codes.count(201) * 10_000 == read_usage(store.driver, "race")[0]
    for blob, code in zip(blobs, codes, strict=True):
        d = pushing.digest(blob)
        assert (root / "docker/registry/v2/blobs/sha256" / d[7:9] / d[7:] / "data").exists() == (code == 201)


def test_chunked_patch_over_the_limit(tmp_path) -> None:
    """A chunked PATCH (no Content-Length from the client), streamed (registry.streaming): read no
    further than the quota's room, refused, and the upload with what it had is discarded
    (tests/test_quota_streaming.py measures what is stored and read)."""
    rules = {"quotas": [{"pattern": "chunked", "limit": 50_000}]}
    with serve(tmp_path / "root", tmp_path / "srv", rules) as url, pushing.session() as s:
        r = s.post(f"{url}/v2/chunked/blobs/uploads/", timeout=30)
        loc = url + r.headers["Location"]
        r = s.patch(loc, data=iter([b"a" * 30_000]), headers={"Content-Type": "application/octet-stream"},
                    timeout=30)
        assert r.status_code == 202 and r.request.headers.get("Transfer-Encoding") == "chunked"
        r = s.patch(loc, data=iter([b"b" * 15_000, b"c" * 15_000]), timeout=30,
                    headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 403 and "60000 bytes" in r.json()["errors"][0]["message"], r.text
        assert s.get(loc, timeout=30).status_code == 404
    assert not any((tmp_path / "root").rglob("_uploads/*/data"))


# -- a real client ------------------------------------------------------------------------------


def _layer(seed: int, size: int) -> tuple[bytes, str]:
    """A gzipped tar holding one random file, and its uncompressed digest (the diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = random.Random(seed).randbytes(size)
        info = tarfile.TarInfo("data.bin")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def oci_layout(path: Path, seed: int, size: int, tag: str = "t") -> None:
    """An OCI image layout with one image (one layer of ``size`` random bytes) tagged ``tag``."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return "sha256:" + hexd

    layer, diff_id = _layer(seed, size)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer),
                    "size": len(layer)}],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "REGISTRY_"))}
    env.update(HOME=str(tmp_path / "home"), NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([shutil.which("skopeo") or "skopeo", "--insecure-policy", *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_skopeo_sees_a_clean_denied(tmp_path) -> None:
    if shutil.which("skopeo") is None:
        unavailable("skopeo is not installed")
    root = tmp_path / "root"
    small, big, other = tmp_path / "small", tmp_path / "big", tmp_path / "other"
    oci_layout(small, 1, 1000)
    oci_layout(big, 2, 300_000)  # random data: gzip cannot shrink it under the limit
    oci_layout(other, 3, 1000)
    rules = {"quotas": [{"pattern": "quota/*", "limit": "100KiB"}],
             "immutabletags": [{"repository": "prod/*", "tags": ["v*"]}]}
    with serve(root, tmp_path / "srv", rules) as url:
        host = url.removeprefix("http://")
        copy = ("copy", "-q", "--dest-tls-verify=false")
        ok = skopeo(tmp_path, *copy, f"oci:{small}:t", f"docker://{host}/quota/img:1")
        assert ok.returncode == 0, ok.stderr
        r = skopeo(tmp_path, *copy, f"oci:{big}:t", f"docker://{host}/quota/img:2")
        assert r.returncode != 0
        assert "denied" in r.stderr.lower() and "quota exceeded" in r.stderr, r.stderr
        assert "102400 bytes" in r.stderr and "Traceback" not in r.stderr, r.stderr

        assert skopeo(tmp_path, *copy, f"oci:{small}:t", f"docker://{host}/prod/img:v1").returncode == 0
        again = skopeo(tmp_path, *copy, f"oci:{small}:t", f"docker://{host}/prod/img:v1")
        assert again.returncode == 0, again.stderr  # the same digest again: accepted
        r = skopeo(tmp_path, *copy, f"oci:{other}:t", f"docker://{host}/prod/img:v1")
        assert r.returncode != 0 and "denied" in r.stderr.lower() and "immutable" in r.stderr, r.stderr
        r = skopeo(tmp_path, "delete", "--tls-verify=false", f"docker://{host}/prod/img:v1")
        assert r.returncode != 0 and "immutable" in r.stderr, r.stderr
    # The refused layer was never stored, and nothing of the refused upload is left.
    store = Store(checked(FilesystemDriver(rootdirectory=str(root))))
    manifest_digest = json.loads((big / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((big / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_bytes())
    d = manifest["layers"][0]["digest"]
    assert not (root / "docker/registry/v2/blobs/sha256" / d[7:9] / d[7:]).exists()
    uploads = root / "docker/registry/v2/repositories/quota/img/_uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    usage = {r.name: r.bytes for r in disk_usage(store).repositories}
    assert usage["quota/img"] <= 100 * 1024 and read_usage(store.driver, "quota/img")[0] == usage["quota/img"]
