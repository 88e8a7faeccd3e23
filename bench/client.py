"""A small keep-alive registry client over ``http.client``: just what the workloads need.

It speaks to both registries the same way real clients do: ``POST`` then ``PUT ?digest=`` for a
monolithic upload (Distribution 2.8 drops the body of a single-``POST`` upload), ``PATCH`` chunks
following each returned ``Location``, ``HEAD`` before pushing a blob, ``PUT`` of an OCI manifest.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"

#: Bytes per socket read when downloading.
READ_BUFFER = 1 << 20


class RegistryClient:
    """One keep-alive connection to a registry on loopback."""

    def __init__(self, port: int, timeout: float = 300.0) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------

    def request(self, method: str, url: str, body: bytes | memoryview | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200,)) -> http.client.HTTPResponse:
        """Send a request and read the (small) response body; raises on an unexpected status."""
        resp = self._send(method, url, body, headers)
        data = resp.read()
        if resp.status not in expect:
            raise RuntimeError(f"{method} {url}: {resp.status} {data[:300]!r}")
        resp.body = data  # type: ignore[attr-defined]
        return resp

    def _send(self, method: str, url: str, body: object, headers: dict[str, str] | None) -> http.client.HTTPResponse:
        headers = dict(headers or {})
        if body is None and method in ("PUT", "POST", "PATCH"):
            headers.setdefault("Content-Length", "0")
        self.conn.request(method, url, body=body, headers=headers)  # type: ignore[arg-type]
        return self.conn.getresponse()

    @staticmethod
    def _relative(location: str) -> str:
        """Distribution answers absolute ``Location`` URLs, we answer paths: use the path + query."""
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + f"digest={digest}"

    # -- blobs -------------------------------------------------------------------------------------

    def start_upload(self, repo: str) -> str:
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
        return self._relative(resp.headers["Location"])

    def upload_monolithic(self, repo: str, data: bytes | memoryview | Iterable[bytes], size: int, digest: str) -> None:
        """``POST`` then one ``PUT ?digest=`` carrying the whole blob."""
        location = self.start_upload(repo)
        self.request("PUT", self._with_digest(location, digest), body=data,
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                     expect=(201,))

    def upload_chunked(self, repo: str, chunks: Iterable[bytes | memoryview], digest: str) -> None:
        """``POST``, one ``PATCH`` per chunk (following each ``Location``), then an empty ``PUT``."""
        location = self.start_upload(repo)
        offset = 0
        for chunk in chunks:
            n = len(chunk)
            resp = self.request("PATCH", location, body=chunk, expect=(202,), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(n),
                "Content-Range": f"{offset}-{offset + n - 1}"})
            location = self._relative(resp.headers["Location"])
            offset += n
        self.request("PUT", self._with_digest(location, digest), expect=(201,))

    def upload_streamed(self, repo: str, pieces: Iterable[bytes | memoryview], digest: str,
                        chunk: int = 32 << 10) -> None:
        """``POST``, one ``PATCH`` in chunked transfer coding (no ``Content-Length``, ``chunk``-byte
        chunks: what a Go client such as skopeo sends for a layer it compresses on the fly, 32 KiB
        per ``io.Copy`` write), then an empty ``PUT``. The framing is added here, one ``send`` per
        piece, so that the client's own cost stays small."""
        location = self.start_upload(repo)
        conn = self.conn
        conn.putrequest("PATCH", location)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in pieces:
            view = memoryview(piece)
            framed = []
            for at in range(0, len(view), chunk):
                part = view[at:at + chunk]
                framed += [b"%x\r\n" % len(part), part, b"\r\n"]
            conn.send(b"".join(framed))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 202:
            raise RuntimeError(f"PATCH {location} (chunked): {resp.status} {data[:300]!r}")
        self.request("PUT", self._with_digest(self._relative(resp.headers["Location"]), digest), expect=(201,))

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self.request("HEAD", f"/v2/{repo}/blobs/{digest}", expect=(200, 404)).status == 200

    def push_blob(self, repo: str, data: bytes, digest: str) -> None:
        """What a docker-style client does per layer: ``HEAD``, then ``POST``, ``PATCH``, ``PUT``."""
        if self.blob_exists(repo, digest):
            return
        self.upload_chunked(repo, [data], digest)

    def download(self, repo: str, digest: str, expected: int) -> int:
        """``GET`` a blob, reading it into a reused buffer; returns the byte count."""
        resp = self._send("GET", f"/v2/{repo}/blobs/{digest}", None, None)
        if resp.status != 200:
            raise RuntimeError(f"GET blob: {resp.status} {resp.read()[:300]!r}")
        buf = bytearray(READ_BUFFER)
        view = memoryview(buf)
        total = 0
        while True:
            n = resp.readinto(view)
            if not n:
                break
            total += n
        if total != expected:
            raise RuntimeError(f"GET blob: {total} bytes, expected {expected}")
        return total

    # -- manifests ---------------------------------------------------------------------------------

    def put_manifest(self, repo: str, reference: str, manifest: bytes) -> None:
        self.request("PUT", f"/v2/{repo}/manifests/{reference}", body=manifest,
                     headers={"Content-Type": OCI_MANIFEST}, expect=(201,))

    def push_image(self, repo: str, tag: str, layers: list[tuple[bytes, str]], config: bytes | None = None) -> str:
        """Push ``layers`` (``(data, digest)``), a config and a manifest tagged ``tag``; returns the
        manifest's digest."""
        config = config if config is not None else json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        config_digest = sha256_digest(config)
        for data, digest in layers:
            self.push_blob(repo, data, digest)
        self.push_blob(repo, config, config_digest)
        manifest = image_manifest(config, config_digest, [(len(d), dg) for d, dg in layers])
        self.put_manifest(repo, tag, manifest)
        return sha256_digest(manifest)

    def catalog(self, n: int) -> list[str]:
        resp = self.request("GET", f"/v2/_catalog?n={n}")
        return json.loads(resp.body)["repositories"]  # type: ignore[attr-defined]


def sha256_digest(data: bytes | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(config: bytes, config_digest: str, layers: list[tuple[int, str]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": dg, "size": size} for size, dg in layers],
    }, indent=3).encode()


class PatternBlob:
    """A large blob that is never held in memory: ``size`` bytes made of one random ``block``
    repeated, each repetition stamped with its index (so no two blocks are equal).

    :param seed: makes blobs of different runs distinct (registries deduplicate by digest).
    """

    def __init__(self, size: int, seed: int, block: int = 16 << 20) -> None:
        self.size, self.block = size, block
        self._base = bytearray(os.urandom(min(block, size)))
        self._seed = seed
        self.digest = ""

    def chunks(self, chunk: int | None = None) -> Iterator[memoryview]:
        """The content in pieces of ``chunk`` bytes (default: the block size; it must divide it)."""
        chunk = chunk or self.block
        view = memoryview(self._base)
        offset = 0
        while offset < self.size:
            index = offset // self.block
            within = offset % self.block
            if within == 0:
                self._base[:16] = index.to_bytes(8, "big") + self._seed.to_bytes(8, "big")
            n = min(chunk, self.size - offset, self.block - within)
            yield view[within:within + n]
            offset += n

    def compute_digest(self) -> str:
        h = hashlib.sha256()
        for piece in self.chunks():
            h.update(piece)
        self.digest = "sha256:" + h.hexdigest()
        return self.digest
