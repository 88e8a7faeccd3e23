"""The hostile input corpus: every request here must get a 4xx with the OCI error body and leave
storage exactly as it was.

Path traversal in names, tags, digests and upload ids (``..``, ``%2F``, ``%2e%2e``, ``%00``, newlines,
backslashes, absolute paths, Unicode look-alikes), requests that reach into another repository,
oversized headers and bodies, hostile manifests (self-references, deep nesting, huge ``layers``,
invalid JSON, duplicate keys, wrong media types) — first in-process over every core storage driver,
then a subset over real HTTP against a ``registry serve`` process, with raw sockets for what an HTTP
client library would normalize away, and slow clients against a small ``channel_timeout``.

"Storage unchanged" is checked twice: the driver's own view (every file and its content) and, for the
filesystem driver and the real server, every file under the test's directory, the storage root's
parent included (so a write that escaped the root would show). Empty directories are not content:
a push that failed can leave one behind (as in Distribution), and it changes no listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Pusher, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ZERO = "sha256:" + "0" * 64
MAX_MANIFEST = 4 * 1024 * 1024


# -- what every hostile request must get --------------------------------------------------------------


def assert_oci_error(status: int, headers, body: bytes, method: str, allowed_status, allowed_codes, what: str) -> None:
    assert 400 <= status < 500, f"{what}: status {status} {body[:300]!r}"
    if allowed_status:
        assert status in allowed_status, f"{what}: status {status} not in {sorted(allowed_status)}: {body[:300]!r}"
    if method == "HEAD":
        assert not body
        return
    content_type = headers.get("content-type", "")
    assert content_type.split(";")[0] == "application/json", f"{what}: Content-Type {content_type!r}"
    doc = json.loads(body)
    assert set(doc) == {"errors"} and doc["errors"], f"{what}: {doc}"
    for entry in doc["errors"]:
        assert isinstance(entry["code"], str) and isinstance(entry["message"], str), f"{what}: {entry}"
        assert set(entry) <= {"code", "message", "detail"}, f"{what}: {entry}"
    codes = {e["code"] for e in doc["errors"]}
    if allowed_codes:
        assert codes <= set(allowed_codes), f"{what}: codes {codes} not in {sorted(allowed_codes)}"


def tree_snapshot(top: Path) -> dict[str, str]:
    """Every file under ``top`` and a digest of its content (a symlink shows as its target)."""
    files: dict[str, str] = {}
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            if p.is_symlink():
                files[rel] = "symlink:" + os.readlink(p)
            else:
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


# -- the in-process corpus ------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What the corpus refers to: an image in lib/app, a blob only other/repo has, an open upload."""

    image: str
    manifest: bytes
    config: str
    layer: str
    other_blob: str
    other_manifest: str
    upload: str


@pytest.fixture
def seeded(client) -> Seeded:
    p = Pusher(client)
    image, manifest = p.image("lib/app", "v1", layers=(b"layer-one",))
    doc = json.loads(manifest)
    other_blob = p.blob("other/repo", b"only in other/repo")
    other_manifest, _ = p.image("other/repo", "x", layers=(b"other layer",))
    r = client.simulate_post("/v2/lib/app/blobs/uploads/")
    assert r.status_code == 202
    upload = r.headers["Docker-Upload-UUID"]
    r = client.simulate_patch(f"/v2/lib/app/blobs/uploads/{upload}", body=b"partial")
    assert r.status_code == 202
    return Seeded(image, manifest, doc["config"]["digest"], doc["layers"][0]["digest"], other_blob, other_manifest,
                  upload)


def stat_snapshot(top: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``top`` with its size, inode and modification time: cheap enough per request."""
    files = {}
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            files[os.path.relpath(os.path.join(dirpath, name), top)] = (st.st_size, st.st_ino, st.st_mtime_ns)
    return files


@pytest.fixture
def unchanged(client, driver, storage_snapshot):
    """A function that sends a request, checks the answer is a 4xx with the OCI error body and that
    storage did not change: after each request the driver's files (in memory) or every file's size,
    inode and mtime on disk (filesystem), and the catalog; at the end every file's content."""
    disk = Path(driver.rootdirectory).parent if hasattr(driver, "rootdirectory") else None
    first: list = []
    count = [0]

    def full():
        return storage_snapshot(), (tree_snapshot(disk) if disk else None)

    def state():
        return (stat_snapshot(disk) if disk else storage_snapshot()), client.simulate_get("/v2/_catalog").text

    def run(method, path, *, params=None, headers=None, body=None, status=(), codes=(), what=""):
        if not first:
            first.append(full())
        before = state()
        target, _, query = path.partition("?")
        r = client.simulate_request(method, target, query_string=query or None, params=params, headers=headers,
                                    body=body)
        count[0] += 1
        what = what or f"{method} {path[:120]}"
        assert_oci_error(r.status_code, r.headers, r.content, method, set(status), set(codes), what)
        after = state()
        assert after[0] == before[0], f"{what}: storage changed: {sorted(set(after[0]) ^ set(before[0]))[:5]}"
        assert after[1] == before[1], f"{what}: the catalog changed"
        return r

    run.count = count
    yield run
    if first:
        assert full() == first[0], "storage content changed during the test"
    CORPUS[0] += count[0]


#: Requests the in-process corpus sent in this session (reported by test_corpus_size).
CORPUS = [0]


def each(cases, check) -> None:
    """Run ``check`` on every case and report every failure, not just the first."""
    failures = []
    for case in cases:
        try:
            check(case)
        except AssertionError as exc:
            failures.append(f"{case!r:.60}: {exc}".splitlines()[0])
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


#: Repository names as sent on the wire (percent-encoded where a client would encode).
HOSTILE_NAMES = [
    "..", "../etc", "lib/../../etc", "lib/./app", ".", "./lib", "lib/..", "lib/app/..",
    "%2e%2e", "%2E%2E/etc", "lib%2F..%2F..%2Fetc", "lib%2f%2e%2e%2fapp", "%252e%252e",
    "lib%00", "%00", "lib%00app", "lib%0a", "lib%0d%0aapp", "lib%09app", "lib%20app", "%20lib",
    "lib\\..\\app", "lib%5c..%5capp", "..%5c..%5cetc", "/etc/passwd", "%2Fetc%2Fpasswd",
    "LIB/APP", "Lib", "%EF%BD%8C%EF%BD%89%EF%BD%82",  # fullwidth "ｌｉｂ"
    "lib%E2%80%A4%E2%80%A4app",  # one-dot leaders "․․"
    "lib%E2%88%95app", "lib%EF%BC%8Fapp",  # division slash, fullwidth solidus
    "%D0%B0pp",  # Cyrillic "а"
    "%C0%AE%C0%AE",  # overlong UTF-8 "..", decoded as replacement characters
    "a" * 256, "lib//app", "lib/", "lib/app/", "lib;app", "lib:app", "~root", "lib..app", "lib.-app",
    "-lib", "lib-", "_lib", "lib_", "lib___app", "lib/_manifests", "lib/app/_layers",
]

#: (method, path template, body): every endpoint that takes a name. {name} is replaced.
NAME_ENDPOINTS = [
    ("GET", "/v2/{name}/tags/list", None),
    ("GET", "/v2/{name}/manifests/v1", None),
    ("HEAD", "/v2/{name}/manifests/v1", None),
    ("PUT", "/v2/{name}/manifests/v1", "manifest"),
    ("DELETE", "/v2/{name}/manifests/v1", None),
    ("GET", "/v2/{name}/blobs/{layer}", None),
    ("HEAD", "/v2/{name}/blobs/{layer}", None),
    ("DELETE", "/v2/{name}/blobs/{layer}", None),
    ("POST", "/v2/{name}/blobs/uploads/", None),
    ("POST", "/v2/{name}/blobs/uploads/?digest={empty}", b"{}"),
    ("POST", "/v2/{name}/blobs/uploads/?mount={layer}&from=lib/app", None),
    ("GET", "/v2/{name}/blobs/uploads/{upload}", None),
    ("PATCH", "/v2/{name}/blobs/uploads/{upload}", b"more"),
    ("PUT", "/v2/{name}/blobs/uploads/{upload}?digest={empty}", None),
    ("DELETE", "/v2/{name}/blobs/uploads/{upload}", None),
    ("GET", "/v2/{name}/referrers/{image}", None),
]


def fill(template: str, s: Seeded, **extra: str) -> str:
    return template.format(layer=s.layer, upload=s.upload, image=s.image, empty=sha256(b"{}"), **extra)


def test_hostile_names(unchanged, seeded):
    """A name outside the grammar is refused before any storage access, on every endpoint."""

    def check(name):
        for method, template, body in NAME_ENDPOINTS:
            if body == "manifest":
                body = seeded.manifest
            unchanged(method, fill(template, seeded, name=name), body=body,
                      headers={"Content-Type": OCI_MANIFEST} if method == "PUT" else None,
                      status={400, 404}, codes={"NAME_INVALID", "NOT_FOUND"})

    each(HOSTILE_NAMES, check)


#: Manifest references: tags and digests as sent on the wire.
HOSTILE_REFERENCES = [
    "..", "...", ".", "../v1", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "v1%2F..%2F..", "v1%00", "v1%0a",
    "v1%0d%0a", "v1%09", ".hidden", "-v1", "v1\\..", "v1%5c", "%EF%BD%961", "a" * 129, "v1%20", "%20v1",
    "sha256:..%2F..%2Fetc", "sha256:" + "A" * 64, "sha256:" + "0" * 63, "sha256:" + "0" * 65,
    "md5:" + "0" * 32, "sha384:" + "0" * 96, ZERO + "%00", ZERO + "%0a", ZERO + ".", "sha256:%2e%2e",
    ":", "sha256:", "", "sha512:" + "0" * 64, "SHA256:" + "0" * 64, "sha256+b64:AAAA", "sha256:" + "ｆ" * 64,
]
REFERENCE_CODES = {"DIGEST_INVALID", "MANIFEST_INVALID", "NOT_FOUND"}
#: GET and HEAD of a reference that is neither a tag nor a digest: no such manifest (Distribution's answer,
#: which released OCI conformance suites expect), or no such route when a decoded "/" leaves the route.
LOOKUP_CODES = {"MANIFEST_UNKNOWN", "NOT_FOUND"}


def test_hostile_references(unchanged, seeded):
    def check(reference):
        path = f"/v2/lib/app/manifests/{quote(reference, safe='%:/')}"
        for method in ("GET", "HEAD"):
            unchanged(method, path, status={404}, codes=LOOKUP_CODES)
        unchanged("DELETE", path, status={400, 404}, codes=REFERENCE_CODES)
        unchanged("PUT", path, body=seeded.manifest, headers={"Content-Type": OCI_MANIFEST}, status={400, 404},
                  codes=REFERENCE_CODES)

    each(HOSTILE_REFERENCES, check)


HOSTILE_DIGESTS = [
    "sha256:..%2F..%2F..%2Fetc%2Fpasswd", ZERO + "%2F..", "..", "%2e%2e", "sha256:%2e%2e", "sha256:" + "A" * 64,
    "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha384:" + "0" * 96, "md5:" + "0" * 32, ZERO + "%00",
    ZERO + "%0a", ZERO + "%5c", ZERO + ".", "sha256", "sha256:", ":", "SHA256:" + "0" * 64,
    "sha256:-" + "0" * 63, "sha256:" + "%EF%BD%86" * 64, "sha256:" + "0" * 64 + "%20", "sha256::" + "0" * 64,
]


def test_hostile_digests(unchanged, seeded):
    """In the path (blobs, referrers) and in the query (?digest=, ?mount=, finishing an upload)."""
    codes = {"DIGEST_INVALID", "NOT_FOUND"}

    def check(digest):
        for method in ("GET", "HEAD", "DELETE"):
            unchanged(method, f"/v2/lib/app/blobs/{digest}", status={400, 404}, codes=codes)
        unchanged("GET", f"/v2/lib/app/referrers/{digest}", status={400, 404}, codes=codes)
        for query in (f"digest={digest}", f"mount={digest}&from=lib/app", f"mount={digest}"):
            unchanged("POST", f"/v2/other/repo/blobs/uploads/?{query}", body=b"{}", status={400}, codes=codes)
        # Finishing the open upload with a bad digest must not cancel it.
        unchanged("PUT", f"/v2/lib/app/blobs/uploads/{seeded.upload}?digest={digest}", body=b"x", status={400},
                  codes={"DIGEST_INVALID", "BLOB_UPLOAD_INVALID"})

    each(HOSTILE_DIGESTS, check)


HOSTILE_UPLOAD_IDS = [
    "..", ".", "...", "..%2F..%2F_layers", "%2e%2e", "a%00", "a%0a", "a\\b", "a%5c..", "a" * 129, "%EF%BD%81",
    "{upload}%00", "{upload}%0a", "{upload}.", "{upload}%2F..", "%20{upload}", "{upload}%20", "{upload_upper}",
    "..%2F..%2F..%2Fother%2Frepo%2F_uploads%2F{upload}",
]


def test_hostile_upload_ids(unchanged, seeded):
    codes = {"BLOB_UPLOAD_UNKNOWN", "NOT_FOUND"}

    def check(upload_id):
        upload_id = upload_id.format(upload=seeded.upload, upload_upper=seeded.upload.upper())
        path = f"/v2/lib/app/blobs/uploads/{upload_id}"
        for method, query, body in (("GET", "", None), ("PATCH", "", b"x"),
                                    ("PUT", f"?digest={sha256(b'partial')}", b""), ("DELETE", "", None)):
            unchanged(method, path + query, body=body, status={404}, codes=codes)

    each(HOSTILE_UPLOAD_IDS, check)


def test_no_request_reaches_into_another_repository(unchanged, seeded):
    """Blobs, manifests and uploads of one repository are invisible through another's name."""
    known = {"BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UPLOAD_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"}
    for method in ("GET", "HEAD", "DELETE"):
        unchanged(method, f"/v2/lib/app/blobs/{seeded.other_blob}", status={404}, codes=known)
        unchanged(method, f"/v2/other/repo/blobs/{seeded.layer}", status={404}, codes=known)
        unchanged(method, f"/v2/lib/app/manifests/{seeded.other_manifest}", status={404}, codes=known)
        unchanged(method, "/v2/other/repo/manifests/v1", status={404}, codes=known)
    for method, query, body in (("GET", "", None), ("PATCH", "", b"x"), ("PUT", f"?digest={sha256(b'partial')}", b""),
                                ("DELETE", "", None)):
        unchanged(method, f"/v2/other/repo/blobs/uploads/{seeded.upload}{query}", body=body, status={404},
                  codes=known)
    # A manifest in lib/app whose layer is only in other/repo: not pushable there.
    doc = json.loads(seeded.manifest)
    doc["layers"][0]["digest"] = seeded.other_blob
    unchanged("PUT", "/v2/lib/app/manifests/borrowed", body=json.dumps(doc).encode(),
              headers={"Content-Type": OCI_MANIFEST}, status={400}, codes={"MANIFEST_BLOB_UNKNOWN"})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": seeded.other_manifest, "size": 10}]}
    unchanged("PUT", "/v2/lib/app/manifests/borrowed", body=json.dumps(index).encode(),
              headers={"Content-Type": OCI_INDEX}, status={400}, codes={"MANIFEST_BLOB_UNKNOWN"})


def test_top_level_traversal(unchanged):
    for path in ("/v2/../etc/passwd", "/v2/%2e%2e/%2e%2e/etc/passwd", "/v2/..%2F..%2Fetc%2Fpasswd", "/../../etc",
                 "/v2/_catalog/../lib/app/tags/list", "/v2/_catalog%2F..%2Flib", "/%2e%2e/v2/", "/v2%00/",
                 "/v2/lib/app/tags/list/..", "/v2/lib/app/tags/list%00", "/v2/lib/app/blobs/uploads/a/b"):
        unchanged("GET", path, status={400, 404}, codes={"NOT_FOUND", "NAME_INVALID"})


# -- oversized ------------------------------------------------------------------------------------------


def test_oversized_headers_and_parameters(unchanged, seeded):
    huge = "9" * 65536
    unchanged("GET", f"/v2/lib/app/blobs/{seeded.layer}", headers={"Range": f"bytes={huge}-"}, status={416},
              codes={"RANGE_INVALID"})
    unchanged("PATCH", f"/v2/lib/app/blobs/uploads/{seeded.upload}", headers={"Content-Range": f"7-{huge}"},
              body=b"x", status={400}, codes={"BLOB_UPLOAD_INVALID"})
    # Malformed (over 19 digits) on a PUT as on a PATCH: 400, as the OpenAPI description's pattern says.
    unchanged("PUT", f"/v2/lib/app/blobs/uploads/{seeded.upload}?digest={ZERO}", headers={"Content-Range": f"{huge}-1"},
              body=b"x", status={400}, codes={"BLOB_UPLOAD_INVALID"})
    unchanged("PUT", "/v2/lib/app/manifests/big", headers={"Content-Type": "application/" + "x" * 65536},
              body=seeded.manifest, status={400}, codes={"MANIFEST_INVALID"})
    unchanged("GET", "/v2/" + "a" * 10000 + "/tags/list", status={400}, codes={"NAME_INVALID"})
    unchanged("GET", "/v2/" + "/".join(["a"] * 5000) + "/tags/list", status={400}, codes={"NAME_INVALID"})
    unchanged("GET", "/v2/lib/app/manifests/" + "v" * 10000, status={404}, codes={"MANIFEST_UNKNOWN"})
    unchanged("PUT", "/v2/lib/app/manifests/" + "v" * 10000, body=seeded.manifest,
              headers={"Content-Type": OCI_MANIFEST}, status={400}, codes={"MANIFEST_INVALID"})
    unchanged("POST", "/v2/lib/app/blobs/uploads/", params={"digest": "sha256:" + "0" * 1_000_000}, body=b"{}",
              status={400}, codes={"DIGEST_INVALID"})
    unchanged("GET", "/v2/lib/app/tags/list", params={"n": "9" * 5000 + "x"}, status={400}, codes={"UNSUPPORTED"})
    unchanged("GET", "/v2/_catalog", params={"n": "²"}, status={400}, codes={"UNSUPPORTED"})


def test_oversized_manifest_is_413(unchanged):
    filler = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "annotations": {"x": "y" * MAX_MANIFEST}}
    unchanged("PUT", "/v2/lib/app/manifests/huge", body=json.dumps(filler).encode(), headers={"Content-Type": OCI_INDEX},
              status={413}, codes={"SIZE_INVALID"})


# -- hostile manifests --------------------------------------------------------------------------------------


def descriptor(d: str, media_type: str = "application/vnd.oci.image.layer.v1.tar", size: int = 1) -> dict:
    return {"mediaType": media_type, "digest": d, "size": size}


def manifest_cases(s: Seeded) -> list[tuple[str, bytes, str | None, set[str]]]:
    """(id, body, Content-Type, acceptable codes)."""
    good = json.loads(s.manifest)
    cfg = good["config"]
    layer = good["layers"][0]
    bad_json = {"MANIFEST_INVALID"}
    cases: list[tuple[str, bytes, str | None, set[str]]] = []

    def add(case_id, doc_or_bytes, content_type=OCI_MANIFEST, codes=None):
        body = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
        cases.append((case_id, body, content_type, codes or {"MANIFEST_INVALID"}))

    # Self-reference and cycles: content addressing means an index can only name manifests that exist
    # before it, so no cycle can be stored; every attempt is refused.
    fake_self = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(ZERO, OCI_INDEX)]}
    add("index-lists-unknown-self", fake_self, OCI_INDEX, {"MANIFEST_BLOB_UNKNOWN"})
    fixed = None
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    for _ in range(3):  # iterate towards a fixed point that does not exist
        fixed = sha256(json.dumps(doc).encode())
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(fixed, OCI_INDEX)]}
    add("index-lists-its-previous-self", doc, OCI_INDEX, {"MANIFEST_BLOB_UNKNOWN"})
    add("index-lists-a-blob-as-manifest", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                           "manifests": [descriptor(s.layer, OCI_MANIFEST)]},
        OCI_INDEX, {"MANIFEST_BLOB_UNKNOWN"})
    add("subject-and-manifests-unknown", {**fake_self, "subject": descriptor(ZERO, OCI_INDEX)}, OCI_INDEX,
        {"MANIFEST_BLOB_UNKNOWN"})
    # Deep nesting.
    add("deep-json-arrays", b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":'
        + b"[" * 100_000 + b"]" * 100_000 + b"}", OCI_INDEX)
    add("deep-json-objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, OCI_INDEX)
    add("deep-nested-index-descriptor", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**descriptor(ZERO, OCI_INDEX), "annotations": {"a": json.loads("[" * 500 + "]" * 500)}}]}, OCI_INDEX)
    # Huge arrays.
    add("10001-layers", {**good, "layers": [layer] * 10_001})
    add("10000-unknown-layers", {**good, "layers": [descriptor(sha256(str(i).encode())) for i in range(10_000)]},
        codes={"MANIFEST_BLOB_UNKNOWN"})
    add("10001-manifests", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(s.image, OCI_MANIFEST)]
                            * 10_001}, OCI_INDEX)
    # Invalid JSON.
    for case_id, raw in [("empty", b""), ("truncated", s.manifest[:-5]), ("trailing-garbage", s.manifest + b"x"),
                         ("bom", b"\xef\xbb\xbf" + s.manifest), ("utf16", s.manifest.decode().encode("utf-16")),
                         ("invalid-utf8", s.manifest.replace(b'"schemaVersion"', b'"schema\xffVersion"')),
                         ("null", b"null"), ("array", b"[]"), ("string", b'"manifest"'), ("number", b"2"),
                         ("nan-size", s.manifest.replace(b'"size": 9', b'"size": NaN', 1)),
                         ("single-quotes", s.manifest.replace(b'"', b"'")),
                         ("raw-control-char", s.manifest.replace(b'"schemaVersion"', b'"schema\x01Version"')),
                         ("comment", b"// comment\n" + s.manifest), ("nul", s.manifest + b"\x00")]:
        add(f"json-{case_id}", raw, codes=bad_json)
    add("size-infinity", {**good, "config": {**cfg, "size": 1e400}} if False else
        json.dumps({**good, "config": {**cfg, "size": 1}}).replace('"size": 1', '"size": Infinity', 1).encode())
    add("size-huge-float", json.dumps({**good, "config": {**cfg, "size": 1}}).replace('"size": 1', '"size": 1e999',
                                                                                       1).encode())
    add("size-negative", {**good, "config": {**cfg, "size": -1}})
    # What Go clients cannot unmarshal: a registry must not store a manifest nobody can pull.
    add("size-fraction", json.dumps(good).replace(f'"size": {cfg["size"]}', f'"size": {cfg["size"]}.0', 1).encode())
    add("schema-version-fraction", json.dumps(good).replace('"schemaVersion": 2', '"schemaVersion": 2.0', 1).encode())
    add("schema-version-exponent", json.dumps(good).replace('"schemaVersion": 2', '"schemaVersion": 2e0', 1).encode())
    add("size-over-int64", {**good, "config": {**cfg, "size": 2**63}})
    add("size-huge-integer", json.dumps(good).replace(f'"size": {cfg["size"]}', '"size": ' + "9" * 5000, 1).encode())
    add("nan-in-extension-field", json.dumps(good)[:-1].encode() + b', "x-extension": NaN}')
    add("infinity-in-extension-field", json.dumps(good)[:-1].encode() + b', "x-extension": -Infinity}')
    add("utf32", s.manifest.decode().encode("utf-32"))
    add("bom-utf16", b"\xff\xfe" + s.manifest.decode().encode("utf-16-le"))
    add("size-string", {**good, "config": {**cfg, "size": "9"}})
    # Duplicate keys: a parser that kept the first and one that kept the last would disagree.
    raw = s.manifest.decode()
    add("duplicate-top-level-key", raw.replace('"schemaVersion": 2', '"schemaVersion": 2, "schemaVersion": 2', 1).encode())
    add("duplicate-layers", raw.replace('"layers":', '"layers": [], "layers":', 1).encode())
    add("duplicate-digest-in-config", raw.replace(f'"digest": "{cfg["digest"]}"',
                                                  f'"digest": "{ZERO}", "digest": "{cfg["digest"]}"', 1).encode())
    add("duplicate-media-type", raw.replace('"mediaType": "', f'"mediaType": "{OCI_INDEX}", "mediaType": "', 1).encode())
    # Wrong media types.
    add("content-type-text-plain", good, "text/plain")
    add("content-type-index-body-manifest", good, OCI_INDEX)
    add("content-type-docker-body-oci", good, DOCKER_MANIFEST)
    add("content-type-garbage", good, "\x7f/\x00")
    add("media-type-layer", {**good, "mediaType": "application/vnd.oci.image.layer.v1.tar"}, None)
    add("media-type-number", {**good, "mediaType": 7}, None)
    add("media-type-empty-string-and-no-hint", {"schemaVersion": 2, "mediaType": ""}, None)
    add("schema-1", {"schemaVersion": 1, "name": "lib/app", "tag": "v1", "fsLayers": [], "history": []},
        "application/vnd.docker.distribution.manifest.v1+prettyjws")
    add("schema-version-3", {**good, "schemaVersion": 3})
    add("schema-version-string", {**good, "schemaVersion": "2"})
    add("manifest-with-manifests", {**good, "manifests": []})
    add("index-with-layers", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "layers": []}, OCI_INDEX)
    add("no-config", {k: v for k, v in good.items() if k != "config"})
    add("layers-not-array", {**good, "layers": {"0": layer}})
    add("descriptor-traversal-digest", {**good, "layers": [{**layer, "digest": "sha256:../../../etc/passwd"}]})
    add("descriptor-upper-hex", {**good, "config": {**cfg, "digest": cfg["digest"].upper().replace("SHA256", "sha256")}})
    add("descriptor-bad-media-type", {**good, "layers": [{**layer, "mediaType": "../../etc"}]})
    add("annotation-not-string", {**good, "annotations": {"a": {"b": "c"}}})
    add("subject-bad-digest", {**good, "subject": descriptor("md5:" + "0" * 32, OCI_MANIFEST)})
    return cases


def test_hostile_manifests(unchanged, seeded):
    def check(case):
        case_id, body, content_type, codes = case
        headers = {"Content-Type": content_type} if content_type is not None else None
        started = time.monotonic()
        for reference in ("hostile", sha256(body)):
            unchanged("PUT", f"/v2/lib/app/manifests/{reference}", body=body, headers=headers, status={400},
                      codes=codes, what=case_id)
        assert time.monotonic() - started < 10, f"{case_id} took {time.monotonic() - started:.1f}s"

    each(manifest_cases(seeded), check)


def test_put_by_digest_that_does_not_match_the_body(unchanged, seeded):
    unchanged("PUT", f"/v2/lib/app/manifests/{ZERO}", body=seeded.manifest, headers={"Content-Type": OCI_MANIFEST},
              status={400}, codes={"DIGEST_INVALID"})
    d512 = "sha512:" + hashlib.sha512(b"not the manifest").hexdigest()
    unchanged("PUT", f"/v2/lib/app/manifests/{d512}", body=seeded.manifest, headers={"Content-Type": OCI_MANIFEST},
              status={400}, codes={"DIGEST_INVALID"})


def test_deep_chain_of_indexes_is_served(client, seeded):
    """Legitimately nested indexes (each lists the one before) store and serve without recursion."""
    child, size, media_type = seeded.image, len(seeded.manifest), OCI_MANIFEST
    for level in range(40):
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(child, media_type, size)]}
        raw = json.dumps(doc).encode()
        r = client.simulate_put(f"/v2/lib/app/manifests/level{level}", body=raw, headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201, r.text
        child, size, media_type = sha256(raw), len(raw), OCI_INDEX
    r = client.simulate_get("/v2/lib/app/manifests/level39")
    assert r.status_code == 200 and sha256(r.content) == child


# -- uploads and blobs --------------------------------------------------------------------------------------


def test_hostile_chunks(unchanged, seeded):
    upload = f"/v2/lib/app/blobs/uploads/{seeded.upload}"
    for content_range, status, code in [("0-0", 416, "RANGE_INVALID"), ("100-200", 416, "RANGE_INVALID"),
                                        ("7-5", 416, "RANGE_INVALID"), ("-1-3", 400, "BLOB_UPLOAD_INVALID"),
                                        ("7-", 400, "BLOB_UPLOAD_INVALID"), ("bytes=7-8", 400, "BLOB_UPLOAD_INVALID"),
                                        ("7-8/9", 400, "BLOB_UPLOAD_INVALID"), ("७-८", 400, "BLOB_UPLOAD_INVALID"),
                                        ("0x7-0x8", 400, "BLOB_UPLOAD_INVALID")]:
        unchanged("PATCH", upload, headers={"Content-Range": content_range}, body=b"xy", status={status},
                  codes={code}, what=f"Content-Range {content_range!r}")
    unchanged("PATCH", upload, headers={"Content-Range": "7-9"}, body=b"xy", status={400}, codes={"SIZE_INVALID"})
    unchanged("PUT", upload, status={400}, codes={"BLOB_UPLOAD_INVALID"})  # no digest
    # A single-request upload whose body does not match its digest leaves nothing behind.
    unchanged("POST", "/v2/lib/app/blobs/uploads/", params={"digest": ZERO}, body=b"not zero", status={400},
              codes={"DIGEST_INVALID"})
    unchanged("POST", "/v2/brand/new/blobs/uploads/", params={"digest": ZERO}, body=b"not zero", status={400},
              codes={"DIGEST_INVALID"})
    # ...and does not bring a repository into being (on disk an empty _uploads/ may stay behind).
    unchanged("GET", "/v2/brand/new/tags/list", status={404}, codes={"NAME_UNKNOWN"})
    unchanged("POST", "/v2/lib/app/blobs/uploads/", params={"digest": sha256(b"abc")}, body=b"abcd", status={400},
              codes={"DIGEST_INVALID"})


def test_hostile_ranges(unchanged, seeded):
    blob = f"/v2/lib/app/blobs/{seeded.layer}"
    for value in ("bytes=100-", "bytes=9-", "bytes=-0", "bytes=5-2", "bytes=-", "bytes=" + "1" * 30 + "-"):
        unchanged("GET", blob, headers={"Range": value}, status={416}, codes={"RANGE_INVALID"}, what=value)


def test_mount_from_a_hostile_repository_links_nothing(client, seeded, storage_snapshot):
    """A mount whose source is invalid or not readable falls back to an upload session (202, as the
    spec says); the blob is never linked into the target."""
    for source in ("..", "other/repo/..", "../lib/app", "lib%2Fapp", "lib/app%00", "LIB/APP", "lib/app\n", "/lib/app"):
        r = client.simulate_post("/v2/target/repo/blobs/uploads/", params={"mount": seeded.layer, "from": source})
        assert r.status_code == 202, (source, r.status_code)
        assert client.simulate_head(f"/v2/target/repo/blobs/{seeded.layer}").status_code == 404
    assert not any("target/repo/_layers" in p for p in storage_snapshot())


# -- the same over real HTTP ----------------------------------------------------------------------------------

PORTS = range(5300, 5400)
CHANNEL_TIMEOUT = 2  # seconds; waitress checks every cleanup_interval (1s)
BODY_LIMIT = 16 * 1024 * 1024
HEADER_LIMIT = 64 * 1024


def _free_port() -> int:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 5300-5399")


def _registry_command() -> list[str]:
    beside = Path(sys.executable).parent / "registry"
    exe = str(beside) if beside.exists() else shutil.which("registry")
    if exe is None:
        pytest.skip("the registry command is not installed")
    return [exe, "serve"]


@dataclass
class Server:
    port: int
    root: Path
    top: Path
    proc: subprocess.Popen
    log: Path
    image: str = ""
    manifest: bytes = b""
    upload: str = ""
    extra: dict = field(default_factory=dict)


def request(port: int, data: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole response (the server closes: every request says so)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1."), raw[:200]
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return status, headers, body


def http(port: int, method: str, target: str, *, headers: dict | None = None, body: bytes = b"") -> tuple:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("PUT", "POST", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    top = tmp_path_factory.mktemp("hostile-http")
    root = top / "root"
    root.mkdir()
    port = _free_port()
    config = top / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {json.dumps(str(root))}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "  waitress:\n"
        f"    channel_timeout: {CHANNEL_TIMEOUT}\n"
        "    cleanup_interval: 1\n"
        f"    max_request_header_size: {HEADER_LIMIT}\n"
        f"    max_request_body_size: {BODY_LIMIT}\n"
        "    threads: 4\n"
    )
    log = top / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([*_registry_command(), str(config)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=top, start_new_session=True)
    srv = Server(port, root, top, proc, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(OSError, AssertionError, IndexError, ValueError):
                if http(port, "GET", "/v2/", )[0] == 200:
                    break
            assert time.monotonic() < deadline, "registry did not start: " + log.read_text()
            time.sleep(0.1)
        config_blob = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        for blob in (config_blob, b"layer-one"):
            status, _, body = http(port, "POST", f"/v2/lib/app/blobs/uploads/?digest={sha256(blob)}", body=blob)
            assert status == 201, body
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": descriptor(sha256(config_blob), "application/vnd.oci.image.config.v1+json",
                                                    len(config_blob)),
                               "layers": [descriptor(sha256(b"layer-one"), size=9)]}).encode()
        status, _, body = http(port, "PUT", "/v2/lib/app/manifests/v1", headers={"Content-Type": OCI_MANIFEST},
                               body=manifest)
        assert status == 201, body
        status, headers, _ = http(port, "POST", "/v2/lib/app/blobs/uploads/")
        assert status == 202
        srv.image, srv.manifest, srv.upload = sha256(manifest), manifest, headers["docker-upload-uuid"]
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def raw_cases(srv: Server) -> list[tuple[str, bytes, set[int]]]:
    """(id, the request's bytes, acceptable statuses). Built by hand: no client library touches them."""

    def req(method: str, target: bytes, headers: bytes = b"", body: bytes = b"") -> bytes:
        return (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                + headers + b"\r\n" + body)

    u = srv.upload.encode()
    m = srv.manifest
    cl = b"Content-Length: %d\r\n" % len(m)
    return [
        ("dotdot-root", req("GET", b"/v2/../etc/passwd"), {404}),
        ("dotdot-deep", req("GET", b"/v2/../../../../../../etc/passwd"), {404}),
        ("dotdot-in-name", req("GET", b"/v2/lib/app/../../../etc/tags/list"), {400}),
        ("encoded-slash", req("GET", b"/v2/lib%2F..%2F..%2Fetc/tags/list"), {400}),
        ("encoded-dots", req("GET", b"/v2/%2e%2e/%2e%2e/tags/list"), {400}),
        ("double-encoded", req("GET", b"/v2/%252e%252e/tags/list"), {400}),
        ("encoded-nul", req("GET", b"/v2/lib%00app/tags/list"), {400}),
        ("raw-nul", req("GET", b"/v2/lib\x00app/tags/list"), {400}),
        ("backslashes", req("GET", b"/v2/lib\\..\\..\\etc/tags/list"), {400}),
        ("absolute-path", req("GET", b"//etc/passwd"), {404}),
        ("overlong-utf8", req("GET", b"/v2/%C0%AE%C0%AE/tags/list"), {400}),
        ("invalid-utf8", req("GET", b"/v2/\xff\xfe/tags/list"), {400}),
        ("lookalike-slash", req("GET", b"/v2/lib%E2%88%95..%E2%88%95etc/tags/list"), {400}),
        ("tag-traversal", req("GET", b"/v2/lib/app/manifests/..%2F..%2F..%2Fetc%2Fpasswd"), {404}),
        ("tag-newline", req("PUT", b"/v2/lib/app/manifests/v2%0A", cl, m), {400}),
        ("tag-dotdot", req("PUT", b"/v2/lib/app/manifests/..", cl, m), {400}),
        ("digest-traversal", req("GET", b"/v2/lib/app/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd"), {404}),
        ("digest-query-traversal", req("POST", b"/v2/lib/app/blobs/uploads/?digest=sha256:../../../x",
                                       b"Content-Length: 2\r\n", b"{}"), {400}),
        ("upload-traversal", req("PATCH", b"/v2/lib/app/blobs/uploads/..%2F..%2F_layers", b"Content-Length: 1\r\n",
                                 b"x"), {404}),
        ("upload-other-repo", req("PATCH", b"/v2/other/repo/blobs/uploads/" + u, b"Content-Length: 1\r\n", b"x"),
         {404}),
        ("oversized-header-line", req("GET", b"/v2/", b"X-Big: " + b"a" * (HEADER_LIMIT + 10) + b"\r\n"), {431}),
        ("too-many-headers", req("GET", b"/v2/", b"".join(b"X-H%d: v\r\n" % i for i in range(8000))), {431}),
        ("body-over-limit", req("PATCH", b"/v2/lib/app/blobs/uploads/" + u, b"Content-Length: %d\r\n" % (1 << 30)),
         {413}),
        ("manifest-over-4mib", req("PUT", b"/v2/lib/app/manifests/huge",
                                   b"Content-Length: %d\r\n" % (MAX_MANIFEST + 1), b"{" * (MAX_MANIFEST + 1)), {413}),
        ("bad-chunk-size", req("POST", b"/v2/lib/app/blobs/uploads/", b"Transfer-Encoding: chunked\r\n", b"zz\r\n"),
         {400}),
        ("two-content-lengths", req("PUT", b"/v2/lib/app/manifests/v3", b"Content-Length: 1\r\nContent-Length: 2\r\n",
                                    b"{}"), {400}),
        ("garbage-request-line", b"GARBAGE\r\n\r\n", {400}),
        ("nul-in-header-name", req("GET", b"/v2/", b"Bad\x00Name: y\r\n"), {400}),
        ("unknown-method", req("PROPFIND", b"/v2/lib/app/tags/list"), {400, 405}),
        ("huge-range", req("GET", b"/v2/lib/app/blobs/" + sha256(b"layer-one").encode(),
                           b"Range: bytes=" + b"9" * 5000 + b"-\r\n"), {416}),
        ("huge-content-range", req("PATCH", b"/v2/lib/app/blobs/uploads/" + u,
                                   b"Content-Range: 0-" + b"9" * 5000 + b"\r\nContent-Length: 1\r\n", b"x"), {400}),
        ("page-size-superscript", req("GET", b"/v2/_catalog?n=%C2%B2"), {400}),
    ]


def test_hostile_requests_over_http(server):
    """Raw requests against a real server: a 4xx with the OCI error body, nothing written."""
    failures = []
    for case_id, data, statuses in raw_cases(server):
        before = tree_snapshot(server.top / "root")
        status, headers, body = request(server.port, data)
        try:
            assert_oci_error(status, headers, body, data.split(b" ", 1)[0].decode("latin-1"), statuses, (), case_id)
            assert headers.get("docker-distribution-api-version") == "registry/2.0", case_id
            assert tree_snapshot(server.top / "root") == before, f"{case_id}: storage changed"
        except AssertionError as exc:
            failures.append(str(exc))
    assert server.proc.poll() is None, server.log.read_text()
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("reference", [".bad", "sha256:zz", "-v1", "v" * 129, "md5:" + "0" * 32, "sha512:" + "0" * 64])
def test_get_and_head_of_a_reference_that_is_no_tag_nor_digest_is_manifest_unknown(server, reference):
    """Distribution answers 404 MANIFEST_UNKNOWN (released OCI conformance suites expect it): no manifest
    can have such a reference. HEAD gets the status without a body; PUT and DELETE still say what is
    malformed (400)."""
    def call(method: str, body: bytes = b"", headers: bytes = b"") -> tuple[int, dict, bytes]:
        return request(server.port, method.encode() + f" /v2/lib/app/manifests/{reference} HTTP/1.1\r\n".encode()
                       + b"Host: x\r\nConnection: close\r\n" + headers + b"\r\n" + body)

    status, headers, body = call("GET")
    assert status == 404, body
    assert headers["content-type"].startswith("application/json")
    [error] = json.loads(body)["errors"]
    assert error["code"] == "MANIFEST_UNKNOWN" and error["detail"] == {"reference": reference}, error
    status, headers, body = call("HEAD")
    assert (status, body) == (404, b"")
    assert headers["content-type"].startswith("application/json")
    status, _, body = call("PUT", server.manifest, b"Content-Type: %s\r\nContent-Length: %d\r\n"
                           % (OCI_MANIFEST.encode(), len(server.manifest)))
    assert status == 400 and json.loads(body)["errors"][0]["code"] in {"MANIFEST_INVALID", "DIGEST_INVALID"}, body
    status, _, body = call("DELETE")
    assert status == 400 and json.loads(body)["errors"][0]["code"] in {"MANIFEST_INVALID", "DIGEST_INVALID"}, body


def test_unsupported_transfer_coding_is_501_with_the_error_body(server):
    """RFC 9112 asks for 501 here, the one 5xx bad input gets; it still carries the OCI body."""
    status, headers, body = request(server.port, b"POST /v2/lib/app/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                                                 b"Transfer-Encoding: gzip\r\nConnection: close\r\n\r\n")
    assert status == 501
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"


def _served(port: int, timeout: float = 5.0) -> float:
    started = time.monotonic()
    status, _, _ = request(port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=timeout)
    assert status == 200
    return time.monotonic() - started


STALLED = {
    "nothing": b"",
    "request-line": b"GET /v2/ HT",
    "headers": b"GET /v2/ HTTP/1.1\r\nHost: x\r\n",
    "upload-body": b"PATCH /v2/lib/app/blobs/uploads/{upload} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123",
    "manifest-body": b"PUT /v2/lib/app/manifests/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n{\"schema",
}


def test_stalled_clients_are_cut_off(server):
    """Connections that stop sending (before the request line, in the headers, in the body) are closed
    after ``channel_timeout`` without an answer, and a half-sent upload chunk writes nothing."""
    before = tree_snapshot(server.top / "root")
    socks = {}
    try:
        for case_id, partial in STALLED.items():
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(partial.replace(b"{upload}", server.upload.encode()))
            socks[case_id] = (s, time.monotonic())
        limit = CHANNEL_TIMEOUT + 4
        for case_id, (s, sent) in socks.items():
            s.settimeout(max(0.1, sent + limit - time.monotonic()))
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            except TimeoutError:
                pytest.fail(f"{case_id}: the server kept a stalled connection open for {limit}s")
            waited = time.monotonic() - sent
            assert data == b"", (case_id, data[:200])
            assert CHANNEL_TIMEOUT - 0.5 <= waited <= limit, (case_id, waited)
    finally:
        for s, _ in socks.values():
            s.close()
    assert tree_snapshot(server.top / "root") == before
    status, headers, _ = http(server.port, "GET", f"/v2/lib/app/blobs/uploads/{server.upload}")
    assert status == 204 and headers["range"] == "0-0"  # the stalled chunk was not appended


def test_slow_clients_do_not_starve_others(server):
    """Fifty connections trickling headers a byte at a time hold no worker thread: others are served."""
    stop = threading.Event()
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /v2/ HTTP/1.1\r\n")
        socks.append(s)

    def trickle():
        i = 0
        while not stop.is_set() and i < 40:  # bounded: at most ~4s
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            i += 1
            stop.wait(0.1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        for _ in range(5):
            assert _served(server.port) < 3.0
    finally:
        stop.set()
        t.join(10)
        for s in socks:
            s.close()
    assert server.proc.poll() is None


def test_corpus_size(request):
    """Runs last: report how many hostile requests were sent (in-process, over both drivers)."""
    ran = [i for i in request.session.items if i.module is request.module and "unchanged" in i.fixturenames]
    if CORPUS[0] == 0 or len(ran) < 2 * 10:
        pytest.skip("the corpus did not run in full in this session")
    raw = len(raw_cases(Server(0, Path(), Path(), None, Path(), upload="u", manifest=b"{}")))  # type: ignore[arg-type]
    print(f"\nhostile corpus: {CORPUS[0]} in-process requests over {len(ran)} tests, {raw} raw HTTP requests, "
          f"{len(STALLED)} stalled connections, 50 trickling ones")
    assert CORPUS[0] > 1000
