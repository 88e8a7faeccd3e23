"""``registry scrub``: a blob whose stored content no longer matches its digest is found (on every
driver, in-process), and with ``--quarantine`` moved aside so it is no longer served; the command
exits 3 while something is bad and 0 once the storage is clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from registry.app import create_app
from registry.digests import parse_digest
from registry.ops.scrub import READ_SIZE, scrub
from registry.plugins import by_name, create_plugin_manager
from registry.storage import paths
from registry.storage.checked import checked
from registry.storage.store import Store
from tests.conftest import Pusher, sha256

SCRIPT = Path(sys.executable).with_name("registry")


def test_a_corrupted_blob_is_found_and_quarantined(client, pusher, driver):
    big = os.urandom(3 * READ_SIZE + 17)  # hashed in several reads
    d, raw = pusher.image("lib/x", "v1", layers=(big, b"small layer"))
    store = Store(checked(driver))
    clean = scrub(store)
    assert not clean.bad and clean.blobs == 4 and clean.revisions == 1
    assert clean.bytes == len(big) + len(b"small layer") + len(raw) + store.blob_size(
        parse_digest(json.loads(raw)["config"]["digest"]))

    layer = parse_digest(sha256(b"small layer"))
    checked(driver).put_content(paths.blob_data(layer), b"small layes")  # one flipped byte, same size
    found = scrub(store)
    assert found.bad and [c.split(":")[0:2] for c in found.corrupt] == [str(layer).split(":")]
    assert found.quarantined == []
    assert client.simulate_get(f"/v2/lib/x/blobs/{layer}").status_code == 200  # still served

    fixed = scrub(store, quarantine=True)
    assert fixed.quarantined == [str(layer)]
    assert client.simulate_get(f"/v2/lib/x/blobs/{layer}").status_code == 404
    assert checked(driver).get_content(paths.quarantine_blob(layer)) == b"small layes"
    assert not scrub(store).bad
    # A client pushing the blob again stores a good copy.
    pusher.blob("lib/x", b"small layer")
    assert client.simulate_get(f"/v2/lib/x/blobs/{layer}").content == b"small layer"


def test_a_corrupted_manifest_breaks_its_revision(client, pusher, driver):
    d, raw = pusher.image("lib/x", "v1")
    checked(driver).put_content(paths.blob_data(parse_digest(d)), raw + b"\n")
    result = scrub(Store(checked(driver)))
    assert len(result.corrupt) == 1 and result.corrupt[0].startswith(d)
    assert result.broken == [f"lib/x@{d}: the manifest blob is corrupt"]


def test_the_command_on_a_corrupted_blob_file(tmp_path):
    """The fault is made on disk, as a failing disk would: the filesystem driver's blob file."""
    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(root)})
    client = falcon.testing.TestClient(create_app({"storage": {"filesystem": {}}}, pm, driver=driver))
    Pusher(client).image("lib/x", "v1", layers=(b"layer one", b"layer two"))
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"version": 0.1, "log": {"level": "error"},
                                  "storage": {"filesystem": {"rootdirectory": str(root)}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), "scrub", *args, str(config)], capture_output=True, text=True,
                              timeout=60, env=env)

    r = run()
    assert r.returncode == 0, r.stderr
    assert "4 blobs" in r.stdout and "0 corrupt blobs" in r.stdout
    bad = sha256(b"layer two")
    blob_file = root / paths.blob_data(parse_digest(bad)).lstrip("/")
    with open(blob_file, "r+b") as f:
        f.seek(3)
        f.write(b"X")
    r = run()
    assert r.returncode == 3
    assert f"corrupt blob {bad}: content hashes to" in r.stderr
    r = run("--quarantine", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["quarantined"] == [bad]
    assert not blob_file.exists()
    assert (root / paths.quarantine_blob(parse_digest(bad)).lstrip("/")).exists()
    assert client.simulate_get(f"/v2/lib/x/blobs/{bad}").status_code == 404
    r = run()
    assert r.returncode == 0, r.stderr
