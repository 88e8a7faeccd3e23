"""Review findings: each test pins a behaviour that was wrong before the fix beside it."""

from __future__ import annotations

import json

from registry import hookimpl
from tests.conftest import Pusher, sha256


class DenyPullOf:
    """A plugin that denies every access to one repository (the hook form of access control)."""

    def __init__(self, repo: str) -> None:
        self.repo = repo

    @hookimpl
    def registry_authorize(self, request, identity, access):
        if any(a.name == self.repo for a in access):
            return False
        return None


def test_mount_without_from_respects_authorize_hook_veto(make_client):
    client = make_client(plugins=[DenyPullOf("secret")])
    # Push into "secret" with the plugin off, as its owner would.
    owner = make_client()
    d = Pusher(owner).blob("secret", b"private layer")
    assert client.simulate_get(f"/v2/secret/blobs/{d}").status_code == 403
    r = client.simulate_post("/v2/public/blobs/uploads/", params={"mount": d})
    assert r.status_code == 202, r.headers
    assert client.simulate_get(f"/v2/public/blobs/{d}").status_code == 404


def test_head_blob_has_content_length(client, pusher):
    d = pusher.blob("a/b", b"12345")
    r = client.simulate_head(f"/v2/a/b/blobs/{d}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "5"
    assert r.headers["Docker-Content-Digest"] == d


def test_head_manifest_has_content_length(client, pusher):
    d, raw = pusher.image("a/b")
    r = client.simulate_head("/v2/a/b/manifests/latest")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(raw))
    assert r.headers["Docker-Content-Digest"] == d


def test_unsatisfiable_range_answers_416_with_content_range_star_size(client, pusher):
    d = pusher.blob("a/b", b"12345")
    r = client.simulate_get(f"/v2/a/b/blobs/{d}", headers={"Range": "bytes=10-20"})
    assert r.status_code == 416
    assert r.headers.get("Content-Range") == "bytes */5"


def test_tags_list_is_empty_after_every_tag_is_deleted(client, pusher):
    pusher.image("a/b", tag="t1")
    assert client.simulate_delete("/v2/a/b/manifests/t1").status_code == 202
    r = client.simulate_get("/v2/a/b/tags/list")
    assert r.status_code == 200, r.text
    assert r.json == {"name": "a/b", "tags": []}


def test_manifest_pushed_by_digest_only_is_pullable_and_tag_list_is_empty(client, pusher):
    d, raw = pusher.image("a/b", tag=None)
    r = client.simulate_get(f"/v2/a/b/manifests/{d}")
    assert r.status_code == 200 and r.content == raw
    r = client.simulate_get("/v2/a/b/tags/list")
    assert r.status_code == 200, r.text
    assert r.json["tags"] == []


def test_empty_patch_and_patch_without_content_range_continue_the_upload(client):
    r = client.simulate_post("/v2/a/b/blobs/uploads/")
    loc = r.headers["Location"]
    r = client.simulate_patch(loc, body=b"", headers={"Content-Length": "0"})
    assert r.status_code == 202, r.text
    r = client.simulate_patch(r.headers["Location"], body=b"abc",
                              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-2"
    r = client.simulate_patch(r.headers["Location"], body=b"def", headers={"Content-Range": "3-5"})
    assert r.status_code == 202 and r.headers["Range"] == "0-5"
    r = client.simulate_put(r.headers["Location"], params={"digest": sha256(b"abcdef")})
    assert r.status_code == 201, r.text


def test_referrer_push_answers_oci_subject_and_is_listed_until_deleted(client, pusher):
    d, raw = pusher.image("a/b")
    empty = pusher.blob("a/b", b"{}")
    art = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "artifactType": "application/x-sig",
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
           "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
           "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(raw)}}
    body = json.dumps(art).encode()
    r = client.simulate_put(f"/v2/a/b/manifests/{sha256(body)}", body=body,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == d
    r = client.simulate_get(f"/v2/a/b/referrers/{d}")
    assert r.status_code == 200
    assert [m["digest"] for m in r.json["manifests"]] == [sha256(body)]
    r = client.simulate_delete(f"/v2/a/b/manifests/{sha256(body)}")
    assert r.status_code == 202
    assert client.simulate_get(f"/v2/a/b/referrers/{d}").json["manifests"] == []


# -- upload races ---------------------------------------------------------------------------------
# Each test starts a second request on the same upload from inside a step of the first, on another
# thread (two clients). Before the fix both ended with bytes stored under a digest they do not have:
# anyone holding an upload URL could poison the global blob store. The driver now lets one appending
# writer in at a time and its move waits for it, so the second request waits or finds no upload.

def _start(client, name="race/repo"):
    r = client.simulate_post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    return r.headers["Location"]


def _in_thread(fn):
    import threading

    results = []
    t = threading.Thread(target=lambda: results.append(fn()), daemon=True)
    t.start()
    return t, results


def test_patch_racing_the_final_put_cannot_change_the_stored_blob(client, monkeypatch):
    from registry.storage.uploads import Uploads

    loc = _start(client)
    assert client.simulate_patch(loc, body=b"good").status_code == 202
    real = Uploads._check
    racer = {}

    def check_then_concurrent_patch(self, *args):
        out = real(self, *args)
        if not racer:
            racer["t"], racer["r"] = _in_thread(lambda: client.simulate_patch(loc, body=b"EVIL"))
            racer["t"].join(5)  # between the check and the move into place
        return out

    monkeypatch.setattr(Uploads, "_check", check_then_concurrent_patch)
    d = sha256(b"good")
    assert client.simulate_put(loc, params={"digest": d}).status_code == 201
    racer["t"].join(10)
    if Uploads(client.app.registry_context.store).rename:
        assert racer["r"][0].status_code == 404  # the upload was already set aside, out of reach
    else:
        # An object store: the committed data is immutable; the racer's bytes went to a new
        # unfinished upload of it, which finishing the upload discarded.
        assert racer["r"][0].status_code in (202, 404)
    r = client.simulate_get(f"/v2/race/repo/blobs/{d}")
    assert r.status_code == 200 and r.content == b"good"


def test_two_concurrent_patches_cannot_store_bytes_under_a_wrong_digest(client, monkeypatch):
    from registry.storage.uploads import Uploads

    loc = _start(client)
    real = Uploads._load_hasher
    racer = {}

    def load_then_concurrent_patch(self, *args):
        h = real(self, *args)
        if not racer:
            racer["t"], racer["r"] = _in_thread(lambda: client.simulate_patch(loc, body=b"EVIL"))
            racer["t"].join(0.5)  # it must wait for this PATCH's writer
            assert not racer["r"], "a second appending writer got in"
        return h

    monkeypatch.setattr(Uploads, "_load_hasher", load_then_concurrent_patch)
    assert client.simulate_patch(loc, body=b"good").status_code == 202
    racer["t"].join(10)
    assert racer["r"][0].status_code == 202
    # Both chunks are in, in the order the writers got in; the digest must cover exactly those bytes.
    r = client.simulate_put(loc, params={"digest": sha256(b"good")})
    assert r.status_code == 400 and r.json["errors"][0]["code"] == "DIGEST_INVALID"
    loc2 = _start(client)
    assert client.simulate_patch(loc2, body=b"good").status_code == 202
    assert client.simulate_patch(loc2, body=b"EVIL").status_code == 202
    assert client.simulate_put(loc2, params={"digest": sha256(b"goodEVIL")}).status_code == 201
    assert client.simulate_get(f"/v2/race/repo/blobs/{sha256(b'goodEVIL')}").content == b"goodEVIL"


def test_referrers_read_the_sha512_fallback_tag_with_the_spec_truncation(client, pusher):
    """The referrers tag schema is ``<alg>-<ref>`` with ``<ref>`` limited to 64 characters."""
    import hashlib

    _, raw = pusher.image("a/b", tag=None)
    subject = "sha512:" + hashlib.sha512(raw).hexdigest()
    r = client.simulate_put(f"/v2/a/b/manifests/{subject}", body=raw,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    # An artifact a client without the referrers API would record in the tag index.
    _, art_raw = pusher.image("a/b", tag=None, layers=(b"sig",), extra={"artifactType": "application/x-sig"})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": sha256(art_raw), "size": len(art_raw), "artifactType": "application/x-sig"}]}
    tag = "sha512-" + subject.split(":")[1][:64]
    r = client.simulate_put(f"/v2/a/b/manifests/{tag}", body=json.dumps(index).encode(),
                            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    r = client.simulate_get(f"/v2/a/b/referrers/{subject}")
    assert [m["digest"] for m in r.json["manifests"]] == [sha256(art_raw)]
