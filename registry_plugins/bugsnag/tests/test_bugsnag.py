"""End to end: a real server whose storage has a bug (the test-only faulty middleware, error ``bug``)
answers a 500 with the OCI error JSON, and bugsnag's real client delivers the event to a local
receiver set as ``reporting.bugsnag.endpoint``."""

from __future__ import annotations

import http.server
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import registry_bugsnag.plugin as bugsnag_plugin
import requests

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.serve import Server
from registry.storage.inmemory import InMemoryDriver
from tests.faulty import FaultyDriver

API_KEY = "0123456789abcdef0123456789abcdef"
SECRET = "c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk"


class Receiver:
    """A threaded HTTP server on loopback keeping every POST: the stand-in for Bugsnag's API."""

    def __init__(self) -> None:
        self.posts: queue.Queue[tuple[str, dict[str, str], bytes]] = queue.Queue()
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.put((self.path, dict(self.headers), body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 15) -> tuple[str, dict[str, str], bytes]:
        return self.posts.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def served(receiver) -> Iterator[str]:
    config = {"version": "0.1", "storage": {"inmemory": None}, "http": {"addr": "127.0.0.1:0"},
              "reporting": {"bugsnag": {"apikey": API_KEY, "releasestage": "test", "endpoint": receiver.url}}}
    driver = FaultyDriver(InMemoryDriver(), [{"op": "get_content", "path_contains": "/_manifests/tags/",
                                               "error": "bug"}])
    app = create_app(config, create_plugin_manager(), driver=driver)
    server = Server(app, config)
    port = int(server.addresses[0].rsplit(":", 1)[1])
    thread = threading.Thread(target=server.run, daemon=True)
    with app:
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()
            thread.join(10)


def test_a_500_is_reported_with_the_request_context_and_no_credentials(served, receiver):
    r = requests.get(f"{served}/v2/team/app/manifests/latest?token={SECRET}", timeout=10,
                     headers={"Authorization": f"Basic {SECRET}", "X-Request-Id": "bug-1",
                              "Cookie": f"session={SECRET}"})
    assert r.status_code == 500
    [error] = r.json()["errors"]
    assert error["code"] == "UNKNOWN" and "injected" not in json.dumps(error)  # no internals to the client
    assert r.headers["Content-Type"] == "application/json" and r.headers["X-Request-Id"] == "bug-1"

    path, headers, body = receiver.next()
    assert headers["Bugsnag-Api-Key"] == API_KEY
    payload = json.loads(body)
    [event] = payload["events"]
    assert event["context"] == "GET /v2/{name}/manifests/{reference}"
    assert event["unhandled"] is True and event["severity"] == "error"
    assert event["releaseStage"] == "test"
    # The core's StorageError, then what it wraps: the driver's bug.
    classes = [e["errorClass"] for e in event["exceptions"]]
    assert classes[0] == "registry.storage.driver.StorageError" and "tests.faulty.DriverBug" in classes
    assert "injected fault" in event["exceptions"][0]["message"]
    assert event["metaData"]["request"] == {
        "method": "GET", "route": "/v2/{name}/manifests/{reference}", "path": "/v2/team/app/manifests/latest",
        "repository": "team/app", "requestId": "bug-1"}
    assert SECRET not in body.decode() and "Authorization" not in body.decode()


def test_errors_the_client_caused_are_not_reported(served, receiver):
    assert requests.get(f"{served}/v2/team/app/blobs/sha256:{'0' * 64}", timeout=10).status_code == 404
    assert requests.get(f"{served}/v2/BAD/tags/list", timeout=10).status_code == 400
    # Then a 500, which is reported: the one event the receiver gets is that one.
    assert requests.get(f"{served}/v2/team/app/manifests/latest", timeout=10).status_code == 500
    _, _, body = receiver.next()
    assert json.loads(body)["events"][0]["metaData"]["request"]["route"] == "/v2/{name}/manifests/{reference}"
    with pytest.raises(queue.Empty):
        receiver.next(timeout=0.5)


def test_without_an_apikey_nothing_is_configured():
    bugsnag_plugin.registry_configure(config={"version": "0.1", "reporting": {"bugsnag": {"releasestage": "x"}}})
    assert bugsnag_plugin._client is None
    assert bugsnag_plugin.registry_config_schemas() == {"reporting.bugsnag": bugsnag_plugin.SCHEMA}
