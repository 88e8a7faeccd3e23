"""Concurrent clients over real HTTP against a real `registry serve` process.

- 32 clients push the same blob (in all three upload forms) and then, at the same instant, each its own
  manifest under the same tag: every request succeeds, the tag resolves to one of the 32 manifests, and
  every manifest and the blob read back right.
- 8 clients delete (tags, manifests, layers, referrers) while 8 pull: every answer is 200/202/404 with
  the right body (a manifest's bytes hash to its Docker-Content-Digest, a blob's to its digest, a 404
  carries the OCI error body), and the end state is the one the deletes asked for.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import pushing
from tests.clients.client_harness import OURS, RegistryProcess, running_registry
from tests.integrity import check_storage

pytest.importorskip("registry_filesystem")
from registry_filesystem.driver import FilesystemDriver  # noqa: E402

PUSHERS = 32
DELETERS = 8
PULLERS = 8
BARRIER_TIMEOUT = 30.0
IMAGES = 48  # in 4 repositories; a third each lose their manifest, their first tag, their layer
THIRD = IMAGES // 3
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RegistryProcess]:
    base = tmp_path_factory.mktemp("concurrency")
    with running_registry(OURS, base / "root", base / "run") as server:
        yield server


def run_all(n: int, fn: Callable[[int], object]) -> list:
    """Run fn(0..n-1) on n threads at once; returns the results (re-raising the first exception)."""
    with ThreadPoolExecutor(n) as pool:
        return [f.result(timeout=120) for f in [pool.submit(fn, i) for i in range(n)]]


def test_32_clients_push_the_same_blob_and_tag(server: RegistryProcess) -> None:
    repo, tag = "race/same", "latest"
    layer = b"the same layer for everyone " + random.Random(1).randbytes(200_000)
    config = pushing.config_blob("shared")
    raws = [pushing.manifest(config, [layer], annotations={"client": str(i)}) for i in range(PUSHERS)]
    start_blobs = threading.Barrier(PUSHERS, timeout=BARRIER_TIMEOUT)
    start_tags = threading.Barrier(PUSHERS, timeout=BARRIER_TIMEOUT)

    def client(i: int) -> str:
        with pushing.session() as s:
            start_blobs.wait()
            form = pushing.UPLOAD_FORMS[i % 3]
            assert pushing.push_blob(s, server.url, repo, layer, form, chunk=65536) == pushing.digest(layer)
            assert pushing.push_blob(s, server.url, repo, config, "single") == pushing.digest(config)
            start_tags.wait()
            return pushing.put_manifest(s, server.url, repo, tag, raws[i])

    digests = run_all(PUSHERS, client)  # any status but 201 raised in its thread
    assert digests == [pushing.digest(raw) for raw in raws]
    by_digest = dict(zip(digests, raws, strict=True))
    with pushing.session() as s:
        r = pushing.get_manifest(s, server.url, repo, tag)
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] in by_digest
        assert r.content == by_digest[r.headers["Docker-Content-Digest"]]
        for d, raw in by_digest.items():
            r = pushing.get_manifest(s, server.url, repo, d)
            assert r.status_code == 200 and r.content == raw
        for data in (layer, config):
            r = pushing.get_blob(s, server.url, repo, pushing.digest(data))
            assert r.status_code == 200 and r.content == data
        assert s.get(f"{server.url}/v2/{repo}/tags/list", timeout=10).json()["tags"] == [tag]
    # One tag directory, with an index entry for every manifest pushed under it.
    index = server.root / f"docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}/index/sha256"
    assert sorted(p.name for p in index.iterdir()) == sorted(d.split(":")[1] for d in digests)
    assert check_storage(FilesystemDriver(str(server.root))).problems == []


def test_8_clients_delete_while_8_pull(server: RegistryProcess) -> None:
    rng = random.Random(2)
    repos = [f"churn/r{k}" for k in range(4)]
    images = []  # (repo, tag, digest, raw, layer)
    with pushing.session() as s:
        for n in range(IMAGES):
            repo = repos[n % 4]
            layer = f"layer {n} ".encode() + rng.randbytes(rng.randrange(1000, 50_000))
            config = pushing.config_blob(f"img{n}")
            for blob in (layer, config):
                pushing.push_blob(s, server.url, repo, blob, rng.choice(pushing.UPLOAD_FORMS))
            raw = pushing.manifest(config, [layer])
            d = pushing.put_manifest(s, server.url, repo, f"t{n}", raw)
            pushing.put_manifest(s, server.url, repo, f"alias{n}", raw)
            images.append((repo, f"t{n}", d, raw, layer))
        # A referrer on each of the first 8 images.
        empty = b"{}"
        referrers = []
        for repo, _tag, d, raw, _layer in images[:THIRD]:
            pushing.push_blob(s, server.url, repo, empty)
            sbom = json.dumps({
                "schemaVersion": 2, "mediaType": pushing.OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": pushing.digest(empty), "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": pushing.digest(empty), "size": 2}],
                "subject": {"mediaType": pushing.OCI_MANIFEST, "digest": d, "size": len(raw)},
            }).encode()
            referrers.append((repo, d, pushing.put_manifest(s, server.url, repo, pushing.digest(sbom), sbom)))

    # The deletes: manifests by digest (the first third), tags only (the second: the manifest stays
    # under its alias), layers (the last: the manifest stays), and every referrer. Each is sent by two
    # deleters, so every delete races another one of the same thing.
    deletes = []
    for n, (repo, tag, d, _raw, layer) in enumerate(images):
        if n < THIRD:
            deletes.append(f"/v2/{repo}/manifests/{d}")
        elif n < 2 * THIRD:
            deletes.append(f"/v2/{repo}/manifests/{tag}")
        else:
            deletes.append(f"/v2/{repo}/blobs/{pushing.digest(layer)}")
    deletes += [f"/v2/{repo}/manifests/{ref}" for repo, _subject, ref in referrers]
    work = deletes + deletes
    rng.shuffle(work)
    reads = []
    for repo, tag, d, _raw, layer in images:
        reads += [("manifest", repo, tag), ("manifest", repo, d), ("manifest", repo, tag.replace("t", "alias")),
                  ("blob", repo, pushing.digest(layer))]
    reads += [("referrers", repo, subject) for repo, subject, _ref in referrers]
    reads += [("tags", repo, "") for repo in repos] + [("catalog", "", "")]
    problems: list[str] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deleting = threading.Event()
    deleting.set()
    start = threading.Barrier(DELETERS + PULLERS, timeout=BARRIER_TIMEOUT)

    def note(r: requests.Response, what: str, ok: tuple[int, ...]) -> None:
        with lock:
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code not in ok:
                problems.append(f"{what}: {r.status_code} {r.text[:200]}")
            elif r.status_code == 404 and not pushing.error_codes(r):
                problems.append(f"{what}: 404 without the OCI error body")

    def deleter(i: int) -> None:
        with pushing.session() as s:
            start.wait()
            jitter = random.Random(100 + i)
            for path in work[i::DELETERS]:
                note(s.delete(server.url + path, timeout=pushing.TIMEOUT), f"DELETE {path}", (202, 404))
                time.sleep(jitter.uniform(0, 0.015))  # spread the deletes over the pulls

    def puller(i: int) -> None:
        order = reads[:]
        random.Random(i).shuffle(order)
        with pushing.session() as s:
            start.wait()
            for rounds in range(50):  # bounded: until the deletes are done, and one round more
                last = not deleting.is_set()
                for kind, repo, ref in order:
                    check_read(s, kind, repo, ref)
                if last:
                    return
            problems.append("pullers still going after 50 rounds")

    def check_read(s: requests.Session, kind: str, repo: str, ref: str) -> None:
        what = f"GET {kind} {repo} {ref}"
        if kind == "manifest":
            r = pushing.get_manifest(s, server.url, repo, ref)
            note(r, what, (200, 404))
            if r.status_code == 200:
                header = r.headers.get("Docker-Content-Digest")
                if pushing.digest(r.content) != header or (ref.startswith("sha256:") and header != ref):
                    problems.append(f"{what}: body hashes to {pushing.digest(r.content)}, header says {header}")
        elif kind == "blob":
            r = pushing.get_blob(s, server.url, repo, ref)
            note(r, what, (200, 404))
            if r.status_code == 200 and pushing.digest(r.content) != ref:
                problems.append(f"{what}: served bytes hash to {pushing.digest(r.content)}")
        elif kind == "referrers":
            r = s.get(f"{server.url}/v2/{repo}/referrers/{ref}", timeout=pushing.TIMEOUT)
            note(r, what, (200,))
            if r.status_code == 200 and r.headers.get("Content-Type") != OCI_INDEX:
                problems.append(f"{what}: content type {r.headers.get('Content-Type')}")
        elif kind == "tags":
            note(s.get(f"{server.url}/v2/{repo}/tags/list", timeout=pushing.TIMEOUT), what, (200,))
        else:
            note(s.get(f"{server.url}/v2/_catalog", timeout=pushing.TIMEOUT), what, (200,))

    with ThreadPoolExecutor(DELETERS + PULLERS) as pool:
        pulls = [pool.submit(puller, i) for i in range(PULLERS)]
        deletions = [pool.submit(deleter, i) for i in range(DELETERS)]
        for f in deletions:
            f.result(timeout=120)
        deleting.clear()
        for f in pulls:
            f.result(timeout=120)
    assert problems == [], problems[:20]
    assert set(statuses) <= {200, 202, 404}, statuses

    # The end state is exactly what the deletes asked for.
    with pushing.session() as s:
        for n, (repo, tag, d, raw, layer) in enumerate(images):
            alias = tag.replace("t", "alias")
            want = {tag: n >= 2 * THIRD, alias: n >= THIRD, d: n >= THIRD}
            for ref, present in want.items():
                r = pushing.get_manifest(s, server.url, repo, ref)
                assert r.status_code == (200 if present else 404), (n, ref, r.status_code)
                if present:
                    assert r.content == raw and r.headers["Docker-Content-Digest"] == d
            r = pushing.get_blob(s, server.url, repo, pushing.digest(layer))
            assert r.status_code == (404 if n >= 2 * THIRD else 200), (n, "layer")
        for repo, subject, _ref in referrers:
            r = s.get(f"{server.url}/v2/{repo}/referrers/{subject}", timeout=10)
            assert r.status_code == 200 and r.json()["manifests"] == []
        for repo in repos:
            tags = s.get(f"{server.url}/v2/{repo}/tags/list", timeout=10).json()["tags"]
            expected = []
            for n, (image_repo, tag, *_rest) in enumerate(images):
                if image_repo == repo:
                    expected += [tag] if n >= 2 * THIRD else []
                    expected += [tag.replace("t", "alias")] if n >= THIRD else []
            assert sorted(tags) == sorted(expected), repo
    report = check_storage(FilesystemDriver(str(server.root)), references=False)
    assert report.problems == [] and report.half_tags == []
    print(f"\ndelete while pull: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")


def test_server_is_healthy_after_the_races(server: RegistryProcess) -> None:
    """The server is still healthy after the races above."""
    started = time.monotonic()
    with pushing.session() as s:
        assert s.get(server.url + "/v2/", timeout=10).status_code == 200
    assert time.monotonic() - started < 5
    assert server.alive()
    log = server.log_tail(5000)
    for sign in ("Traceback", "storage error", "unhandled error"):
        assert sign not in log, log
