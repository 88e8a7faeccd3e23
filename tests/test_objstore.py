"""The core on an object store: the exported suite on the object-store-like test driver
(tests/objstore.py: S3's rules in memory), and what an upload costs there, counted.

The counts are the point of the upload contract (issue 9): on an object store a chunk must cost what
it holds, not everything uploaded before it again, and a blob must be copied into place at most once.
"""

from __future__ import annotations

import hashlib
import os
import random

import falcon.testing
import pytest

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.driver import Capability, ConflictError, PathNotFoundError, StorageError
from registry.storage.paging import delimited_page
from registry.storage.store import Store
from registry.storage.uploads import Uploads
from registry.testing.conformance import DriverSuite
from tests.objstore import MIN_PART, ObjectStore, ObjectStoreDriver, ObjectStoreError

MiB = 1 << 20


class TestObjectStoreConformance(DriverSuite):
    @pytest.fixture
    def driver(self) -> ObjectStoreDriver:
        return ObjectStoreDriver()


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore()


@pytest.fixture
def client(store: ObjectStore) -> falcon.testing.TestClient:
    config = {"version": 0.1, "storage": {"objstore": {}, "delete": {"enabled": True}}}
    return falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=ObjectStoreDriver(store)))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _chunked_upload(client: falcon.testing.TestClient, name: str, data: bytes, chunk: int) -> str:
    r = client.simulate_post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    for offset in range(0, len(data), chunk):
        piece = data[offset:offset + chunk]
        r = client.simulate_patch(location, body=piece, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(piece) - 1}"})
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{offset + len(piece) - 1}"
        location = r.headers["Location"]
    d = _digest(data)
    r = client.simulate_put(location, params={"digest": d})
    assert r.status_code == 201, r.text
    return d


def _pulled(client: falcon.testing.TestClient, name: str, d: str) -> bytes:
    r = client.simulate_get(f"/v2/{name}/blobs/{d}")
    assert r.status_code == 200, r.text
    return r.content


def test_the_test_driver_declares_an_object_stores_capabilities() -> None:
    caps = ObjectStoreDriver().capabilities
    assert Capability.EXCLUSIVE_APPEND not in caps and Capability.RENAME not in caps
    assert Capability.READ_UNCOMMITTED not in caps


def test_the_test_driver_keeps_s3s_rules(store: ObjectStore) -> None:
    """The fake is only worth something if it refuses what S3 refuses."""
    upload = store.create_multipart("/k", "append")
    store.upload_parts(upload, None, [b"small", b"last"])
    with pytest.raises(ObjectStoreError, match="EntityTooSmall"):
        store.complete(upload)
    driver = ObjectStoreDriver(store)
    driver.put_content("/a/b", b"")
    with pytest.raises(StorageError, match="directory"):
        driver.put_content("/a", b"y")
    with pytest.raises(PathNotFoundError):
        driver.move("/missing", "/elsewhere")  # no rename of what is not there, no copy either
    assert store.stats["copies"] == 0


def test_a_64_mib_upload_in_16_patches_stores_each_byte_about_once_and_copies_once(client, store) -> None:
    """16 chunks of 4 MiB, each under S3's 5 MiB minimum part: what a chunk cannot fill a part with
    waits as a small tail object and goes into the next part, so those bytes are stored twice; every
    other byte once. Without the contract's close-not-commit rule every PATCH would finish a
    multipart upload and copy everything before it again: 16 times as much."""
    data = os.urandom(64 * MiB)
    d = _chunked_upload(client, "counted/repo", data, 4 * MiB)
    stats = store.stats
    assert stats["complete"] == 1, stats  # committed once, at the PUT
    assert stats["copies"] == 1 and stats["bytes_copied"] == len(data), stats  # one move into place
    assert stats["bytes_stored"] <= 1.5 * len(data) + MIN_PART, stats
    assert _pulled(client, "counted/repo", d) == data
    leftovers = [k for k in store.objects if "/_uploads/" in k]
    assert leftovers == [] and store.uploads == {}, (leftovers, store.uploads)


def test_chunks_of_a_part_or_more_are_stored_exactly_once(client, store) -> None:
    data = os.urandom(48 * MiB + 123)
    d = _chunked_upload(client, "counted/big", data, 8 * MiB)
    assert store.stats["bytes_stored"] <= len(data) + MIN_PART, store.stats
    assert store.stats["copies"] == 1, store.stats
    assert _pulled(client, "counted/big", d) == data


@pytest.mark.parametrize("how", ["post", "put"])
def test_a_blob_in_one_request_is_written_in_place_never_copied(client, store, how: str) -> None:
    """POST ?digest= with the body, or PUT with the body of an empty upload: a content-addressed put."""
    data = os.urandom(12 * MiB + 5)
    d = _digest(data)
    if how == "post":
        r = client.simulate_post("/v2/once/repo/blobs/uploads/", params={"digest": d}, body=data)
    else:
        location = client.simulate_post("/v2/once/repo/blobs/uploads/").headers["Location"]
        r = client.simulate_put(location, params={"digest": d}, body=data)
    assert r.status_code == 201, r.text
    assert store.stats["copies"] == 0 and store.stats["bytes_stored"] <= len(data) + 1024, store.stats
    assert _pulled(client, "once/repo", d) == data


def test_a_wrong_digest_stores_nothing_and_cancels_the_upload(client, store) -> None:
    data = os.urandom(6 * MiB)
    r = client.simulate_post("/v2/bad/repo/blobs/uploads/")
    location = r.headers["Location"]
    assert client.simulate_patch(location, body=data).status_code == 202
    r = client.simulate_put(location, params={"digest": _digest(b"other")})
    assert r.status_code == 400 and r.json["errors"][0]["code"] == "DIGEST_INVALID", r.text
    assert not [k for k in store.objects if "/blobs/" in k]
    assert client.simulate_get(location).status_code == 404


def test_the_digest_is_verified_over_what_is_stored(client, store) -> None:
    """No hash state is trusted on a driver whose writers do not take turns: bytes changed in storage
    behind the registry's back (another process, a bug) are caught at the PUT."""
    data = os.urandom(2 * MiB)
    location = client.simulate_post("/v2/tamper/repo/blobs/uploads/").headers["Location"]
    assert client.simulate_patch(location, body=data).status_code == 202
    (tail,) = [k for k in store.objects if k.endswith("~tail")]
    store.objects[tail] = (b"X" + store.objects[tail][0][1:], store.objects[tail][1])
    r = client.simulate_put(location, params={"digest": _digest(data)})
    assert r.status_code == 400 and r.json["errors"][0]["code"] == "DIGEST_INVALID", r.text


def _other_process_writer(store: ObjectStore, location: str):
    """An appending writer of the upload's data as another registry process would open it (a fake
    for that process: the test drives the driver itself)."""
    upload_id = location.rsplit("/", 1)[1]
    name = location.split("/v2/", 1)[1].split("/blobs/", 1)[0]
    return ObjectStoreDriver(store).writer(f"/docker/registry/v2/repositories/{name}/_uploads/{upload_id}/data",
                                           append=True)


def test_a_patch_that_ends_after_a_conflicting_one_gets_416_and_stores_nothing(client, store, monkeypatch) -> None:
    """Two processes resume one upload at the same offset; the other ends first: this PATCH is
    answered 416 with where the upload stands, and none of its bytes are kept."""
    location = client.simulate_post("/v2/conflict/repo/blobs/uploads/").headers["Location"]
    assert client.simulate_patch(location, body=b"first|").status_code == 202
    other = _other_process_writer(store, location)
    other.write(b"other process|")
    real = Uploads._write_chunk

    def other_ends_meanwhile(self, *args):
        out = real(self, *args)
        other.close()
        return out

    monkeypatch.setattr(Uploads, "_write_chunk", other_ends_meanwhile)
    r = client.simulate_patch(location, body=b"this process|", headers={"Content-Range": "6-18"})
    assert r.status_code == 416 and r.json["errors"][0]["code"] == "RANGE_INVALID", r.text
    assert r.headers["Range"] == f"0-{len(b'first|other process|') - 1}"
    monkeypatch.undo()
    d = _digest(b"first|other process|")
    assert client.simulate_put(location, params={"digest": d}).status_code == 201
    assert _pulled(client, "conflict/repo", d) == b"first|other process|"


def test_a_writer_that_ends_after_a_conflicting_patch_is_refused(client, store) -> None:
    location = client.simulate_post("/v2/conflict2/repo/blobs/uploads/").headers["Location"]
    other = _other_process_writer(store, location)
    other.write(b"other process|")
    assert client.simulate_patch(location, body=b"this process|", headers={"Content-Range": "0-12"}).status_code == 202
    with pytest.raises(ConflictError):
        other.close()
    d = _digest(b"this process|")
    assert client.simulate_put(location, params={"digest": d}).status_code == 201
    assert _pulled(client, "conflict2/repo", d) == b"this process|"


def test_a_put_whose_commit_finds_the_upload_changed_gets_416(client, store, monkeypatch) -> None:
    """Another process's PATCH ends between this PUT opening the upload and committing it."""
    location = client.simulate_post("/v2/conflict3/repo/blobs/uploads/").headers["Location"]
    assert client.simulate_patch(location, body=b"first|").status_code == 202
    other = _other_process_writer(store, location)
    other.write(b"late|")
    real = Uploads._writer

    def other_ends_meanwhile(self, *args):
        writer = real(self, *args)
        other.close()
        return writer

    monkeypatch.setattr(Uploads, "_writer", other_ends_meanwhile)
    r = client.simulate_put(location, params={"digest": _digest(b"first|")})
    assert r.status_code == 416 and r.json["errors"][0]["code"] == "RANGE_INVALID", r.text
    monkeypatch.undo()
    d = _digest(b"first|late|")
    assert client.simulate_put(location, params={"digest": d}).status_code == 201
    assert _pulled(client, "conflict3/repo", d) == b"first|late|"


# -- the catalog, paged ---------------------------------------------------------------------------

#: Names whose key order differs from their name order (``a/`` after ``a-b``), nested repositories,
#: a namespace that is no repository, digits before ``_`` and an upload that is no repository yet.
CATALOG = ["a", "a/b", "a/b/c", "a-b", "a.b", "a0", "a_b", "ab", "app", "app-1", "app-1/x", "app-2", "app.x",
           "ns/one", "ns/two", "ns/two/deep", "0", "0/1", "9-z", "z"]


def _make_repos(driver: ObjectStoreDriver, names: list[str]) -> None:
    for name in names:
        driver.put_content(f"{paths.manifests_dir(name)}/tags/latest/current/link", b"sha256:" + b"0" * 64)
    driver.put_content(f"{paths.REPOSITORIES}/only-an-upload/_uploads/u/startedat", b"x")


@pytest.mark.parametrize("paged", [True, False], ids=["list_page", "whole-listings"])
def test_catalog_pages_in_path_order_from_any_last(paged: bool) -> None:
    driver = ObjectStoreDriver()
    if not paged:
        driver.capabilities = Capability.SERVER_COPY  # the same store, listed whole
    _make_repos(driver, CATALOG)
    store = Store(checked(driver))
    order = sorted(CATALOG, key=lambda n: n.split("/"))
    assert list(store.repositories()) == order
    # Present or not, and what a client may send that names nothing: an empty component, capitals,
    # characters outside the path alphabet, a dot component, a component too long to be a name.
    lasts = [*order, "a/", "a//b", "a-", "app-1/w", "app-10", "A", "~", "a~", "app-\u00e9", "..", "ns/..", "zz",
             "a" * 300, "ns/" + "t" * 300, "_", "ns/_x"]
    for last in lasts:
        after = tuple(last.split("/"))
        expected = [n for n in order if tuple(n.split("/")) > after]
        for limit in (1, 2, 5, 100):
            assert list(store.repositories(last=last, limit=limit)) == expected[:limit], (last, limit)


def test_a_middle_catalog_page_lists_only_its_own_part_of_a_flat_tree() -> None:
    object_store = ObjectStore()
    driver = ObjectStoreDriver(object_store)
    names = [f"repo-{i:05d}" for i in range(2000)]
    _make_repos(driver, names)
    store = Store(checked(driver))
    before = object_store.stats["list"]
    assert list(store.repositories(last=names[1000], limit=10)) == names[1001:1011]
    # One listing of the level from `last` on, one probe (is `repo` a directory sorting before
    # `repo-...`?), one listing of `last`'s own directory and one per repository shown: ~14, where
    # whole listings would read all 2,000 names of the level.
    assert object_store.stats["list"] - before <= 16


def test_tag_pages_from_any_last(store: ObjectStore, client: falcon.testing.TestClient) -> None:
    driver = ObjectStoreDriver(store)
    tags = sorted(["1.0", "1.0-rc1", "1.0.1", "10", "latest", "v1", "v1-alpine", "v1.2", "V1", "_x", "v1_2"])
    for tag in tags:
        driver.put_content(f"{paths.tag_dir('lib/app', tag)}/current/link", b"sha256:" + b"0" * 64)
    before = store.stats["list"]
    r = client.simulate_get("/v2/lib/app/tags/list", params={"n": "2", "last": "latest"})
    assert r.json["tags"] == ["v1", "v1-alpine"] and "last=v1-alpine" in r.headers["Link"]
    assert store.stats["list"] - before <= 3  # one listing from `last` on, and a probe for `v1`
    for last in [None, *tags, "1", "1.0-", "v1~", "~", "..", "zz", "a" * 300]:
        expected = [t for t in tags if last is None or t > last]
        for n in (1, 2, 3, 100):
            params = {"n": str(n), **({"last": last} if last is not None else {})}
            r = client.simulate_get("/v2/lib/app/tags/list", params=params)
            assert r.status_code == 200, r.text
            assert r.json == {"name": "lib/app", "tags": expected[:n]}, (last, n)
            assert ("Link" in r.headers) == (len(expected) > n), (last, n)
    assert client.simulate_get("/v2/lib/app/tags/list").json["tags"] == tags
    assert client.simulate_get("/v2/lib/app/tags/list", params={"n": "0"}).json["tags"] == []
    assert client.simulate_get("/v2/lib/none/tags/list", params={"n": "5"}).status_code == 404


def test_delimited_page_matches_name_order_on_random_directories() -> None:
    """Random directories over the characters where key order and name order part (``-`` and ``.``
    sort before ``/``): every page from every `after`, against sorting the names; reading stops one
    name past the page, and the checks for names listed out of place stay under one per ``-``/``.``."""
    rng = random.Random(11)
    for _ in range(300):
        names = sorted({"".join(rng.choice("a-.0_") for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 12))})
        dirs = {n for n in names if rng.random() < 0.6}
        keys = sorted(n + "/" if n in dirs else n for n in names)
        for after in [None, *names, "-", "a", "a-", "a/", "zz"]:
            start = [k for k in keys if after is None or k > after]
            expected = [n for n in names if after is None or n > after]
            for limit in (1, 2, 3, 20):
                checks: list[str] = []

                def is_dir(name: str, checks: list[str] = checks) -> bool:
                    checks.append(name)
                    return name in dirs

                page, more, _ = delimited_page(iter(start), is_dir, after, limit)
                assert (page, more) == (expected[:limit], len(expected) > limit), (names, dirs, after, limit)
                assert len(checks) <= 4, checks
