"""Garbage collection, scrub and repository delete on the object-store drivers: s3 against moto's S3
server (contrib/dev/start-moto.sh) and azure against Azurite. Everything goes through the driver API,
nothing assumes a file system, and the storage's clock is read from the object store's own
modification times."""

from __future__ import annotations

import datetime
import sys
import uuid
from pathlib import Path

import falcon.testing
import pytest

_PLUGINS = Path(__file__).resolve().parent.parent / "registry_plugins"
for _tests in (_PLUGINS / "s3" / "tests", _PLUGINS / "azure" / "tests"):
    if str(_tests) not in sys.path:  # the launchers live with the plugins' tests
        sys.path.insert(0, str(_tests))

from s3_servers import moto_server  # noqa: E402,F401  (the fixture, registered by import)

from registry.app import create_app  # noqa: E402
from registry.digests import parse_digest  # noqa: E402
from registry.ops.gc import collect_garbage, storage_now  # noqa: E402
from registry.ops.repodelete import delete_repository  # noqa: E402
from registry.ops.scrub import scrub  # noqa: E402
from registry.plugins import by_name, create_plugin_manager  # noqa: E402
from registry.storage import paths  # noqa: E402
from registry.storage.checked import checked  # noqa: E402
from registry.storage.store import Store  # noqa: E402
from tests.conftest import Pusher, sha256  # noqa: E402

LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


def _driver(name: str, options: dict):
    pm = create_plugin_manager()
    drivers = by_name(pm, "registry_storage_drivers")
    if name not in drivers:
        pytest.skip(f"the {name} driver is not installed")
    return pm, checked(drivers[name].factory(options))


def test_on_s3(moto_server):  # noqa: F811 - the fixture
    pytest.importorskip("registry_s3")
    exercise(*_driver("s3", moto_server.options(moto_server.new_bucket())))


@pytest.fixture
def azurite(tmp_path_factory):
    from azurite_server import Azurite, require_azurite

    require_azurite()
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    try:
        yield server
    finally:
        server.stop()


def test_on_azure(azurite):
    pytest.importorskip("registry_azure")
    exercise(*_driver("azure", azurite.options(f"gc{uuid.uuid4().hex[:16]}")))


def exercise(pm, driver) -> None:
    config = {"storage": {driver.name: {}, "delete": {"enabled": True}, "redirect": {"disable": True}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=driver))
    pusher = Pusher(client)
    store = Store(driver)

    # The object store's clock, through a probe object that is removed again.
    now = storage_now(driver)
    assert abs((now - datetime.datetime.now(datetime.UTC)).total_seconds()) < 30
    assert not _exists(driver, paths.GC_DIR) or driver.list(paths.GC_DIR) == []  # the probe is gone

    kept, _ = pusher.image("s3/app", "v1", layers=(b"kept layer",))
    child = pusher.image("s3/app", None, layers=(b"child layer",))
    index = client.simulate_put("/v2/s3/app/manifests/multi", headers={
        "Content-Type": "application/vnd.oci.image.index.v1+json"}, body=(
        '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": '
        f'[{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "{child[0]}", '
        f'"size": {len(child[1])}}}]}}').encode())
    assert index.status_code == 201
    gone, _ = pusher.image("s3/app", "v2", layers=(b"gone layer",))
    pusher.image("s3/app", None, layers=(b"untagged layer",))
    assert client.simulate_delete(f"/v2/s3/app/manifests/{gone}").status_code == 202

    dry = collect_garbage(store, now=LATER, grace=0, settle=0, dry_run=True, delete_untagged=True)
    assert store.blob_size(parse_digest(sha256(b"gone layer"))) is not None
    result = collect_garbage(store, now=LATER, grace=0, settle=0, delete_untagged=True)
    assert not result.errors
    assert (result.blobs_deleted, result.bytes_freed) == (dry.blobs_deleted, dry.bytes_freed)
    assert result.blobs_deleted == 4  # the deleted image's manifest and layer, the untagged one's
    for data in (b"gone layer", b"untagged layer"):
        assert store.blob_size(parse_digest(sha256(data))) is None
    for ref in ("v1", "multi", child[0]):
        assert client.simulate_get(f"/v2/s3/app/manifests/{ref}").status_code == 200
    for data in (b"kept layer", b"child layer"):
        assert client.simulate_get(f"/v2/s3/app/blobs/{sha256(data)}").content == data

    # Scrub finds an object overwritten with other bytes, and quarantines it.
    layer = parse_digest(sha256(b"kept layer"))
    driver.put_content(paths.blob_data(layer), b"kept layeR")
    found = scrub(store, quarantine=True)
    assert found.quarantined == [str(layer)] and len(found.corrupt) == 1
    assert client.simulate_get(f"/v2/s3/app/blobs/{layer}").status_code == 404
    assert not scrub(store).bad

    done = delete_repository(store, "s3/app")
    assert (done.tags, done.manifests) == (2, 3)
    assert client.simulate_get("/v2/_catalog").json["repositories"] == []
    after = collect_garbage(store, now=LATER, grace=0, settle=0)
    assert after.blobs_deleted >= 4 and not list(_blobs(driver))


def _exists(driver, path: str) -> bool:
    try:
        driver.stat(path)
    except Exception:
        return False
    return True


def _blobs(driver):
    from registry.ops.layout import iter_blobs

    return iter_blobs(driver)
