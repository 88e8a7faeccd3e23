"""The core's side of access control: challenges from controllers and from registry_authorize, the
access each request needs (the mount's source included), and http.tls refusing to start."""

from __future__ import annotations

import falcon.testing

from registry import hookimpl
from registry.app import create_app
from registry.auth import Access, AccessController, AuthDescriptor, AuthenticationRequired, Grant, scope_param
from registry.authheaders import parse_challenge
from registry.plugins import create_plugin_manager
from tests.conftest import sha256


class Recording(AccessController):
    """Anonymous requests get a Bearer challenge naming what they need; ``Bearer ok`` gets in."""

    def __init__(self, params):
        self.seen: list[list[Access]] = []

    def challenge(self, request, access):
        return AuthenticationRequired("Bearer", {"realm": "https://auth.test/token", "service": "test",
                                                 "scope": scope_param(access)}, access=access)

    def authorize(self, request, access):
        self.seen.append(list(access))
        if request.get_header("Authorization") != "Bearer ok":
            raise self.challenge(request, access)
        return Grant("tester")


def make(driver, *plugins):
    controllers = []

    class Backend:
        @hookimpl
        def registry_auth_backends(self):
            def factory(params):
                controllers.append(Recording(params))
                return controllers[-1]
            return [AuthDescriptor("recording", factory)]

    pm = create_plugin_manager(plugins=[Backend(), *plugins])
    config = {"storage": {driver.name: {}, "delete": {"enabled": True}}, "auth": {"recording": {}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=driver))
    return client, controllers[0]


OK = {"Authorization": "Bearer ok"}


def test_every_request_names_what_it_needs(driver):
    client, ctrl = make(driver)
    d = sha256(b"x")
    cases = [
        ("GET", "/v2/", []),
        ("GET", "/v2/_catalog", [Access("registry", "catalog", "*")]),
        ("GET", "/v2/a/b/tags/list", [Access("repository", "a/b", "pull")]),
        ("HEAD", f"/v2/a/b/blobs/{d}", [Access("repository", "a/b", "pull")]),
        ("GET", "/v2/a/b/manifests/latest", [Access("repository", "a/b", "pull")]),
        ("PUT", "/v2/a/b/manifests/latest", [Access("repository", "a/b", "pull"), Access("repository", "a/b", "push")]),
        ("POST", "/v2/a/b/blobs/uploads/", [Access("repository", "a/b", "pull"), Access("repository", "a/b", "push")]),
        ("DELETE", f"/v2/a/b/blobs/{d}", [Access("repository", "a/b", "delete")]),
        ("DELETE", f"/v2/a/b/manifests/{d}", [Access("repository", "a/b", "delete")]),
    ]
    for method, path, needed in cases:
        ctrl.seen.clear()
        r = client.simulate_request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert ctrl.seen[0] == needed, (method, path)
        scheme, params = parse_challenge(r.headers["WWW-Authenticate"])
        assert scheme == "Bearer" and params.get("scope", "") == scope_param(needed)
        if method != "HEAD":
            assert r.json["errors"][0]["code"] == "UNAUTHORIZED"


def test_mount_challenge_names_the_source_scope(driver):
    client, _ = make(driver)
    r = client.simulate_post("/v2/dst/blobs/uploads/", params={"mount": sha256(b"x"), "from": "src/repo"})
    assert r.status_code == 401
    _, params = parse_challenge(r.headers["WWW-Authenticate"])
    assert params["scope"] == "repository:dst:pull,push repository:src/repo:pull"


def test_mount_source_refused_falls_back_to_upload(driver):
    class NoSource:
        @hookimpl
        def registry_authorize(self, request, identity, access):
            return False if any(a.name == "src" for a in access) else None

    client, _ = make(driver, NoSource())
    data = b"layer"
    assert client.simulate_post("/v2/src/blobs/uploads/", params={"digest": sha256(data)}, body=data,
                                headers=OK).status_code == 403
    client2, _ = make(driver)
    assert client2.simulate_post("/v2/src/blobs/uploads/", params={"digest": sha256(data)}, body=data,
                                 headers=OK).status_code == 201
    r = client.simulate_post("/v2/dst/blobs/uploads/", params={"mount": sha256(data), "from": "src"}, headers=OK)
    assert r.status_code == 202  # an upload session, not a mount of what dst may not read
    r = client2.simulate_post("/v2/dst/blobs/uploads/", params={"mount": sha256(data), "from": "src"}, headers=OK)
    assert r.status_code == 201


def test_registry_authorize_can_challenge(driver):
    class Challenger:
        @hookimpl
        def registry_authorize(self, request, identity, access):
            if any(a.name == "guarded" for a in access):
                raise AuthenticationRequired("Basic", {"realm": "plugin"}, access=access)
            return None

    client, _ = make(driver, Challenger())
    r = client.simulate_get("/v2/guarded/tags/list", headers=OK)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="plugin"'
    assert r.json["errors"][0]["detail"] == [{"Type": "repository", "Name": "guarded", "Action": "pull"}]
    assert client.simulate_get("/v2/other/tags/list", headers=OK).status_code == 404


def test_anonymous_vetoed_by_a_plugin_is_asked_to_log_in(driver):
    class AllowAnonymous(AccessController):
        def authorize(self, request, access):
            return Grant()

        def challenge(self, request, access):
            return AuthenticationRequired("Basic", {"realm": "r"}, access=access)

    class Backend:
        @hookimpl
        def registry_auth_backends(self):
            return [AuthDescriptor("anon", lambda params: AllowAnonymous())]

    class Veto:
        @hookimpl
        def registry_authorize(self, identity, access):
            return False if access else None

    pm = create_plugin_manager(plugins=[Backend(), Veto()])
    config = {"storage": {driver.name: {}}, "auth": {"anon": {}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=driver))
    r = client.simulate_get("/v2/x/tags/list")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="r"'
    assert client.simulate_get("/v2/").status_code == 200


def test_scope_param_groups_actions_per_resource():
    access = [Access("repository", "a", "pull"), Access("repository", "a", "push"),
              Access("repository", "b", "pull"), Access("registry", "catalog", "*"), Access("repository", "a", "pull")]
    assert scope_param(access) == "repository:a:pull,push repository:b:pull registry:catalog:*"
