"""The OCI distribution API, workflow by workflow (pull, push, discovery, management, referrers).

Each test runs against every core storage driver through the real Falcon app.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import Pusher, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def error_code(r) -> str:
    body = r.json
    assert set(body) == {"errors"}, body
    return body["errors"][0]["code"]


# -- end-1 ---------------------------------------------------------------------------------------


def test_base_endpoint(client):
    r = client.simulate_get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


@pytest.mark.parametrize("accept", ["application/json", "application/octet-stream", "text/html", "*/*"])
def test_unknown_path_gets_error_json_whatever_accept(client, accept):
    r = client.simulate_get("/v2/foo/unknown-endpoint", headers={"Accept": accept})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert error_code(r) == "NOT_FOUND"
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_method_not_allowed_has_error_body(client):
    r = client.simulate_request("PATCH", "/v2/foo/manifests/latest")
    assert r.status_code == 405
    assert error_code(r) == "UNSUPPORTED"


# -- push: blobs -----------------------------------------------------------------------------------


def test_post_then_put_monolithic(client):
    data = b"x" * 70000
    r = client.simulate_post("/v2/a/b/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert r.headers["Range"] == "0-0"
    r = client.simulate_put(loc, params={"digest": sha256(data)}, body=data,
                            headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/a/b/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    r = client.simulate_get(f"/v2/a/b/blobs/{sha256(data)}")
    assert r.status_code == 200 and r.content == data
    assert r.headers["Docker-Content-Digest"] == sha256(data)


def test_single_post_monolithic(client):
    data = b"single post"
    r = client.simulate_post("/v2/repo/blobs/uploads/", params={"digest": sha256(data)}, body=data)
    assert r.status_code == 201
    assert client.simulate_head(f"/v2/repo/blobs/{sha256(data)}").headers["Content-Length"] == str(len(data))


def test_single_post_wrong_digest_leaves_nothing(client, storage_snapshot):
    before = storage_snapshot()
    r = client.simulate_post("/v2/repo/blobs/uploads/", params={"digest": sha256(b"other")}, body=b"data")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.simulate_head(f"/v2/repo/blobs/{sha256(b'data')}").status_code == 404
    after = {k: v for k, v in storage_snapshot().items() if "/_uploads/" not in k and "startedat" not in k}
    assert after == before


def test_chunked_upload_and_status(client):
    chunks = [b"a" * 1000, b"b" * 2000, b"c" * 5]
    data = b"".join(chunks)
    loc = client.simulate_post("/v2/chunky/blobs/uploads/").headers["Location"]
    offset = 0
    for chunk in chunks:
        r = client.simulate_patch(loc, body=chunk, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            "Content-Length": str(len(chunk))})
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        loc = r.headers["Location"]
    r = client.simulate_get(loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.simulate_put(loc, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert client.simulate_get(f"/v2/chunky/blobs/{sha256(data)}").content == data
    assert client.simulate_get(loc).status_code == 404  # the session is gone


def test_chunk_out_of_order_is_416_with_range(client):
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    client.simulate_patch(loc, body=b"12345", headers={"Content-Range": "0-4"})
    r = client.simulate_patch(loc, body=b"xxxxx", headers={"Content-Range": "10-14"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-4"
    assert r.headers["Location"].endswith(loc.rsplit("/", 1)[1])
    assert error_code(r) == "RANGE_INVALID"
    assert client.simulate_get(loc).headers["Range"] == "0-4"


def test_put_with_final_chunk(client):
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    client.simulate_patch(loc, body=b"first-", headers={"Content-Range": "0-5"})
    r = client.simulate_put(loc, params={"digest": sha256(b"first-last")}, body=b"last",
                            headers={"Content-Range": "6-9", "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert client.simulate_get(f"/v2/r/blobs/{sha256(b'first-last')}").content == b"first-last"


def test_put_wrong_digest_cancels_upload(client):
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    client.simulate_patch(loc, body=b"abc")
    r = client.simulate_put(loc, params={"digest": sha256(b"xyz")})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert client.simulate_head(f"/v2/r/blobs/{sha256(b'abc')}").status_code == 404
    assert client.simulate_get(loc).status_code == 404


def test_put_without_digest(client):
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    r = client.simulate_put(loc)
    assert r.status_code == 400 and error_code(r) == "BLOB_UPLOAD_INVALID"


def test_sha512_blob(client):
    data = b"sha512 content"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    client.simulate_patch(loc, body=data)
    r = client.simulate_put(loc, params={"digest": d})
    assert r.status_code == 201, r.text
    assert client.simulate_get(f"/v2/r/blobs/{d}").content == data


def test_cancel_upload(client):
    loc = client.simulate_post("/v2/r/blobs/uploads/").headers["Location"]
    r = client.simulate_delete(loc)
    assert r.status_code == 204
    r = client.simulate_get(loc)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert client.simulate_patch(loc, body=b"x").status_code == 404


@pytest.mark.parametrize("upload_id", ["..", "x..y/../z", "%2e%2e", "a" * 200, "bad%00id"])
def test_hostile_upload_ids(client, upload_id, storage_snapshot):
    before = storage_snapshot()
    r = client.simulate_patch(f"/v2/r/blobs/uploads/{upload_id}", body=b"x")
    assert r.status_code in (400, 404)
    assert "errors" in r.json
    assert storage_snapshot() == before


def test_upload_continued_by_another_app_instance(make_client):
    """Statelessness: two apps on one storage, PATCH on one and PUT on the other."""
    one, two = make_client(), make_client()
    data = b"0123456789" * 1000
    loc = one.simulate_post("/v2/s/blobs/uploads/").headers["Location"]
    one.simulate_patch(loc, body=data[:4000], headers={"Content-Range": "0-3999"})
    r = two.simulate_patch(loc, body=data[4000:], headers={"Content-Range": f"4000-{len(data) - 1}"})
    assert r.status_code == 202
    r = one.simulate_put(loc, params={"digest": sha256(data)})
    assert r.status_code == 201
    assert two.simulate_get(f"/v2/s/blobs/{sha256(data)}").content == data


# -- mount ---------------------------------------------------------------------------------------


def test_cross_repository_mount(client, pusher):
    d = pusher.blob("src/repo", b"shared layer")
    r = client.simulate_post("/v2/dst/blobs/uploads/", params={"mount": d, "from": "src/repo"})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/dst/blobs/{d}"
    assert client.simulate_get(f"/v2/dst/blobs/{d}").content == b"shared layer"


def test_mount_without_from_finds_blob(client, pusher):
    d = pusher.blob("src", b"anon layer")
    r = client.simulate_post("/v2/dst2/blobs/uploads/", params={"mount": d})
    assert r.status_code == 201


def test_mount_of_unknown_blob_falls_back_to_upload(client):
    r = client.simulate_post("/v2/dst/blobs/uploads/", params={"mount": sha256(b"nope"), "from": "src"})
    assert r.status_code == 202
    assert "/blobs/uploads/" in r.headers["Location"]


# -- pull: blobs ---------------------------------------------------------------------------------


def test_blob_range_requests(client, pusher):
    data = bytes(range(256)) * 4
    d = pusher.blob("r", data)
    r = client.simulate_get(f"/v2/r/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = client.simulate_get(f"/v2/r/blobs/{d}", headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    r = client.simulate_get(f"/v2/r/blobs/{d}", headers={"Range": "bytes=-4"})
    assert r.content == data[-4:]
    r = client.simulate_get(f"/v2/r/blobs/{d}", headers={"Range": "bytes=5000-6000"})
    assert r.status_code == 416 and error_code(r) == "RANGE_INVALID"


def test_blob_in_other_repository_is_unknown(client, pusher):
    d = pusher.blob("one", b"private")
    r = client.simulate_get(f"/v2/two/blobs/{d}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    assert client.simulate_head(f"/v2/two/blobs/{d}").status_code == 404


@pytest.mark.parametrize("digest", ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "a" * 32, "sha256" + "a" * 64,
                                    "sha256:" + "A" * 64, "sha512:" + "a" * 64, "", "..", "sha256:../../x"])
def test_invalid_digests(client, digest):
    r = client.simulate_get(f"/v2/r/blobs/{digest}")
    assert r.status_code in (400, 404), r.text
    assert "errors" in r.json
    if r.status_code == 400:
        assert error_code(r) == "DIGEST_INVALID"


@pytest.mark.parametrize("name", ["UPPER", "a..b", "-lead", "trail-", "a//b", "a/../b", "..", "a/./b",
                                  "x" * 256, "a b", "a%2Fb/..", "\u0430pple"])
def test_invalid_names(client, name, storage_snapshot):
    before = storage_snapshot()
    for r in (client.simulate_post(f"/v2/{name}/blobs/uploads/"),
              client.simulate_get(f"/v2/{name}/tags/list"),
              client.simulate_put(f"/v2/{name}/manifests/latest", body=b"{}")):
        assert r.status_code in (400, 404), (name, r.status_code)
        assert "errors" in r.json
    assert storage_snapshot() == before


# -- manifests -----------------------------------------------------------------------------------


def test_push_and_pull_manifest_by_tag_and_digest(client, pusher):
    d, raw = pusher.image("lib/app", "v1")
    for ref in ("v1", d):
        r = client.simulate_get(f"/v2/lib/app/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == raw  # byte for byte
        assert r.headers["Docker-Content-Digest"] == d
        assert r.headers["Content-Type"] == OCI_MANIFEST
        h = client.simulate_head(f"/v2/lib/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(raw))
        assert h.headers["Docker-Content-Digest"] == d


def test_docker_schema2_and_manifest_list(client, pusher):
    d1, raw1 = pusher.image("d", None, media_type=DOCKER_MANIFEST)
    d2, raw2 = pusher.image("d", None, layers=(b"other",), media_type=DOCKER_MANIFEST)
    index = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": d1, "size": len(raw1), "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": DOCKER_MANIFEST, "digest": d2, "size": len(raw2), "platform": {"architecture": "arm64", "os": "linux"}},
    ]}).encode()
    r = client.simulate_put("/v2/d/manifests/multi", body=index, headers={"Content-Type": DOCKER_LIST})
    assert r.status_code == 201, r.text
    r = client.simulate_get("/v2/d/manifests/multi")
    assert r.headers["Content-Type"] == DOCKER_LIST and r.content == index


def test_index_with_unknown_child_is_refused(client, pusher):
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"missing"), "size": 7}]}).encode()
    r = client.simulate_put("/v2/i/manifests/x", body=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_manifest_with_unknown_blob_is_refused(client, storage_snapshot):
    before = storage_snapshot()
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"c"), "size": 1},
                    "layers": []}).encode()
    r = client.simulate_put("/v2/m/manifests/x", body=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert storage_snapshot() == before


@pytest.mark.parametrize("body,why", [
    (b"not json", "invalid JSON"),
    (b"[1,2]", "not an object"),
    (b'{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}', "duplicate keys"),
    (json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode(), "schema 1"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}).encode(), "no config"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "sha256:x", "size": 1,
                 "mediaType": "a/b"}, "layers": []}).encode(), "bad digest"),
    (json.dumps({"schemaVersion": 2, "mediaType": "text/plain", "manifests": []}).encode(), "bad media type"),
    (b"[" * 100000 + b"]" * 100000, "deep nesting"),
])
def test_invalid_manifests(client, storage_snapshot, body, why):
    before = storage_snapshot()
    r = client.simulate_put("/v2/m/manifests/x", body=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400, (why, r.text)
    assert error_code(r) == "MANIFEST_INVALID", why
    assert storage_snapshot() == before


def test_schema1_content_type_refused_with_reason(client):
    r = client.simulate_put("/v2/m/manifests/x", body=b"{}",
                            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"})
    assert r.status_code == 400 and "schema 1" in r.json["errors"][0]["message"]


def test_content_type_mismatch(client, pusher):
    d, raw = pusher.image("mt", None)
    r = client.simulate_put("/v2/mt/manifests/t", body=raw, headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"


def test_manifest_too_large(client):
    r = client.simulate_put("/v2/m/manifests/x", body=b" " * (4 * 1024 * 1024 + 1),
                            headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and "errors" in r.json


def test_put_by_digest_must_match(client, pusher):
    d, raw = pusher.image("pd", None)
    r = client.simulate_put(f"/v2/pd/manifests/{sha256(b'other')}", body=raw, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


@pytest.mark.parametrize("ref", ["-bad", ".bad", "a" * 129, "bad!tag"])
def test_invalid_tags(client, ref):
    r = client.simulate_get(f"/v2/t/manifests/{ref}")
    assert r.status_code in (400, 404) and "errors" in r.json


def test_unknown_manifest(client):
    r = client.simulate_get("/v2/none/manifests/latest")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = client.simulate_head(f"/v2/none/manifests/{sha256(b'x')}")
    assert r.status_code == 404


# -- content discovery ---------------------------------------------------------------------------


def test_tags_list_pagination(client, pusher):
    for tag in ("b", "a", "d", "c", "e"):
        pusher.image("tags/repo", tag)
    assert client.simulate_get("/v2/tags/repo/tags/list").json == {"name": "tags/repo", "tags": list("abcde")}
    r = client.simulate_get("/v2/tags/repo/tags/list", params={"n": "2"})
    assert r.json["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/tags/repo/tags/list?last=b&n=2>; rel="next"'
    r = client.simulate_get("/v2/tags/repo/tags/list", params={"n": "2", "last": "b"})
    assert r.json["tags"] == ["c", "d"]
    r = client.simulate_get("/v2/tags/repo/tags/list", params={"n": "2", "last": "d"})
    assert r.json["tags"] == ["e"] and "Link" not in r.headers
    assert client.simulate_get("/v2/tags/repo/tags/list", params={"n": "0"}).json["tags"] == []
    assert client.simulate_get("/v2/tags/repo/tags/list", params={"n": "x"}).status_code == 400


def test_tags_of_unknown_repository(client):
    r = client.simulate_get("/v2/nobody/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"


def test_catalog_pagination(client, pusher):
    names = ["a", "a/b", "a-b", "c/d/e", "z"]
    for n in names:
        pusher.blob(n, b"x")
    r = client.simulate_get("/v2/_catalog")
    listed = r.json["repositories"]
    assert sorted(listed) == sorted(names)
    seen, last, pages = [], None, 0
    while pages < 10:
        params = {"n": "2", **({"last": last} if last else {})}
        r = client.simulate_get("/v2/_catalog", params=params)
        seen += r.json["repositories"]
        pages += 1
        if "Link" not in r.headers:
            break
        last = r.json["repositories"][-1]
    assert seen == listed


# -- referrers -----------------------------------------------------------------------------------


def _artifact(pusher: Pusher, name: str, subject_digest: str, subject_raw: bytes, artifact_type: str) -> tuple[str, bytes]:
    empty = pusher.blob(name, b"{}")
    blob = pusher.blob(name, artifact_type.encode())
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                    "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                    "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": len(artifact_type)}],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_raw)},
                    "annotations": {"org.example": artifact_type}}).encode()
    r = pusher.c.simulate_put(f"/v2/{name}/manifests/{sha256(m)}", body=m, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject_digest
    return sha256(m), m


def test_referrers(client, pusher):
    d, raw = pusher.image("ref/img", "v1")
    sig, sig_raw = _artifact(pusher, "ref/img", d, raw, "application/vnd.example.sig")
    sbom, _ = _artifact(pusher, "ref/img", d, raw, "application/vnd.example.sbom")
    r = client.simulate_get(f"/v2/ref/img/referrers/{d}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    listed = {m["digest"]: m for m in r.json["manifests"]}
    assert set(listed) == {sig, sbom}
    assert listed[sig]["artifactType"] == "application/vnd.example.sig"
    assert listed[sig]["size"] == len(sig_raw)
    assert listed[sig]["annotations"] == {"org.example": "application/vnd.example.sig"}
    r = client.simulate_get(f"/v2/ref/img/referrers/{d}", params={"artifactType": "application/vnd.example.sbom"})
    assert [m["digest"] for m in r.json["manifests"]] == [sbom]
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    # Deleting a referrer removes it from the list.
    assert client.simulate_delete(f"/v2/ref/img/manifests/{sig}").status_code == 202
    assert [m["digest"] for m in client.simulate_get(f"/v2/ref/img/referrers/{d}").json["manifests"]] == [sbom]


def test_referrers_of_unknown_subject_is_empty(client):
    r = client.simulate_get(f"/v2/any/referrers/{sha256(b'nothing')}")
    assert r.status_code == 200 and r.json["manifests"] == []
    assert client.simulate_get("/v2/any/referrers/sha256:bad").status_code == 400


def test_subject_need_not_exist(client, pusher):
    ghost = sha256(b"ghost")
    d, _ = _artifact(pusher, "ghosts", ghost, b"ghost", "application/vnd.example.x")
    assert [m["digest"] for m in client.simulate_get(f"/v2/ghosts/referrers/{ghost}").json["manifests"]] == [d]


# -- content management --------------------------------------------------------------------------


def test_delete_tag_and_manifest(client, pusher):
    d, raw = pusher.image("del", "one")
    client.simulate_put("/v2/del/manifests/two", body=raw, headers={"Content-Type": OCI_MANIFEST})
    assert client.simulate_delete("/v2/del/manifests/one").status_code == 202
    assert client.simulate_get("/v2/del/manifests/one").status_code == 404
    assert client.simulate_get("/v2/del/manifests/two").status_code == 200
    assert client.simulate_delete(f"/v2/del/manifests/{d}").status_code == 202
    assert client.simulate_get(f"/v2/del/manifests/{d}").status_code == 404
    assert client.simulate_get("/v2/del/manifests/two").status_code == 404  # tags of it went too
    assert client.simulate_delete(f"/v2/del/manifests/{d}").status_code == 404


def test_delete_blob(client, pusher):
    d = pusher.blob("db", b"doomed")
    assert client.simulate_delete(f"/v2/db/blobs/{d}").status_code == 202
    assert client.simulate_get(f"/v2/db/blobs/{d}").status_code == 404
    assert client.simulate_delete(f"/v2/db/blobs/{d}").status_code == 404


def test_delete_disabled(make_client):
    client = make_client(delete=False)
    d = Pusher(client).blob("nd", b"keep")
    r = client.simulate_delete(f"/v2/nd/blobs/{d}")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
    assert client.simulate_delete("/v2/nd/manifests/latest").status_code == 405
    assert client.simulate_get(f"/v2/nd/blobs/{d}").status_code == 200


# -- configuration the API honours ---------------------------------------------------------------


def test_readonly_mode_refuses_writes(driver):
    import falcon.testing

    from registry.app import create_app
    from registry.plugins import create_plugin_manager

    config = {"storage": {driver.name: {}, "maintenance": {"readonly": {"enabled": True}}}}
    client = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))
    r = client.simulate_post("/v2/ro/blobs/uploads/")
    assert r.status_code == 405 and error_code(r) == "UNSUPPORTED"
    assert "read-only" in r.json["errors"][0]["message"]
    assert client.simulate_get("/v2/ro/tags/list").status_code == 404


def test_configured_headers_on_every_response(driver):
    import falcon.testing

    from registry.app import create_app
    from registry.plugins import create_plugin_manager

    config = {"storage": {driver.name: {}}, "http": {"headers": {"X-Content-Type-Options": ["nosniff"]}}}
    client = falcon.testing.TestClient(create_app(config, create_plugin_manager(), driver=driver))
    for path in ("/v2/", "/v2/none/tags/list", "/nowhere"):
        r = client.simulate_get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_locations_carry_the_mount_prefix(client):
    r = client.simulate_post("/v2/p/blobs/uploads/", extras={"SCRIPT_NAME": "/registry"})
    assert r.headers["Location"].startswith("/registry/v2/p/blobs/uploads/")


def test_referrers_include_the_tag_schema_index(client, pusher):
    """Artifacts attached through a registry without the API live in a sha256-<hex> tag index."""
    d, raw = pusher.image("fallback/img", "v1")
    sig, sig_raw = _artifact(pusher, "fallback/other", d, raw, "application/vnd.example.sig")  # elsewhere
    art = json.loads(sig_raw)
    art.pop("subject")
    art_raw = json.dumps(art).encode()
    for blob in (b"{}", b"application/vnd.example.sig"):
        pusher.blob("fallback/img", blob)
    assert client.simulate_put(f"/v2/fallback/img/manifests/{sha256(art_raw)}", body=art_raw,
                               headers={"Content-Type": OCI_MANIFEST}).status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(art_raw), "size": len(art_raw),
         "artifactType": "application/vnd.example.sig"}]}).encode()
    tag = d.replace(":", "-")
    assert client.simulate_put(f"/v2/fallback/img/manifests/{tag}", body=index,
                               headers={"Content-Type": OCI_INDEX}).status_code == 201
    listed = client.simulate_get(f"/v2/fallback/img/referrers/{d}").json["manifests"]
    assert [m["digest"] for m in listed] == [sha256(art_raw)]
    assert listed[0]["artifactType"] == "application/vnd.example.sig"


def test_put_with_a_malformed_content_range_is_400_like_a_patch(client):
    loc = client.simulate_post("/v2/cr/repo/blobs/uploads/").headers["Location"]
    data = b"body"
    d = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
    for method in ("simulate_patch", "simulate_put"):
        r = getattr(client, method)(loc, params={"digest": d}, body=data, headers={"Content-Range": "^Y>"})
        assert r.status_code == 400 and r.json["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", (method, r.text)
