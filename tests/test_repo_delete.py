"""Repository delete: ``DELETE /v2/_repositories/<name>`` (with the ``delete`` action, only with
``storage.delete.enabled``) and ``registry delete-repository``. Afterwards the catalog no longer
lists the repository, its tags and manifests are gone, nested repositories stay, and the blobs are
left for garbage collection."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import falcon.testing
import pytest

from registry.app import create_app
from registry.digests import parse_digest
from registry.ops.gc import collect_garbage
from registry.plugins import by_name, create_plugin_manager
from registry.storage.checked import checked
from registry.storage.store import Store
from tests.conftest import Pusher, sha256

SCRIPT = Path(sys.executable).with_name("registry")
LATER = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


def catalog(client) -> list[str]:
    return client.simulate_get("/v2/_catalog").json["repositories"]


def test_delete_repository_through_the_api(client, pusher, driver, events):
    sig_subject = pusher.image("team/app", "v1", layers=(b"app layer",))
    pusher.image("team/app", "v2", layers=(b"app layer 2",))
    pusher.image("team/app", None, layers=(b"untagged",))
    pusher.image("team/app", None, layers=(b"sig",), extra={
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sig_subject[0],
                    "size": len(sig_subject[1])}})
    nested, _ = pusher.image("team/app/nested", "v1", layers=(b"nested layer",))
    pusher.image("team/other", "v1", layers=(b"app layer",))  # shares a blob
    client.simulate_post("/v2/team/app/blobs/uploads/")  # an upload in progress goes too
    assert catalog(client) == ["team/app", "team/app/nested", "team/other"]

    r = client.simulate_delete("/v2/_repositories/team/app")
    assert r.status_code == 202, r.text
    assert r.json == {"name": "team/app", "tags": 2, "manifests": 4, "layers": 5}
    deletes = [e["target"] for e in events.of("delete")]
    assert {t["repository"] for t in deletes} == {"team/app"}
    assert sorted(t["tag"] for t in deletes if "tag" in t) == ["v1", "v2"]
    assert len([t for t in deletes if "digest" in t]) == 4
    assert catalog(client) == ["team/app/nested", "team/other"]
    r = client.simulate_get("/v2/team/app/tags/list")
    assert r.status_code == 404 and r.json["errors"][0]["code"] == "NAME_UNKNOWN"
    for ref in ("v1", sig_subject[0]):
        assert client.simulate_get(f"/v2/team/app/manifests/{ref}").status_code == 404
    assert client.simulate_get(f"/v2/team/app/blobs/{sha256(b'app layer')}").status_code == 404
    assert client.simulate_get(f"/v2/team/app/referrers/{sig_subject[0]}").json["manifests"] == []
    # Nested and sharing repositories are untouched.
    assert client.simulate_get(f"/v2/team/app/nested/manifests/{nested}").status_code == 200
    assert client.simulate_get(f"/v2/team/other/blobs/{sha256(b'app layer')}").status_code == 200
    # Deleting it again: it is unknown now.
    r = client.simulate_delete("/v2/_repositories/team/app")
    assert r.status_code == 404 and r.json["errors"][0]["code"] == "NAME_UNKNOWN"
    # The blobs were left to garbage collection, which frees those nobody else uses.
    store = Store(checked(driver))
    assert store.blob_size(parse_digest(sha256(b"app layer 2"))) is not None
    collect_garbage(store, now=LATER, grace=0, settle=0)
    assert store.blob_size(parse_digest(sha256(b"app layer 2"))) is None
    assert store.blob_size(parse_digest(sha256(b"app layer"))) is not None
    # The name can be pushed to again.
    pusher.image("team/app", "v1", layers=(b"again",))
    assert "team/app" in catalog(client)


def test_deletes_disabled(make_client, driver):
    client = make_client(delete=False)
    Pusher(client).image("lib/x", "v1")
    r = client.simulate_delete("/v2/_repositories/lib/x")
    assert r.status_code == 405 and r.json["errors"][0]["code"] == "UNSUPPORTED"
    assert catalog(client) == ["lib/x"]


def test_bad_and_unknown_names(client):
    r = client.simulate_delete("/v2/_repositories/Bad/Name")
    assert r.status_code == 400 and r.json["errors"][0]["code"] == "NAME_INVALID"
    r = client.simulate_delete("/v2/_repositories/nobody/here")
    assert r.status_code == 404 and r.json["errors"][0]["code"] == "NAME_UNKNOWN"
    r = client.simulate_get("/v2/_repositories/lib/x")
    assert r.status_code == 405


def test_deleting_every_manifest_keeps_the_repository_listed_as_distribution_does(client, pusher):
    """Distribution's catalog lists a repository while its ``_layers`` exists, and manifest deletes
    leave it; only a repository delete removes the repository from the catalog."""
    d, _ = pusher.image("lib/x", "v1")
    assert client.simulate_delete(f"/v2/lib/x/manifests/{d}").status_code == 202
    assert catalog(client) == ["lib/x"]
    assert client.simulate_get("/v2/lib/x/tags/list").json["tags"] == []
    assert client.simulate_delete("/v2/_repositories/lib/x").status_code == 202
    assert catalog(client) == []


# -- with the htpasswd access controller -------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def htpasswd_client(tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    pytest.importorskip("registry_htpasswd")
    pw = tmp_path / "htpasswd"
    pw.write_text("".join(f"{u}:{bcrypt.hashpw(f'{u}-pw'.encode(), bcrypt.gensalt(4)).decode()}\n"
                          for u in ("alice", "bob")))
    rules = tmp_path / "access.yml"
    rules.write_text('rules:\n  - repositories: ["team/**"]\n    users: {alice: ["*"], bob: [pull, push]}\n'
                     "catalog:\n  users: [alice]\n")
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(tmp_path / "root")})
    config = {"version": 0.1, "storage": {"filesystem": {}, "delete": {"enabled": True}},
              "auth": {"htpasswd": {"realm": "test-realm", "path": str(pw), "rules": str(rules)}}}
    return falcon.testing.TestClient(create_app(config, pm, driver=driver))


def test_the_api_needs_the_delete_action(htpasswd_client):
    c = htpasswd_client
    bob = _basic("bob", "bob-pw")
    c.simulate_post = _with_headers(c.simulate_post, bob)  # Pusher sends no headers of its own
    c.simulate_put = _with_headers(c.simulate_put, bob)
    Pusher(c).image("team/app", "v1")
    r = c.simulate_delete("/v2/_repositories/team/app")
    assert r.status_code == 401 and r.json["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = c.simulate_delete("/v2/_repositories/team/app", headers=bob)
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    alice = _basic("alice", "alice-pw")
    assert c.simulate_get("/v2/_catalog", headers=alice).json["repositories"] == ["team/app"]
    r = c.simulate_delete("/v2/_repositories/team/app", headers=alice)
    assert r.status_code == 202, r.text
    assert c.simulate_get("/v2/_catalog", headers=alice).json["repositories"] == []


def _with_headers(method, headers):
    def call(*args, **kwargs):
        kwargs["headers"] = {**headers, **(kwargs.get("headers") or {})}
        return method(*args, **kwargs)

    return call


# -- the command ---------------------------------------------------------------------------------


def _config(tmp_path: Path, root: Path, delete: bool = True) -> Path:
    path = tmp_path / f"config-{delete}.yml"
    path.write_text(json.dumps({"version": 0.1, "log": {"level": "warn"},
                                "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": delete}}}))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_command(tmp_path):
    pytest.importorskip("registry_filesystem")
    root = tmp_path / "root"
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["filesystem"].factory({"rootdirectory": str(root)})
    client = falcon.testing.TestClient(create_app({"storage": {"filesystem": {}}}, pm, driver=driver))
    Pusher(client).image("lib/x", "v1")
    Pusher(client).image("lib/y", "v1")

    r = _run("delete-repository", "lib/x", str(_config(tmp_path, root, delete=False)))
    assert r.returncode == 1 and "storage.delete.enabled" in r.stderr
    r = _run("delete-repository", "lib/x", str(_config(tmp_path, root)))
    assert r.returncode == 0, r.stderr
    assert "deleted repository lib/x: 1 tags, 1 manifests, 2 layer links" in r.stdout
    assert catalog(client) == ["lib/y"]
    r = _run("delete-repository", "lib/x", str(_config(tmp_path, root)))
    assert r.returncode == 3 and "not known" in r.stderr
    r = _run("delete-repository", "../etc", str(_config(tmp_path, root)))
    assert r.returncode == 2 and "not a valid repository name" in r.stderr
