"""Run by test_newrelic.py in a subprocess (the agent is process-global and instruments what is
imported after it): serve the registry with ``reporting.newrelic`` over a storage driver whose tag
``broken`` has a bug (the test-only faulty middleware), make a few requests, shut down (the agent's
last harvest) and print the responses' request ids as JSON."""

from __future__ import annotations

import json
import os
import sys
import threading

import requests

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.serve import Server
from registry.storage.inmemory import InMemoryDriver
from tests.faulty import FaultyDriver


def main() -> None:
    config = {"version": "0.1", "storage": {"inmemory": None}, "http": {"addr": "127.0.0.1:0"},
              "reporting": {"newrelic": {"licensekey": "0" * 40, "name": "registry-test", "verbose": False}}}
    driver = FaultyDriver(InMemoryDriver(), [{"op": "get_content", "path_contains": "/_manifests/tags/broken/",
                                               "error": "bug"}])
    app = create_app(config, create_plugin_manager(), driver=driver)
    server = Server(app, config)
    base = "http://127.0.0.1:" + server.addresses[0].rsplit(":", 1)[1]
    thread = threading.Thread(target=server.run, daemon=True)
    out = {}
    with app:
        thread.start()
        try:
            with requests.Session() as s:
                out["base"] = s.get(f"{base}/v2/", timeout=10).status_code
                out["missing"] = s.get(f"{base}/v2/team/app/manifests/latest", timeout=10).status_code
                r = s.get(f"{base}/v2/team/app/manifests/broken", timeout=10,
                          headers={"Authorization": f"Basic {os.environ.get('SERVED_SECRET', '')}"})
                out["broken"] = r.status_code
                out["broken_body"] = r.json()
                out["broken_id"] = r.headers["X-Request-Id"]
        finally:
            server.stop()
            thread.join(10)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
