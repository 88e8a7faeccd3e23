"""The registry served on Azurite: `registry serve` as a subprocess, real clients, a 1 GiB chunked
upload with its memory sampled, redirects to SAS URLs, and an Azurite outage in the middle of a test."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CLIENTS = REPO / "tests" / "clients"
if str(CLIENTS) not in sys.path:
    sys.path.insert(0, str(CLIENTS))

import requests  # noqa: E402
from azurite_server import Azurite, delete_container, require_azurite  # noqa: E402
from client_harness import (  # noqa: E402
    OURS,
    STORAGE_ENV,
    RegistryHTTP,
    RegistryProcess,
    expect,
    require_tools,
    sha256_digest,
    start_registry,
)

pytestmark = pytest.mark.slow

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 16 * MiB


@contextlib.contextmanager
def registry_on(azurite: Azurite, container: str, workdir: Path, **storage: object) -> Iterator[RegistryProcess]:
    """`registry serve` with ``storage.azure`` on ``azurite`` (plus other ``storage`` keys)."""
    section = {"azure": azurite.options(container, **storage.pop("azure", {})), **storage}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STORAGE_ENV, json.dumps(section))
        server = start_registry(OURS, workdir / "unused-root", workdir)
    try:
        yield server
    finally:
        died = not server.alive()
        code = server.stop()
        assert not died, f"the registry exited with {code}:\n{server.log_tail()}"


# -- real clients --------------------------------------------------------------------------------


@pytest.mark.clients
@pytest.mark.parametrize("redirect", ["redirects", "no-redirects"])
def test_real_client_suite_on_azurite(azurite, container_name: str, tmp_path: Path, redirect: str) -> None:
    """skopeo, podman and oras-py (the project's own client tests) against a registry on Azurite;
    with redirects the clients fetch blobs from Azurite's SAS URLs."""
    require_tools("registry", "skopeo", "podman", "buildah", "busybox")
    storage = {"azure": azurite.options(container_name)}
    if redirect == "no-redirects":
        storage["redirect"] = {"disable": True}
    tests = [str(CLIENTS / f"test_client_{name}.py") for name in ("skopeo", "podman", "oras")]
    env = {**os.environ, STORAGE_ENV: json.dumps(storage)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO), *tests],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert not re.search(r"\d+ (failed|error|skipped)", summary), summary
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 15, summary
    # The blobs really went to Azurite: the container holds the repositories the clients pushed.
    from azure.storage.blob import ContainerClient

    names = [b.name for b in ContainerClient(azurite.url, container_name, credential=_cred()).list_blobs(
        name_starts_with="docker/registry/v2/repositories/clients/")]
    assert any("/skopeo/" in n for n in names) and any("/podman/" in n for n in names), names[:20]


def _cred() -> dict:
    from azurite_server import ACCOUNT, KEY

    return {"account_name": ACCOUNT, "account_key": KEY}


# -- a shared registry on the session's Azurite ------------------------------------------------------


@pytest.fixture(scope="module")
def registry(azurite, tmp_path_factory) -> Iterator[RegistryProcess]:
    require_tools("registry")
    with registry_on(azurite, "e2e", tmp_path_factory.mktemp("registry-azure")) as server:
        yield server
    delete_container(azurite, "e2e")  # the 1 GiB layer, out of the in-memory emulator


@pytest.fixture(scope="module")
def streaming_registry(azurite, tmp_path_factory) -> Iterator[RegistryProcess]:
    """A second registry on the same container, with ``storage.redirect.disable: true``."""
    require_tools("registry")
    with registry_on(azurite, "e2e", tmp_path_factory.mktemp("registry-azure-stream"),
                     redirect={"disable": True}) as server:
        yield server


def _vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class RssSampler:
    """Samples a process's VmRSS every 50 ms in a thread while in use (bounded by the test's time)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.samples, self._stop = pid, [_vmrss_kib(pid)], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.samples.append(_vmrss_kib(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _chunks(total: int, seed: bytes) -> Iterator[bytes]:
    """``total`` bytes in :data:`CHUNK` pieces, each stamped with its index (a misplaced or repeated
    chunk changes the digest); one piece in memory at a time."""
    for index in range(total // CHUNK):
        yield index.to_bytes(8, "big") + seed[8:]


def test_one_gib_layer_in_16_mib_chunks(registry: RegistryProcess, streaming_registry: RegistryProcess) -> None:
    """Pushed in 64 PATCHes of 16 MiB and pulled back (through the streaming registry, so every byte
    passes through ours): the right digest, and the registry's memory stays flat."""
    seed = os.urandom(CHUNK)
    digest = hashlib.sha256()
    for chunk in _chunks(GiB, seed):
        digest.update(chunk)
    expected = "sha256:" + digest.hexdigest()
    repo = "big/layer"
    http = RegistryHTTP(registry, timeout=300)
    try:
        with RssSampler(registry.proc.pid) as push_rss:
            started = time.monotonic()
            location = http.start_upload(repo)
            offset = 0
            for chunk in _chunks(GiB, seed):
                r = http.request("PATCH", location, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                })
                expect(r, 202)
                offset += len(chunk)
                assert r.headers["Range"] == f"0-{offset - 1}"
                location = requests.compat.urljoin(r.url, r.headers["Location"])
            http.finish_upload(location, expected)
            push_seconds = time.monotonic() - started
    finally:
        http.close()
    pull = RegistryHTTP(streaming_registry, timeout=300)
    try:
        with RssSampler(streaming_registry.proc.pid) as pull_rss:
            started = time.monotonic()
            r = pull.request("GET", f"/v2/{repo}/blobs/{expected}", stream=True)
            expect(r, 200)
            got, size = hashlib.sha256(), 0
            for piece in r.iter_content(MiB):
                got.update(piece)
                size += len(piece)
            pull_seconds = time.monotonic() - started
    finally:
        pull.close()
    assert (size, "sha256:" + got.hexdigest()) == (GiB, expected)
    push_growth = (max(push_rss.samples) - push_rss.samples[0]) // 1024
    pull_growth = (max(pull_rss.samples) - pull_rss.samples[0]) // 1024
    print(f"1 GiB: push {push_seconds:.1f}s, pull {pull_seconds:.1f}s; RSS growth push {push_growth} MiB "
          f"(of {push_rss.samples[0] // 1024}), pull {pull_growth} MiB (of {pull_rss.samples[0] // 1024})")
    # Flat: a few chunk-sized buffers at most, never anything proportional to the 1 GiB.
    assert push_growth < 160, push_rss.samples
    assert pull_growth < 160, pull_rss.samples


# -- redirects -------------------------------------------------------------------------------------


def test_blob_get_redirects_to_a_sas_url_curl_can_fetch(registry, streaming_registry, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024 + 7)
    http = RegistryHTTP(registry)
    try:
        digest = http.upload_monolithic("redirect/me", data)
        r = http.request("GET", f"/v2/redirect/me/blobs/{digest}")
        assert r.status_code == 307, (r.status_code, r.text[:300])
        location = r.headers["Location"]
    finally:
        http.close()
    azurite_url = registry_azure_url(registry)
    assert location.startswith(azurite_url + "/e2e/docker/registry/v2/blobs/sha256/"), location
    query = dict(p.split("=", 1) for p in location.split("?", 1)[1].split("&"))
    assert {"se", "sp", "sig"} <= query.keys() and query["sp"] == "r", query  # expiring, read-only, signed
    out = tmp_path / "blob"
    subprocess.run(["curl", "-sSf", "-o", str(out), location], check=True, timeout=60)
    assert sha256_digest(out.read_bytes()) == digest
    # Tampering with the signed expiry is refused by the service: the signature covers it.
    forged = re.sub(r"se=[^&]+", "se=2099-01-01T00%3A00%3A00Z", location)
    assert subprocess.run(["curl", "-sf", "-o", os.devnull, forged], timeout=60).returncode != 0
    # With storage.redirect.disable the registry streams the blob itself.
    stream = RegistryHTTP(streaming_registry)
    try:
        r = stream.request("GET", f"/v2/redirect/me/blobs/{digest}")
        assert r.status_code == 200 and "Location" not in r.headers
        assert sha256_digest(r.content) == digest
    finally:
        stream.close()


def registry_azure_url(server: RegistryProcess) -> str:
    return json.loads(server.config.read_text().split("azure: ", 1)[1].splitlines()[0])["serviceurl"]


# -- an outage -------------------------------------------------------------------------------------


def test_azurite_stopped_mid_test_gives_503_then_recovers(tmp_path: Path) -> None:
    """Its own Azurite, keeping data on disk, stopped and started again on the same port."""
    require_azurite()
    require_tools("registry")
    azurite = Azurite(tmp_path / "azurite", location=tmp_path / "azurite-data").start()
    try:
        with registry_on(azurite, "outage", tmp_path / "run", azure={"max_retries": 1, "retry_delay": "100ms"},
                         redirect={"disable": True}) as server:
            http = RegistryHTTP(server)
            try:
                before = os.urandom(64 * 1024)
                digest = http.upload_monolithic("outage/repo", before)
                location = http.start_upload("outage/repo")
                azurite.stop()
                started = time.monotonic()
                for method, path in (("GET", f"/v2/outage/repo/blobs/{digest}"),
                                     ("HEAD", f"/v2/outage/repo/blobs/{digest}"),
                                     ("POST", "/v2/outage/repo/blobs/uploads/")):
                    r = http.request(method, path)
                    assert r.status_code == 503, (method, r.status_code, r.text[:300])
                    if method != "HEAD":
                        assert [e["code"] for e in r.json()["errors"]] == ["UNAVAILABLE"], r.text
                octets = {"Content-Type": "application/octet-stream"}
                r = http.request("PATCH", location, data=b"x" * 100, headers=octets)
                assert r.status_code == 503, r.text[:300]
                assert time.monotonic() - started < 60
                assert server.alive()
                azurite.start()
                assert http.get_blob("outage/repo", digest) == before
                after = os.urandom(10_000)
                r = http.request("PATCH", location, data=after, headers=octets)
                expect(r, 202)
                http.finish_upload(requests.compat.urljoin(r.url, r.headers["Location"]), sha256_digest(after))
                assert http.get_blob("outage/repo", sha256_digest(after)) == after
            finally:
                http.close()
    finally:
        azurite.stop()
