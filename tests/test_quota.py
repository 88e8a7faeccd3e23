"""Quotas in process, on every core driver (and the object-store-like one): refused at POST, PATCH,
the final PUT and the manifest PUT with DENIED naming limit and usage, nothing stored by a refused
push, deletes giving the space back, namespace rules, and no counter I/O without rules."""

from __future__ import annotations

import json
import random

import falcon.testing
import pytest

from registry.app import create_app
from registry.digests import parse_digest
from registry.ops.quota import read_usage
from registry.ops.usage import disk_usage
from registry.plugins import create_plugin_manager
from registry.storage import paths
from registry.storage.store import QuotaExceededError
from tests.conftest import Pusher, sha256

OCTET = {"Content-Type": "application/octet-stream"}


def quota_client(driver, quotas: list[dict], **extra) -> falcon.testing.TestClient:
    config = {"version": 0.1, "storage": {driver.name: {}, "delete": {"enabled": True}}, "quotas": quotas, **extra}
    return falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))


def data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def denied(r) -> dict:
    assert r.status_code == 403, (r.status_code, r.text)
    (error,) = r.json["errors"]
    assert error["code"] == "DENIED"
    return error


def stored_files(driver) -> set[str]:
    try:
        return {i.path for i in driver.walk("/") if not i.is_dir}
    except Exception:
        return set()


def usage_of(client, name: str) -> int:
    return read_usage(client.app.registry_context.store.driver, name)[0]


def test_post_with_content_length_refused_before_storing(driver) -> None:
    c = quota_client(driver, [{"pattern": "q/*", "limit": 1000}])
    p = Pusher(c)
    p.blob("q/a", data(600))
    before = stored_files(driver)
    blob = data(500, 1)
    r = c.simulate_post("/v2/q/a/blobs/uploads/", params={"digest": sha256(blob)}, body=blob, headers=OCTET)
    error = denied(r)
    # The message names the limit, the usage and what the push needed.
    assert "1000 bytes" in error["message"] and "600 bytes" in error["message"] and "500 bytes" in error["message"]
    assert "q/*" in error["message"]
    assert error["detail"] == {"rule": 0, "pattern": "q/*", "scope": "repository", "repository": "q/a",
                               "limit": 1000, "usage": 600, "requested": 500}
    assert stored_files(driver) == before  # nothing at all was written
    assert c.simulate_head(f"/v2/q/a/blobs/{sha256(blob)}").status_code == 404
    # Another repository is not limited by q/a's usage, nor one the pattern does not match.
    p.blob("q/b", blob)
    p.blob("other", data(5000, 2))


def test_post_start_refused_once_over(driver) -> None:
    c = quota_client(driver, [{"pattern": "q", "limit": 100}])
    Pusher(c).blob("q", data(100))  # exactly the limit is allowed
    assert c.simulate_post("/v2/q/blobs/uploads/").status_code == 202  # nothing declared: may still mount
    c2 = quota_client(driver, [{"pattern": "q", "limit": 99}])  # the limit lowered below the usage
    denied(c2.simulate_post("/v2/q/blobs/uploads/"))


def test_patch_with_content_length_refused_and_upload_discarded(driver) -> None:
    c = quota_client(driver, [{"pattern": "q", "limit": "1KiB"}])
    r = c.simulate_post("/v2/q/blobs/uploads/")
    loc = r.headers["Location"]
    r = c.simulate_patch(loc, body=data(600), headers={**OCTET, "Content-Range": "0-599"})
    assert r.status_code == 202, r.text
    error = denied(c.simulate_patch(loc, body=data(600, 1), headers={**OCTET, "Content-Range": "600-1199"}))
    assert "1024 bytes" in error["message"] and "1200 bytes" in error["message"]
    assert c.simulate_get(loc).status_code == 404  # the upload that could never finish is gone
    assert not [f for f in stored_files(driver) if "/_uploads/" in f or "/blobs/" in f]


def test_final_put_refused_nothing_linked_nothing_kept(driver) -> None:
    c = quota_client(driver, [{"pattern": "q", "limit": 1000}])
    Pusher(c).blob("q", data(500))
    loc = c.simulate_post("/v2/q/blobs/uploads/").headers["Location"]
    first, last = data(400, 1), data(200, 2)
    assert c.simulate_patch(loc, body=first, headers=OCTET).status_code == 202  # 900: still fits
    d = sha256(first + last)
    error = denied(c.simulate_put(loc, params={"digest": d}, body=last, headers=OCTET))
    assert "500 bytes" in error["message"] and "600 bytes" in error["message"]
    assert c.simulate_head(f"/v2/q/blobs/{d}").status_code == 404
    assert c.app.registry_context.store.blob_size(parse_digest(d)) is None
    assert not [f for f in stored_files(driver) if "/_uploads/" in f]
    assert usage_of(c, "q") == 500


def test_exact_check_where_the_data_is_put_in_place(driver) -> None:
    """Below the handlers' early checks (declared sizes), Uploads refuses at the exact size before
    moving the data into place, so a push whose size was not declared is stopped too."""
    c = quota_client(driver, [{"pattern": "q", "limit": 100}])
    ctx = c.app.registry_context
    upload = ctx.uploads.start("q")
    blob = data(150)
    import io

    ctx.uploads.append("q", upload, io.BytesIO(blob), None)  # no length declared
    d = parse_digest(sha256(blob))
    with pytest.raises(QuotaExceededError):
        ctx.uploads.finish("q", upload, d, None, 0)
    assert ctx.store.blob_size(d) is None and not ctx.store.has_layer_link("q", d)


def test_manifest_put_refused(driver) -> None:
    c = quota_client(driver, [{"pattern": "q", "limit": 0}])
    denied(c.simulate_post("/v2/q/blobs/uploads/", params={"digest": sha256(b"x")}, body=b"x", headers=OCTET))
    # Blobs that fit, a manifest that does not.
    config_blob = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = data(300)
    c = quota_client(driver, [{"pattern": "q", "limit": len(config_blob) + len(layer) + 10}])
    p = Pusher(c)
    cd, ld = p.blob("q", config_blob), p.blob("q", layer)
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                                 "size": len(config_blob)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld,
                                  "size": len(layer)}]}).encode()
    error = denied(c.simulate_put("/v2/q/manifests/v1", body=raw,
                                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
    assert f"{len(config_blob) + len(layer)} bytes" in error["message"] and f"{len(raw)} bytes" in error["message"]
    assert c.simulate_get("/v2/q/manifests/v1").status_code == 404
    assert c.simulate_get(f"/v2/q/manifests/{sha256(raw)}").status_code == 404
    assert c.app.registry_context.store.blob_size(parse_digest(sha256(raw))) is None


def test_namespace_rule(driver) -> None:
    c = quota_client(driver, [{"pattern": "team-*", "limit": 1000, "scope": "namespace"}])
    p = Pusher(c)
    p.blob("team-a/one", data(600))
    p.blob("team-a/deep/two", data(300, 1))
    blob = data(200, 2)
    error = denied(c.simulate_post("/v2/team-a/three/blobs/uploads/", params={"digest": sha256(blob)}, body=blob,
                                   headers=OCTET))
    assert "namespace 'team-a'" in error["message"] and "900 bytes" in error["message"]
    assert error["detail"]["namespace"] == "team-a" and error["detail"]["usage"] == 900
    p.blob("team-b/three", blob)  # its own namespace, its own limit
    p.blob("team-a/one", data(600))  # already counted there: no bytes added, accepted
    # A blob shared by two repositories of the namespace counts in each (as `du` rows do).
    denied(c.simulate_post("/v2/team-a/four/blobs/uploads/", params={"digest": sha256(blob)}, body=blob,
                           headers=OCTET))
    # Mounting counts as linking: refused too.
    denied(c.simulate_post("/v2/team-a/four/blobs/uploads/", params={"mount": sha256(blob), "from": "team-b/three"}))
    assert read_usage(driver, "team-a")[1] == 900


def test_deletes_give_the_space_back(driver) -> None:
    c = quota_client(driver, [{"pattern": "q", "limit": 2200}])
    p = Pusher(c)
    d, raw = p.image("q", "v1", layers=(data(1500),))
    used = usage_of(c, "q")
    assert used == sum(r.bytes for r in disk_usage(c.app.registry_context.store).repositories)
    blob = data(800, 1)
    denied(c.simulate_post("/v2/q/blobs/uploads/", params={"digest": sha256(blob)}, body=blob, headers=OCTET))
    assert c.simulate_delete("/v2/q/manifests/v1").status_code == 202  # a tag: the manifest stays, no bytes freed
    assert usage_of(c, "q") == used
    assert c.simulate_delete(f"/v2/q/manifests/{d}").status_code == 202
    assert usage_of(c, "q") == used - len(raw)
    layer = json.loads(raw)["layers"][0]["digest"]
    assert c.simulate_delete(f"/v2/q/blobs/{layer}").status_code == 202
    assert usage_of(c, "q") == used - len(raw) - 1500
    p.blob("q", blob)  # fits again
    assert usage_of(c, "q") == sum(r.bytes for r in disk_usage(c.app.registry_context.store).repositories)


def test_no_rules_no_counters(driver) -> None:
    config = {"version": 0.1, "storage": {driver.name: {}, "delete": {"enabled": True}}}
    c = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))
    assert c.app.registry_context.store.quota is None
    d, _ = Pusher(c).image("n", "v1", layers=(data(100),))
    assert c.simulate_delete(f"/v2/n/manifests/{d}").status_code == 202
    assert not [f for f in stored_files(driver) if "/_usage" in f]


def test_counters_exist_for_every_level(driver) -> None:
    c = quota_client(driver, [{"pattern": "nothing-matches", "limit": 1}])
    Pusher(c).blob("a/b/c", data(10))
    assert read_usage(driver, "a/b/c") == (10, 10)
    assert read_usage(driver, "a/b") == (0, 10)
    assert read_usage(driver, "a") == (0, 10)
    assert paths.usage_dir("a") == f"{paths.REPOSITORIES}/a/_usage"
    # The counter directory does not make a namespace a repository.
    assert c.simulate_get("/v2/_catalog").json["repositories"] == ["a/b/c"]


def test_concurrent_pushes_in_one_process_never_over_admit(driver) -> None:
    """16 threads pushing 100-byte blobs into a 1,000-byte quota through one app: exactly 10 fit.
    The size is reserved (checked and counted in one step) before the body is read."""
    from concurrent.futures import ThreadPoolExecutor

    c = quota_client(driver, [{"pattern": "race", "limit": 1000}])
    blobs = [data(100, 1000 + i) for i in range(16)]

    def push(blob: bytes) -> int:
        return c.simulate_post("/v2/race/blobs/uploads/", params={"digest": sha256(blob)}, body=blob,
                               headers=OCTET).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(push, blobs))
    assert sorted(codes) == [201] * 10 + [403] * 6
    assert usage_of(c, "race") == 1000 == disk_usage(c.app.registry_context.store).total_bytes


def test_forget_repository_gives_its_bytes_back_to_the_namespaces(driver) -> None:
    c = quota_client(driver, [{"pattern": "ns", "scope": "namespace", "limit": 1000}])
    p = Pusher(c)
    p.blob("ns/a", data(300))
    p.blob("ns/b/c", data(200, 1))
    quota = c.app.registry_context.store.quota
    assert quota.forget_repository("ns/a") == 300
    driver.delete(paths.repository("ns/a"))  # as a repository delete would
    assert read_usage(driver, "ns") == (0, 200) and read_usage(driver, "ns/a") == (0, 0)
    p.blob("ns/d", data(800, 2))  # fits again


def test_garbage_collection_and_repository_delete_give_the_space_back(driver) -> None:
    """What GC (``--delete-untagged``) and a repository delete remove is taken off the counters
    they go through the store for, so usage stays what ``registry du`` counts."""
    from registry.ops.gc import collect_garbage
    from registry.ops.repodelete import delete_repository
    from tests.test_gc import LATER

    client = quota_client(driver, [{"pattern": "team/*", "limit": 10**6, "scope": "namespace"}])
    store = client.app.registry_context.store
    pusher = Pusher(client)
    pusher.image("team/app", "v1", layers=(data(2000, 1), data(3000, 2)))
    pusher.image("team/app", "v1", layers=(data(5000, 3),))  # the first image is now untagged
    pusher.image("team/other", "v1", layers=(data(700, 4),))
    before = usage_of(client, "team/app")
    assert before == disk_usage(store, ["team/app"]).repositories[0].bytes

    collect_garbage(store, now=LATER, grace=0, settle=0, delete_untagged=True)
    after = disk_usage(store, ["team/app"]).repositories[0].bytes
    assert after <= before - 5000  # the untagged image's two layers are gone ...
    assert usage_of(client, "team/app") == after  # ... and counted as gone
    # A namespace counts a blob shared by two of its repositories in each (docs/quotas.md).
    assert read_usage(store.driver, "team")[1] == sum(r.bytes for r in disk_usage(store, ["team"]).repositories)

    delete_repository(store, "team/app")
    assert usage_of(client, "team/app") == 0
    assert read_usage(store.driver, "team")[1] == disk_usage(store, ["team/other"]).repositories[0].bytes > 0
