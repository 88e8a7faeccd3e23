"""A small HTTP client for the load tests (crash, concurrency, multiprocess): pushes with every upload
form, and nothing that retries or hides a status.

Each call raises `Unexpected` for a status it did not expect and lets `requests` errors (a dead
server) through, so a caller can tell "the registry said no" from "the registry went away".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TIMEOUT = 15.0
UPLOAD_FORMS = ("single", "post_put", "chunked")


class Unexpected(Exception):
    def __init__(self, what: str, response: requests.Response) -> None:
        super().__init__(f"{what}: {response.status_code} {response.text[:300]}")
        self.response = response


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only: no proxy, no netrc
    return s


def expect(r: requests.Response, what: str, *codes: int) -> requests.Response:
    if r.status_code not in codes:
        raise Unexpected(what, r)
    return r


def push_blob(
    s: requests.Session,
    base: str,
    repo: str,
    data: bytes,
    form: str = "single",
    chunk: int = 16384,
    progress: Callable[[str, int], None] | None = None,
) -> str:
    """Push ``data`` as a blob of ``repo``; returns its digest once the registry answered 201.

    ``form``: ``single`` (POST ?digest= with the body), ``post_put`` (POST, then PUT with the body) or
    ``chunked`` (POST, PATCHes of ``chunk`` bytes with Content-Range, then an empty PUT).
    ``progress(location, acknowledged_bytes)`` hears of each accepted step of a session.
    """
    d = digest(data)
    url = f"{base}/v2/{repo}/blobs/uploads/"
    octet = {"Content-Type": "application/octet-stream"}
    if form == "single":
        expect(s.post(url, params={"digest": d}, data=data, headers=octet, timeout=TIMEOUT), "POST ?digest", 201)
        return d
    r = expect(s.post(url, timeout=TIMEOUT), "POST", 202)
    location = urljoin(url, r.headers["Location"])
    if progress is not None:
        progress(location, 0)
    if form == "chunked":
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            r = s.patch(location, data=part, timeout=TIMEOUT,
                        headers={**octet, "Content-Range": f"{start}-{start + len(part) - 1}"})
            expect(r, "PATCH", 202)
            location = urljoin(location, r.headers["Location"])
            if progress is not None:
                progress(location, start + len(part))
        body = b""
    else:
        body = data
    r = s.put(location, params={"digest": d}, data=body, headers=octet, timeout=TIMEOUT)
    expect(r, "PUT", 201)
    if r.headers.get("Docker-Content-Digest") != d:
        raise Unexpected(f"PUT answered digest {r.headers.get('Docker-Content-Digest')}", r)
    return d


def manifest(config: bytes, layers: list[bytes], annotations: dict[str, str] | None = None) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest(b), "size": len(b)} for b in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, indent=2).encode()


def config_blob(label: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                       "config": {"Labels": {"test": label}}}).encode()


def put_manifest(s: requests.Session, base: str, repo: str, ref: str, raw: bytes) -> str:
    r = s.put(f"{base}/v2/{repo}/manifests/{ref}", data=raw, headers={"Content-Type": OCI_MANIFEST},
              timeout=TIMEOUT)
    expect(r, f"PUT manifest {ref}", 201)
    if r.headers.get("Docker-Content-Digest") != digest(raw):
        raise Unexpected("manifest PUT answered another digest", r)
    return digest(raw)


def get_manifest(s: requests.Session, base: str, repo: str, ref: str) -> requests.Response:
    return s.get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT)


def get_blob(s: requests.Session, base: str, repo: str, d: str) -> requests.Response:
    return s.get(f"{base}/v2/{repo}/blobs/{d}", timeout=TIMEOUT)


def error_codes(r: requests.Response) -> list[str]:
    try:
        return [e.get("code") for e in r.json().get("errors", [])]
    except (ValueError, AttributeError):
        return []
