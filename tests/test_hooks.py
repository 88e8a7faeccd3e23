"""The plugin API: documented, and called the way hookspecs.py promises."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from registry import hookimpl, hookspecs
from registry.errors import Unauthorized
from registry.plugins import call_each, create_plugin_manager
from tests.conftest import Pusher

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("registry_")]


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert ":return:" in doc, f"{name} does not say what it returns"
    assert "thread" in doc.lower() or "called" in doc.lower(), f"{name} does not say when it is called"
    assert f"## `{name}`" in (ROOT / "docs" / "hooks.md").read_text()


def test_hook_reference_is_fresh():
    r = subprocess.run([sys.executable, str(ROOT / "contrib/dev/gen_hook_docs.py"), "--check"])
    assert r.returncode == 0, "docs/hooks.md is stale: run python contrib/dev/gen_hook_docs.py"


class Recorder:
    def __init__(self):
        self.events, self.finished, self.errors = [], [], []

    @hookimpl
    def registry_event(self, event):
        self.events.append(event)

    @hookimpl
    def registry_request_finished(self, method, route, status, duration):
        self.finished.append((method, route, status))

    @hookimpl
    def registry_report_exception(self, exc, request):
        self.errors.append(exc)


class Broken:
    """Fails in every event and report hook: must not stop the others nor the client's request."""

    @hookimpl
    def registry_event(self, event):
        raise RuntimeError("broken plugin")

    @hookimpl
    def registry_request_finished(self, method, route, status, duration):
        raise RuntimeError("broken plugin")


def test_events_reach_every_plugin_despite_a_broken_one(make_client):
    first, last = Recorder(), Recorder()
    client = make_client(plugins=[first, Broken(), last])
    d, _ = Pusher(client).image("ev/repo", "t1")
    assert client.simulate_get("/v2/ev/repo/manifests/t1").status_code == 200
    for rec in (first, last):
        pushes = [e for e in rec.events if e["action"] == "push" and e["target"].get("tag") == "t1"]
        assert len(pushes) == 1 and pushes[0]["target"]["digest"] == d
        assert pushes[0]["target"]["repository"] == "ev/repo"
        assert any(e["action"] == "pull" for e in rec.events)
        assert ("GET", "manifest", 200) in rec.finished


def test_unhandled_error_is_reported_and_answered_with_error_body(make_client):
    class BuggyPolicy:
        @hookimpl
        def registry_authorize(self, request, identity, access):
            raise ZeroDivisionError("boom")

    rec = Recorder()
    client = make_client(plugins=[rec, BuggyPolicy()])
    r = client.simulate_get("/v2/x/tags/list")
    assert r.status_code == 500
    assert r.json["errors"][0]["code"] == "UNKNOWN"
    assert "boom" not in r.text  # internals stay in the log
    assert len(rec.errors) == 1 and isinstance(rec.errors[0], ZeroDivisionError)


def test_authorize_hook_can_deny(make_client):
    class ReadOnly:
        @hookimpl
        def registry_authorize(self, request, identity, access):
            return False if any(a.action == "push" for a in access) else None

    client = make_client(plugins=[ReadOnly()])
    r = client.simulate_post("/v2/ro/blobs/uploads/")
    assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED"
    assert client.simulate_get("/v2/").status_code == 200


def test_access_controller_challenge(driver):
    """An auth backend declared through the hook is selected by its name in the config."""
    import falcon.testing

    from registry.app import create_app
    from registry.auth import AccessController, AuthDescriptor, Grant

    class Static(AccessController):
        def __init__(self, params):
            self.token = params["token"]

        def authorize(self, request, access):
            if request.get_header("Authorization") != f"Bearer {self.token}":
                raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="test"'})
            return Grant("tester")

    class Plugin:
        @hookimpl
        def registry_auth_backends(self):
            return [AuthDescriptor("static", Static)]

    pm = create_plugin_manager(plugins=[Plugin()])
    config = {"storage": {driver.name: {}}, "auth": {"static": {"token": "s3cret"}}}
    client = falcon.testing.TestClient(create_app(config, pm, driver=driver))
    r = client.simulate_get("/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="test"'
    assert r.json["errors"][0]["code"] == "UNAUTHORIZED"
    assert client.simulate_get("/v2/", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_call_each_passes_only_declared_arguments():
    seen = []

    class Partial:
        @hookimpl
        def registry_request_finished(self, status):
            seen.append(status)

    pm = create_plugin_manager(load_entry_points=False, plugins=[Partial()])
    call_each(pm, "registry_request_finished", method="GET", route="base", status=200, duration=0.1)
    assert seen == [200]


def test_no_global_plugin_manager():
    a, b = create_plugin_manager(load_entry_points=False), create_plugin_manager(load_entry_points=False)
    a.register(Recorder())
    assert not b.get_plugins()
    assert importlib.util.find_spec("registry.plugins") is not None
