"""Shared fixtures: an app over each storage driver, driven with Falcon's test client."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import falcon.testing
import pytest

from registry.app import create_app
from registry.plugins import by_name, create_plugin_manager
from tests.events import EventRecorder
from tests.objstore import ObjectStoreDriver


def _drivers() -> list[str]:
    # objstore: the object-store-like test driver (tests/objstore.py), S3's rules in memory.
    names = ["inmemory", "objstore"]
    if "filesystem" in by_name(create_plugin_manager(), "registry_storage_drivers"):
        names.append("filesystem")
    return names


@pytest.fixture(params=_drivers())
def driver(request: pytest.FixtureRequest, tmp_path):
    """A fresh storage driver: each test body runs once per installed core driver, and once on the
    object-store-like test driver."""
    if request.param == "objstore":
        return ObjectStoreDriver()
    descriptor = by_name(create_plugin_manager(), "registry_storage_drivers")[request.param]
    params = {"rootdirectory": str(tmp_path / "root")} if request.param == "filesystem" else {}
    return descriptor.factory(params)


@pytest.fixture
def events() -> Iterator[EventRecorder]:
    """Every event of the apps ``make_client`` builds; the test fails if one breaks schemas/event.json."""
    recorder = EventRecorder()
    yield recorder
    recorder.assert_valid()


@pytest.fixture
def make_client(driver, events):
    def make(delete: bool = True, plugins=()) -> falcon.testing.TestClient:
        config = {"version": 0.1, "storage": {driver.name: {}, "delete": {"enabled": delete}}}
        pm = create_plugin_manager(plugins=[events, *plugins])
        return falcon.testing.TestClient(create_app(config, pm, driver=driver))

    return make


@pytest.fixture
def client(make_client) -> falcon.testing.TestClient:
    return make_client()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Small helpers that push through the HTTP API, as a client would."""

    def __init__(self, client: falcon.testing.TestClient) -> None:
        self.c = client

    def blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self.c.simulate_post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, body=data,
                                 headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return d

    def image(self, name: str, tag: str | None = "latest", layers: tuple[bytes, ...] = (b"layer-1",),
              extra: dict | None = None, media_type: str = "application/vnd.oci.image.manifest.v1+json") -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cd = self.blob(name, config)
        layer_descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.blob(name, layer),
                        "size": len(layer)} for layer in layers]
        config_type = ("application/vnd.docker.container.image.v1+json" if "docker" in media_type
                       else "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": media_type,
                    "config": {"mediaType": config_type, "digest": cd, "size": len(config)},
                    "layers": layer_descs, **(extra or {})}
        raw = json.dumps(manifest, indent=2).encode()
        ref = tag or sha256(raw)
        r = self.c.simulate_put(f"/v2/{name}/manifests/{ref}", body=raw, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return sha256(raw), raw


@pytest.fixture
def pusher(client) -> Pusher:
    return Pusher(client)


@pytest.fixture
def storage_snapshot(driver):
    """A function returning every file and its content: proof that bad input changed nothing."""

    def snap() -> dict[str, bytes]:
        files = {}
        try:
            for info in driver.walk("/"):
                if not info.is_dir:
                    files[info.path] = driver.get_content(info.path)
        except Exception:  # empty storage
            return {}
        return files

    return snap


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch) -> Iterator:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
