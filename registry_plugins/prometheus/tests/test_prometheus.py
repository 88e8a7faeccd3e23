"""The Prometheus plugin: a real ``registry serve`` whose ``/metrics`` moves with a push and a pull,
storage errors by driver and operation (the test-only faulty middleware), and multiprocess mode."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import registry_prometheus.plugin as prometheus_plugin
import requests
from prometheus_client.parser import text_string_to_metric_families

from registry.app import create_app
from registry.plugins import create_plugin_manager
from registry.storage.inmemory import InMemoryDriver
from tests import pushing
from tests.faulty import FaultyDriver
from tests.test_cli import Serving

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "PROMETHEUS_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"), **extra)
    return env


def _config(tmp_path: Path, root: Path, name: str = "config.yml", enabled: bool = True) -> str:
    path = tmp_path / name
    path.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        "http:\n  addr: 127.0.0.1:0\n  debug:\n    addr: 127.0.0.1:0\n"
        f"    prometheus:\n      enabled: {'true' if enabled else 'false'}\n      path: /metrics\n"
    )
    return str(path)


class Served:
    def __init__(self, config: str, env: dict[str, str]) -> None:
        self.server = Serving(config, env)
        self.url = "http://127.0.0.1:" + self.server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1)
        self.debug = "http://127.0.0.1:" + self.server.wait_for(r"debug listener on http://127\.0\.0\.1:(\d+)").group(1)

    def scrape(self) -> Samples:
        r = requests.get(self.debug + "/metrics", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        return parse(r.text)


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    s = Served(_config(tmp_path, tmp_path / "root"), _env(tmp_path))
    try:
        yield s
    finally:
        s.server.stop()


MANIFEST = "/v2/{name}/manifests/{reference}"
BLOB = "/v2/{name}/blobs/{digest}"
UPLOAD = "/v2/{name}/blobs/uploads/{reference}"


def test_a_push_and_a_pull_move_the_counters(served):
    before = served.scrape()
    layer = random.Random(14).randbytes(70_000)
    config = pushing.config_blob("metrics")
    with pushing.session() as s:
        pushing.push_blob(s, served.url, "metrics/repo", layer, form="chunked", chunk=30_000)
        pushing.push_blob(s, served.url, "metrics/repo", config, form="post_put")
        raw = pushing.manifest(config, [layer])
        pushing.put_manifest(s, served.url, "metrics/repo", "v1", raw)
        assert pushing.get_manifest(s, served.url, "metrics/repo", "v1").content == raw
        assert pushing.get_blob(s, served.url, "metrics/repo", pushing.digest(layer)).content == layer
        open_upload = s.post(f"{served.url}/v2/metrics/repo/blobs/uploads/", timeout=10)
        assert open_upload.status_code == 202
    after = served.scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("registry_http_requests_total", method="PUT", route=MANIFEST, code="201") == 1
    assert moved("registry_http_requests_total", method="GET", route=MANIFEST, code="200") == 1
    assert moved("registry_http_requests_total", method="PATCH", route=UPLOAD, code="202") == 3
    assert moved("registry_http_request_duration_seconds_count", method="GET", route=BLOB) == 1
    assert moved("registry_http_request_size_bytes_total", method="PATCH", route=UPLOAD) == len(layer)
    assert moved("registry_http_request_size_bytes_total", method="PUT", route=MANIFEST) == len(raw)
    assert moved("registry_http_response_size_bytes_total", method="GET", route=BLOB) == len(layer)
    assert moved("registry_http_response_size_bytes_total", method="GET", route=MANIFEST) == len(raw)
    assert moved("registry_storage_action_seconds_count", driver="filesystem", action="put_content") >= 1
    assert moved("registry_storage_action_seconds_count", driver="filesystem", action="stat") >= 1
    # Two sessions finished (PUT 201), one left open.
    assert value(after, "registry_uploads_in_progress") == value(before, "registry_uploads_in_progress") + 1
    # The scrapes themselves are not API requests.
    assert not any(dict(labels).get("route") == "metrics" for _, labels in after)


def test_disabled_serves_no_metrics_page(tmp_path):
    s = Served(_config(tmp_path, tmp_path / "root", enabled=False), _env(tmp_path))
    try:
        assert requests.get(s.debug + "/metrics", timeout=10).status_code == 404
        assert requests.get(s.debug + "/debug/health", timeout=10).status_code == 200
    finally:
        s.server.stop()


def test_storage_errors_are_counted_by_driver_operation_and_type():
    cfg = {"version": "0.1", "storage": {"inmemory": None},
           "http": {"debug": {"addr": "127.0.0.1:0", "prometheus": {"enabled": True}}}}
    driver = FaultyDriver(InMemoryDriver(), [{"op": "get_content", "path_contains": "/_manifests/tags/",
                                               "error": "unavailable"}])
    app = create_app(cfg, create_plugin_manager(), driver=driver)
    debug = falcon.testing.TestClient(app.debug_app)
    before = parse(debug.simulate_get("/metrics").text)
    r = falcon.testing.TestClient(app).simulate_get("/v2/some/repo/manifests/latest")
    assert r.status_code == 503 and r.json["errors"][0]["code"] == "UNAVAILABLE"
    after = parse(debug.simulate_get("/metrics").text)
    # A driver wrapped directly names itself "faulty".
    labels = {"driver": "faulty", "action": "get_content", "error": "StorageUnavailableError"}
    assert value(after, "registry_storage_errors_total", **labels) == value(
        before, "registry_storage_errors_total", **labels) + 1
    assert value(after, "registry_http_requests_total", method="GET", route=MANIFEST, code="503") >= 1


def test_several_processes_share_one_page_in_multiprocess_mode(tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = _env(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(shared))
    root = tmp_path / "root"
    a = Served(_config(tmp_path, root, "a.yml"), env)
    try:
        b = Served(_config(tmp_path, root, "b.yml"), env)
        try:
            for server, n in ((a, 2), (b, 3)):
                for _ in range(n):
                    assert requests.get(server.url + "/v2/", timeout=10).status_code == 200
            for server in (a, b):
                samples = server.scrape()
                assert value(samples, "registry_http_requests_total", method="GET", route="/v2/", code="200") == 5
        finally:
            b.server.stop()
    finally:
        a.server.stop()


def test_the_schema_is_declared_so_the_section_counts_as_acted_on():
    assert prometheus_plugin.registry_config_schemas() == {"http.debug.prometheus": prometheus_plugin.SCHEMA}


def test_installed_and_disabled_costs_requests_nothing():
    from registry.storage.checked import CheckedDriver

    pm = create_plugin_manager()
    enabled = {"version": "0.1", "storage": {"inmemory": None}, "http": {"debug": {"prometheus": {"enabled": True}}}}
    assert type(create_app(enabled, pm, driver=InMemoryDriver()).registry_context.store.driver) is not CheckedDriver
    assert pm.get_plugin(prometheus_plugin.RECORDER) is not None
    # The same plugin manager, a configuration without the metrics: the recorder is gone again.
    app = create_app({"version": "0.1", "storage": {"inmemory": None}}, pm, driver=InMemoryDriver())
    assert type(app.registry_context.store.driver) is CheckedDriver
    assert pm.get_plugin(prometheus_plugin.RECORDER) is None
    assert not pm.hook.registry_request_finished.get_hookimpls()


def test_notification_queues_show_on_the_page_when_webhooks_is_installed(tmp_path):
    """A real server with the webhooks plugin and an endpoint nobody listens on (a loopback port bound
    and closed): the pushes' events wait in its queue, and the page says how many."""
    pytest.importorskip("registry_webhooks")
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    config = _config(tmp_path, tmp_path / "root")
    with open(config, "a") as f:
        f.write("notifications:\n"
                f"  queue:\n    directory: {tmp_path / 'queue'}\n"
                f"  endpoints:\n    - name: dead\n      url: http://127.0.0.1:{dead}/events\n"
                "      timeout: 200ms\n      threshold: 1\n      backoff: 5s\n")
    s = Served(config, _env(tmp_path))
    try:
        with pushing.session() as session:
            for n in range(3):
                pushing.push_blob(session, s.url, "queued/repo", f"blob {n}".encode(), form="post_put")
        deadline, pending = time.monotonic() + 15, 0.0
        while time.monotonic() < deadline:
            samples = s.scrape()
            pending = value(samples, "registry_notifications_pending", endpoint="dead")
            if pending >= 3:
                break
            time.sleep(0.2)
        assert pending >= 3, pending
        assert value(samples, "registry_notifications_delivered_total", endpoint="dead") == 0
        assert value(samples, "registry_notifications_queue_bytes", endpoint="dead") > 0
    finally:
        s.server.stop()
