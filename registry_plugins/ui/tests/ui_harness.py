"""What the UI's tests share: an in-process app over a call-counting driver, test images as bytes
(an OCI layout for skopeo, manifests for plain HTTP pushes), htpasswd and access-rules files."""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import bcrypt
import falcon.testing
import pytest
import requests

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.storage.driver import StorageDriver
from registry.storage.inmemory import InMemoryDriver
from registry.storage.middleware import StorageMiddleware, contract_members
from tests.test_cli import Serving

TIMEOUT = 15.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"

#: An annotation value that runs script if a page fails to escape it.
HOSTILE = ("<script>window.__pwned = 1; document.title = 'pwned';</script>"
           "<img src=x onerror=\"window.__pwned = 2\">\"'&amp;")


def unavailable(reason: str) -> None:
    """Skip outside CI; fail under CI, where contrib/dev/install-test-deps.sh installs everything."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (contrib/dev/install-test-deps.sh installs it under CI)")
    pytest.skip(reason)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Counting(StorageMiddleware):
    """Counts every storage call the pages make (a test middleware, never installed)."""

    def __init__(self, inner: StorageDriver) -> None:
        super().__init__(inner)
        self.calls: collections.Counter[str] = collections.Counter()

    def total(self) -> int:
        return sum(self.calls.values())


def _counter(op: str) -> Any:
    def call(self: Counting, *args: Any, **kwargs: Any) -> Any:
        self.calls[op] += 1
        return getattr(self.inner, op)(*args, **kwargs)

    call.__name__ = op
    return call


for _op, _is_method in contract_members(StorageDriver).items():
    if _is_method and _op not in ("close",):
        setattr(Counting, _op, _counter(_op))


@contextlib.contextmanager
def ui_app(config: Mapping[str, Any] | None = None, *, ui: Mapping[str, Any] | None = None,
           delete: bool = True, plugins: tuple[Any, ...] = ()
           ) -> Iterator[tuple[falcon.testing.TestClient, Any, Counting]]:
    """An app with the UI over an in-memory driver wrapped in :class:`Counting`; ``(client, app, counter)``."""
    full = {"version": "0.1", "storage": {"inmemory": {}, "delete": {"enabled": delete}},
            "ui": dict(ui or {}), **(config or {})}
    driver = Counting(InMemoryDriver())
    pm = create_plugin_manager()
    for plugin in plugins:
        pm.register(plugin)
    app = create_app(full, pm, driver=driver)
    with app:
        yield falcon.testing.TestClient(app), app, driver


# -- images --------------------------------------------------------------------------------------


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o755
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def image_config(arch: str, variant: str | None = None, created: str = "2024-05-06T07:08:09Z",
                 labels: Mapping[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {"architecture": arch, "os": "linux", "created": created,
                           "config": {"Entrypoint": ["/bin/app"], "Labels": dict(labels or {})},
                           "rootfs": {"type": "layers", "diff_ids": []}}
    if variant:
        doc["variant"] = variant
    return json.dumps(doc).encode()


class Image:
    """One image's blobs and manifest bytes."""

    def __init__(self, arch: str, variant: str | None = None, payload: bytes | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.arch, self.variant = arch, variant
        self.layer = layer_tar({"bin/app": payload or f"app for {arch}\n".encode() * 300})
        self.config = image_config(arch, variant, labels=labels)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(self.config), "size": len(self.config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(self.layer), "size": len(self.layer)}],
        }).encode()
        self.digest = sha256(self.manifest)

    @property
    def platform(self) -> dict[str, str]:
        p = {"os": "linux", "architecture": self.arch}
        if self.variant:
            p["variant"] = self.variant
        return p

    def blobs(self) -> dict[str, bytes]:
        return {sha256(self.layer): self.layer, sha256(self.config): self.config}


def index_of(images: list[Image], annotations: Mapping[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": i.digest, "size": len(i.manifest), "platform": i.platform}
        for i in images]}
    if annotations:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc).encode()


def write_oci_layout(path: Path, images: list[Image], ref: str) -> str:
    """An OCI layout holding an index of ``images`` under ``ref``; returns the index digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    for image in images:
        for data in image.blobs().values():
            put(data)
        put(image.manifest)
    index = index_of(images)
    d = put(index)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": d, "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": ref}}]}))
    return d


def artifact(subject: bytes, artifact_type: str, payload: bytes,
             annotations: Mapping[str, str] | None = None) -> tuple[bytes, dict[str, bytes]]:
    """A referrer manifest (OCI 1.1 artifact) for ``subject``; ``(manifest, blobs)``."""
    empty = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": sha256(payload), "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(subject), "size": len(subject)},
        "annotations": {"org.opencontainers.image.created": "2025-01-02T03:04:05Z", **(annotations or {})},
    }).encode()
    return manifest, {sha256(empty): empty, sha256(payload): payload}


# -- through the API -----------------------------------------------------------------------------


def api_push(client: falcon.testing.TestClient, name: str, ref: str, manifest: bytes,
             blobs: Mapping[str, bytes] | None = None, media_type: str = OCI_MANIFEST,
             headers: Mapping[str, str] | None = None) -> str:
    """Push blobs and a manifest through the in-process API; returns the manifest digest."""
    for d, data in (blobs or {}).items():
        r = client.simulate_post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, body=data,
                                 headers=dict(headers or {}))
        assert r.status_code == 201, r.text
    r = client.simulate_put(f"/v2/{name}/manifests/{ref}", body=manifest,
                            headers={"Content-Type": media_type, **(headers or {})})
    assert r.status_code == 201, r.text
    return sha256(manifest)


def push_image(client: falcon.testing.TestClient, name: str, tag: str, image: Image, **kw: Any) -> str:
    return api_push(client, name, tag, image.manifest, image.blobs(), **kw)


# -- auth files ----------------------------------------------------------------------------------

USERS = {"alice": "alice-pw", "bob": "bob-pw"}

RULES = """
rules:
  - repositories: ["public/**"]
    anonymous: [pull]
    users: {alice: ["*"]}
  - repositories: ["alice/**"]
    users: {alice: ["*"], bob: [pull]}
  - repositories: ["bob/**"]
    users: {bob: ["*"]}
catalog:
  users: [alice]
"""


def write_auth_files(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = directory / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in USERS.items()))
    rules = directory / "access.yml"
    rules.write_text(RULES)
    return htpasswd, rules


def basic(user: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()}


# -- `registry serve` ------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"), NO_PROXY="127.0.0.1,localhost")
    return env


class Registry:
    """`registry serve` on a free loopback port over a filesystem root, with ``extra`` config (YAML)."""

    def __init__(self, tmp_path: Path, extra: str = "", *, name: str = "config", root: Path | None = None,
                 prefix: str = "") -> None:
        http = f"  prefix: {prefix}\n" if prefix else ""
        config = tmp_path / f"{name}.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root or tmp_path / 'root'}\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n" + http + extra)
        self.server = Serving(str(config), _env(tmp_path))
        port = self.server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.base = self.url + prefix.rstrip("/")
        self.http = requests.Session()
        self.http.trust_env = False

    def push(self, name: str, ref: str, manifest: bytes, blobs: dict[str, bytes], auth=None) -> str:
        for d, data in blobs.items():
            r = self.http.post(f"{self.base}/v2/{name}/blobs/uploads/", params={"digest": d}, data=data,
                               auth=auth, timeout=TIMEOUT)
            assert r.status_code == 201, r.text
        r = self.http.put(f"{self.base}/v2/{name}/manifests/{ref}", data=manifest, auth=auth, timeout=TIMEOUT,
                          headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
        return sha256(manifest)

    def stop(self) -> None:
        self.server.stop()


