"""Two `registry serve` processes on one storage root: the registry keeps no state of its own.

An upload started on one process continues on the other (PATCH here, PATCH there, PUT on either: the
resumable hash state is in storage), what one process commits the other serves at once, and both
pushing the same blob and tag at the same time ends in one consistent state.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from tests import pushing
from tests.clients.client_harness import OURS, RegistryProcess, running_registry
from tests.integrity import check_storage

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[RegistryProcess, RegistryProcess]]:
    base = tmp_path_factory.mktemp("multiprocess")
    with running_registry(OURS, base / "root", base / "a") as a, running_registry(OURS, base / "root", base / "b") as b:
        assert a.port != b.port and a.root == b.root
        yield a, b


def test_patch_on_one_put_on_the_other(pair) -> None:
    a, b = pair
    repo = "stateless/upload"
    data = random.Random(3).randbytes(300_000)
    chunk = 40_000
    with pushing.session() as s:
        r = s.post(f"{a.url}/v2/{repo}/blobs/uploads/", timeout=10)
        assert r.status_code == 202
        path = urlsplit(r.headers["Location"]).path
        # Each chunk goes to the other process than the one before; each reports the true offset.
        for n, start in enumerate(range(0, len(data), chunk)):
            server = (a, b)[n % 2]
            part = data[start : start + chunk]
            r = s.patch(server.url + path, data=part, timeout=10,
                        headers={**OCTET, "Content-Range": f"{start}-{start + len(part) - 1}"})
            assert r.status_code == 202, r.text
            assert r.headers["Range"] == f"0-{start + len(part) - 1}"
            path = urlsplit(r.headers["Location"]).path
            other = (b, a)[n % 2]
            r = s.get(other.url + path, timeout=10)
            assert r.status_code == 204 and r.headers["Range"] == f"0-{start + len(part) - 1}"
        r = s.put(f"{b.url}{path}", params={"digest": pushing.digest(data)}, timeout=10)
        assert r.status_code == 201, r.text
        for server in (a, b):
            r = pushing.get_blob(s, server.url, repo, pushing.digest(data))
            assert r.status_code == 200 and r.content == data
        # The finished session is gone for both.
        for server in (a, b):
            r = s.get(server.url + path, timeout=10)
            assert r.status_code == 404 and pushing.error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_what_one_commits_the_other_serves(pair) -> None:
    a, b = pair
    repo = "stateless/image"
    layer, config = b"layer pushed to a" * 1000, pushing.config_blob("ab")
    with pushing.session() as s:
        pushing.push_blob(s, a.url, repo, layer, "post_put")
        pushing.push_blob(s, b.url, repo, config, "single")
        raw = pushing.manifest(config, [layer])
        d = pushing.put_manifest(s, a.url, repo, "v1", raw)  # needs the config b stored
        for server in (a, b):
            r = pushing.get_manifest(s, server.url, repo, "v1")
            assert r.status_code == 200 and r.content == raw and r.headers["Docker-Content-Digest"] == d
            assert s.get(f"{server.url}/v2/{repo}/tags/list", timeout=10).json()["tags"] == ["v1"]
            assert repo in s.get(f"{server.url}/v2/_catalog", timeout=10).json()["repositories"]
        assert s.delete(f"{b.url}/v2/{repo}/manifests/{d}", timeout=10).status_code == 202
        for server in (a, b):
            assert pushing.get_manifest(s, server.url, repo, "v1").status_code == 404
            assert pushing.get_manifest(s, server.url, repo, d).status_code == 404
        # A session cancelled on one process is unknown to the other.
        r = s.post(f"{a.url}/v2/{repo}/blobs/uploads/", timeout=10)
        path = urlsplit(r.headers["Location"]).path
        assert s.delete(b.url + path, timeout=10).status_code == 204
        assert s.patch(a.url + path, data=b"x", headers=OCTET, timeout=10).status_code == 404


def test_both_processes_push_the_same_blob_and_tag(pair) -> None:
    a, b = pair
    repo, tag, clients = "stateless/race", "latest", 16
    layer = random.Random(4).randbytes(100_000)
    config = pushing.config_blob("race")
    raws = [pushing.manifest(config, [layer], annotations={"client": str(i)}) for i in range(clients)]
    barrier = threading.Barrier(clients, timeout=30)

    def client(i: int) -> str:
        server = (a, b)[i % 2]
        with pushing.session() as s:
            barrier.wait()
            pushing.push_blob(s, server.url, repo, layer, pushing.UPLOAD_FORMS[i % 3], chunk=30_000)
            pushing.push_blob(s, server.url, repo, config)
            return pushing.put_manifest(s, server.url, repo, tag, raws[i])

    with ThreadPoolExecutor(clients) as pool:
        digests = [f.result(timeout=120) for f in [pool.submit(client, i) for i in range(clients)]]
    by_digest = dict(zip(digests, raws, strict=True))
    with pushing.session() as s:
        seen = set()
        for server in (a, b):
            r = pushing.get_manifest(s, server.url, repo, tag)
            assert r.status_code == 200 and r.content == by_digest[r.headers["Docker-Content-Digest"]]
            seen.add(r.headers["Docker-Content-Digest"])
            assert pushing.get_blob(s, server.url, repo, pushing.digest(layer)).content == layer
        assert len(seen) == 1  # both processes see the one tag the race left
    assert check_storage(FilesystemDriver(str(a.root))).problems == []
