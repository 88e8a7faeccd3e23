"""Request context: request ids, the Grant in registry_authorize and events, and complete events."""

from __future__ import annotations

import json
import uuid

import falcon.testing
import pytest

from registry import hookimpl
from registry.app import create_app
from registry.auth import AccessController, AuthDescriptor, Grant
from registry.errors import Unauthorized
from registry.plugins import create_plugin_manager
from registry.storage.driver import Capability
from registry.storage.inmemory import InMemoryDriver
from tests.conftest import Pusher, sha256
from tests.events import EventRecorder, event_errors


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/", "/v2/no/such/manifests/latest", "/v2/BAD/tags/list", "/nowhere"])
def test_every_response_carries_a_fresh_request_id(client, path):
    first = client.simulate_get(path).headers["X-Request-Id"]
    second = client.simulate_get(path).headers["X-Request-Id"]
    assert is_uuid(first) and is_uuid(second) and first != second


@pytest.mark.parametrize("incoming", ["abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "x" * 128, "a.b_c~d|e"])
def test_a_sane_incoming_request_id_is_kept(client, incoming):
    assert client.simulate_get("/v2/", headers={"X-Request-Id": incoming}).headers["X-Request-Id"] == incoming


@pytest.mark.parametrize("incoming", ["", "x" * 129, "has space", "quote\"d", "semi;colon", "é", "a,b"])
def test_an_odd_incoming_request_id_is_replaced(client, incoming):
    r = client.simulate_get("/v2/", headers={"X-Request-Id": incoming})
    assert is_uuid(r.headers["X-Request-Id"]) and r.headers["X-Request-Id"] != incoming


# --- events ---------------------------------------------------------------------------------------


def test_events_carry_the_request_and_target_url(make_client, events):
    client = make_client()
    d, raw = Pusher(client).image("ctx/repo", "v1", layers=(b"layer-ctx",))
    r = client.simulate_get("/v2/ctx/repo/manifests/v1", headers={"X-Request-Id": "pull-1", "User-Agent": "ua/1"})
    assert r.status_code == 200
    [pull] = [e for e in events.of("pull") if e["request"]["id"] == "pull-1"]
    assert pull["request"] == {"id": "pull-1", "addr": "127.0.0.1", "host": "falconframework.org",
                               "method": "GET", "useragent": "ua/1"}
    assert pull["target"]["url"] == f"http://falconframework.org/v2/ctx/repo/manifests/{d}"
    assert pull["target"]["tag"] == "v1" and pull["target"]["digest"] == d
    assert pull["actor"] == {}
    [push] = [e for e in events.of("push") if e["target"].get("tag") == "v1"]
    assert push["target"]["url"] == f"http://falconframework.org/v2/ctx/repo/manifests/{d}"
    blob_pushes = [e for e in events.of("push") if "/blobs/" in e["target"]["url"]]
    assert len(blob_pushes) == 2  # config and layer
    assert all(e["target"]["url"].endswith(f"/v2/ctx/repo/blobs/{e['target']['digest']}") for e in blob_pushes)
    # Every event of a request has the id its response carries.
    r = client.simulate_delete(f"/v2/ctx/repo/manifests/{d}")
    [delete] = events.of("delete")
    assert delete["request"]["id"] == r.headers["X-Request-Id"] and "url" not in delete["target"]


class Redirecting(InMemoryDriver):
    """The in-memory driver, sending blob pulls to another (loopback, never contacted) URL."""

    capabilities = InMemoryDriver.capabilities | Capability.REDIRECT

    def redirect_url(self, method, path):
        return f"http://127.0.0.1:9/cdn{path}" if method == "GET" else None


def test_a_redirected_blob_pull_is_an_event(events):
    pm = create_plugin_manager(plugins=[events])
    client = falcon.testing.TestClient(create_app({"storage": {"inmemory": {}}}, pm, driver=Redirecting()))
    d = Pusher(client).blob("redir/repo", b"redirected layer")
    r = client.simulate_get(f"/v2/redir/repo/blobs/{d}")
    assert r.status_code == 307 and r.headers["Location"].startswith("http://127.0.0.1:9/cdn/")
    [pull] = events.of("pull")
    assert pull["target"]["digest"] == d and pull["target"]["size"] == len(b"redirected layer")
    assert pull["target"]["url"] == f"http://falconframework.org/v2/redir/repo/blobs/{d}"
    assert pull["request"]["id"] == r.headers["X-Request-Id"]


def test_http_host_is_the_base_of_event_urls(events):
    pm = create_plugin_manager(plugins=[events])
    config = {"storage": {"inmemory": {}}, "http": {"host": "https://registry.example:8443/"}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=InMemoryDriver()))
    d = Pusher(client).blob("h/repo", b"hosted")
    [push] = events.of("push")
    assert push["target"]["url"] == f"https://registry.example:8443/v2/h/repo/blobs/{d}"


# --- the Grant -------------------------------------------------------------------------------------


class Tokens(AccessController):
    def __init__(self, params):
        pass

    def authorize(self, request, access):
        token = request.get_header("Authorization")
        if token is None:
            raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="test"'})
        user = token.removeprefix("Bearer ")
        return Grant(user, {"scopes": [a.scope for a in access], "team": "blue"})


class Auth:
    @hookimpl
    def registry_auth_backends(self):
        return [AuthDescriptor("tokens", Tokens)]


class SeesGrant:
    def __init__(self):
        self.grants = []

    @hookimpl
    def registry_authorize(self, request, identity, access, grant):
        self.grants.append((identity, grant))
        return False if grant.details.get("team") != "blue" or identity == "mallory" else None


def test_the_grant_reaches_registry_authorize_and_events():
    events, policy = EventRecorder(), SeesGrant()
    pm = create_plugin_manager(plugins=[Auth(), policy, events])
    config = {"storage": {"inmemory": {}}, "auth": {"tokens": {}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=InMemoryDriver()))
    alice = {"Authorization": "Bearer alice"}
    r = client.simulate_post("/v2/g/repo/blobs/uploads/", params={"digest": sha256(b"g")}, body=b"g", headers=alice)
    assert r.status_code == 201
    identity, grant = policy.grants[-1]
    assert identity == "alice" and grant.identity == "alice"
    assert grant.details["scopes"] == ["repository:g/repo:pull", "repository:g/repo:push"]
    [push] = events.of("push")
    assert push["actor"] == {"name": "alice"}
    sha = sha256(b"g")
    assert client.simulate_get(f"/v2/g/repo/blobs/{sha}", headers={"Authorization": "Bearer mallory"}).status_code == 403
    assert client.simulate_get(f"/v2/g/repo/blobs/{sha}", headers=alice).status_code == 200
    assert events.of("pull")[-1]["actor"] == {"name": "alice"}
    events.assert_valid()


def test_an_implementation_without_the_grant_argument_still_works(make_client):
    seen = []

    class Old:
        @hookimpl
        def registry_authorize(self, identity, access):
            seen.append(identity)

    assert make_client(plugins=[Old()]).simulate_get("/v2/").status_code == 200
    assert seen == [None]


# --- the event schema -----------------------------------------------------------------------------


def test_the_schema_refuses_an_incomplete_event(make_client, events):
    Pusher(make_client()).blob("s/repo", b"schema")
    [event] = events.events
    assert event_errors(event) == []
    broken = {**event, "request": {k: v for k, v in event["request"].items() if k != "id"}}
    assert any("'id' is a required property" in e for e in event_errors(broken))
    no_url = {**event, "target": {k: v for k, v in event["target"].items() if k != "url"}}
    assert any("'url' is a required property" in e for e in event_errors(no_url))
    assert event_errors({**event, "action": "upload"})


def test_a_mount_event_names_the_repository_the_blob_came_from(make_client, events):
    client = make_client()
    pusher = Pusher(client)
    d = pusher.blob("mount/source", b"mounted layer")
    r = client.simulate_post("/v2/mount/target/blobs/uploads/", params={"mount": d, "from": "mount/source"})
    assert r.status_code == 201, r.text
    [mount] = events.of("mount")
    assert mount["target"]["fromRepository"] == "mount/source"
    assert mount["target"]["repository"] == "mount/target" and mount["target"]["digest"] == d


class RedirectingUndeclared(InMemoryDriver):
    """Returns URLs but does not declare REDIRECT: the core must not ask it."""

    def redirect_url(self, method, path):
        raise AssertionError("asked for a redirect without declaring Capability.REDIRECT")


def test_a_driver_not_declaring_redirect_is_never_asked(events):
    pm = create_plugin_manager(plugins=[events])
    client = falcon.testing.TestClient(create_app({"storage": {"inmemory": {}}}, pm, driver=RedirectingUndeclared()))
    d = Pusher(client).blob("plain/repo", b"streamed")
    r = client.simulate_get(f"/v2/plain/repo/blobs/{d}")
    assert r.status_code == 200 and r.content == b"streamed"


# --- which operations emit, and only once committed -------------------------------------------------


def test_every_committed_operation_emits_one_event_and_a_refused_one_none(make_client, events):
    client = make_client()
    pusher = Pusher(client)
    d, raw = pusher.image("ops/repo", "v1", layers=(b"ops layer",))
    layer = sha256(b"ops layer")
    assert [(e["action"], "/manifests/" in e["target"]["url"]) for e in events.events] == [
        ("push", False), ("push", False), ("push", True)]
    events.events.clear()
    assert client.simulate_get(f"/v2/ops/repo/blobs/{layer}").status_code == 200
    assert client.simulate_get("/v2/ops/repo/manifests/v1").status_code == 200
    assert client.simulate_head("/v2/ops/repo/manifests/v1").status_code == 200  # HEAD is no pull
    r = client.simulate_post("/v2/ops/other/blobs/uploads/", params={"mount": layer, "from": "ops/repo"})
    assert r.status_code == 201
    assert client.simulate_delete("/v2/ops/repo/manifests/v1").status_code == 202
    assert client.simulate_delete(f"/v2/ops/repo/manifests/{d}").status_code == 202
    assert client.simulate_delete(f"/v2/ops/other/blobs/{layer}").status_code == 202
    assert [(e["action"], e["target"]["repository"], e["target"].get("digest") or e["target"]["tag"])
            for e in events.events] == [
        ("pull", "ops/repo", layer), ("pull", "ops/repo", d), ("mount", "ops/other", layer),
        ("delete", "ops/repo", "v1"), ("delete", "ops/repo", d), ("delete", "ops/other", layer)]
    events.events.clear()
    # Refused or failed operations commit nothing and say nothing.
    missing = sha256(b"never pushed")
    bad = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing, "size": 1},
                      "layers": []}).encode()
    r = client.simulate_put("/v2/ops/repo/manifests/v2", body=bad,
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 400
    assert client.simulate_delete("/v2/ops/repo/manifests/v1").status_code == 404
    assert client.simulate_delete(f"/v2/ops/repo/blobs/{missing}").status_code == 404
    assert client.simulate_get(f"/v2/ops/repo/blobs/{missing}").status_code == 404
    r = client.simulate_post("/v2/ops/repo/blobs/uploads/", params={"digest": sha256(b"x")}, body=b"y")
    assert r.status_code == 400
    assert events.events == []


@pytest.mark.parametrize("include", [True, False])
def test_includereferences_lists_a_manifests_descriptors(include):
    recorder = EventRecorder()
    config = {"version": 0.1, "storage": {"inmemory": {}},
              "notifications": {"events": {"includereferences": include}}}
    client = falcon.testing.TestClient(create_app(config, create_plugin_manager(plugins=[recorder]),
                                                  driver=InMemoryDriver()))
    d, raw = Pusher(client).image("refs/repo", "v1", layers=(b"ref layer 1", b"ref layer 2"))
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": d, "size": len(raw)}]}).encode()
    r = client.simulate_put("/v2/refs/repo/manifests/multi", body=index,
                            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201
    assert client.simulate_get("/v2/refs/repo/manifests/v1").status_code == 200
    recorder.assert_valid()
    pushed = [e for e in recorder.of("push") if "/manifests/" in e["target"]["url"]]
    [pulled] = recorder.of("pull")
    blob_events = [e for e in recorder.of("push") if "/blobs/" in e["target"]["url"]]
    if not include:
        assert not any("references" in e["target"] for e in recorder.events)
        return
    manifest = json.loads(raw)
    expected = [{k: x[k] for k in ("mediaType", "digest", "size")} for x in [manifest["config"], *manifest["layers"]]]
    assert pushed[0]["target"]["references"] == expected == pulled["target"]["references"]
    assert pushed[1]["target"]["references"] == [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(raw)}]
    assert not any("references" in e["target"] for e in blob_events)
