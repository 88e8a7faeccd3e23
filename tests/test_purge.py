"""Upload purging removes abandoned sessions, keeps recent ones, and honours dry runs."""

from __future__ import annotations

import datetime

from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.purge import purge_uploads
from registry.storage.store import Store
from registry.storage.uploads import Uploads
from tests.conftest import Pusher

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def _upload(driver, name: str, started: str) -> str:
    upload_id = Uploads(Store(driver)).start(name)
    driver.put_content(paths.upload_started_at(name, upload_id), started.encode())
    return upload_id


def test_purges_only_old_uploads(driver):
    driver = checked(driver)
    old = _upload(driver, "a/b", "2026-11-01T10:00:00.123456789Z")  # Go's nanoseconds, as Distribution writes
    fresh = _upload(driver, "a/b", "2026-11-26T11:00:00Z")
    other = _upload(driver, "c", "2026-10-01T00:00:00Z")
    assert sorted(purge_uploads(driver, 7 * 24 * 3600, dry_run=True, now=NOW)) == sorted(
        [paths.upload_dir("a/b", old), paths.upload_dir("c", other)])
    assert driver.stat(paths.upload_data("a/b", old))  # dry run deleted nothing
    purge_uploads(driver, 7 * 24 * 3600, now=NOW)
    uploads = Uploads(Store(driver))
    assert uploads.size("a/b", fresh) == 0
    for gone in (("a/b", old), ("c", other)):
        try:
            uploads.size(*gone)
        except Exception as exc:
            assert type(exc).__name__ == "UploadUnknownError"
        else:
            raise AssertionError(f"{gone} survived purging")


def test_purging_an_empty_registry(driver):
    assert purge_uploads(checked(driver), 1.0, now=NOW) == []


def test_purging_lists_only_repositories_and_their_uploads(driver):
    """On a large registry the walk must not descend into _layers/_manifests (100,000 repositories
    cost 8 s and 240 MiB when it did)."""
    import falcon.testing

    from registry.app import create_app
    from registry.plugins import create_plugin_manager

    client = falcon.testing.TestClient(create_app({"storage": {driver.name: {}}}, create_plugin_manager(),
                                                  driver=driver))
    Pusher(client).image("team/app", "v1")
    old = _upload(checked(driver), "team/app", "2026-01-01T00:00:00Z")
    listed = []
    real_list = driver.list

    def recording_list(path):
        listed.append(path)
        return real_list(path)

    driver.list = recording_list  # a spy on a real driver, not a fake
    assert purge_uploads(checked(driver), 3600, now=NOW) == [paths.upload_dir("team/app", old)]
    assert listed and not [p for p in listed if "/_layers" in p or "/_manifests" in p]
