"""The access log (``log.accesslog``), the ``log.formatter`` formats and plugins' log lines."""

from __future__ import annotations

import json
import logging

import falcon.testing
import pytest
import requests

from registry import hookimpl
from registry.app import create_app
from registry.cli import _JsonFormatter, _LogstashFormatter, _TextFormatter
from registry.plugins import create_plugin_manager
from registry.storage.inmemory import InMemoryDriver
from tests.conftest import Pusher
from tests.test_cli import MINIMAL, Serving, env, write  # noqa: F401 - env is a fixture


def _client(**config):
    cfg = {"version": "0.1", "storage": {"inmemory": None}, **config}
    return falcon.testing.TestClient(create_app(cfg, create_plugin_manager(), driver=InMemoryDriver()))


def _access(caplog) -> list[dict]:
    return [r.access for r in caplog.records if r.name == "registry.access"]


def test_one_access_line_per_request_with_route_template_repository_and_sizes(caplog):
    caplog.set_level(logging.INFO, logger="registry.access")
    client = _client()
    digest, raw = Pusher(client).image("acc/repo", "v1", layers=(b"layer-access",))
    caplog.clear()
    r = client.simulate_get("/v2/acc/repo/manifests/v1", headers={
        "X-Request-Id": "req-1", "User-Agent": "ua/1 (test)", "Authorization": "Basic c2VjcmV0OnNlY3JldA=="})
    assert r.status_code == 200
    [line] = _access(caplog)
    assert line["duration_ms"] >= 0
    del line["duration_ms"]
    assert line == {
        "method": "GET", "route": "/v2/{name}/manifests/{reference}", "repository": "acc/repo", "status": 200,
        "bytes_in": 0, "bytes_out": len(raw), "request_id": "req-1", "remote_addr": "127.0.0.1",
        "user_agent": "ua/1 (test)",
    }
    assert "c2VjcmV0" not in caplog.text and "Authorization" not in caplog.text

    caplog.clear()
    client.simulate_put("/v2/acc/repo/manifests/v2", body=raw,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    client.simulate_head("/v2/acc/repo/manifests/v1")
    client.simulate_get("/v2/BAD NAME/tags/list")
    put, head, bad = _access(caplog)
    assert (put["method"], put["status"], put["bytes_in"], put["bytes_out"]) == ("PUT", 201, len(raw), 0)
    assert (head["method"], head["status"], head["bytes_out"]) == ("HEAD", 200, 0)
    # An invalid name is not logged as a repository: it is the client's text, not a repository.
    assert bad["status"] == 400 and bad["repository"] is None and bad["route"] == "/v2/{name}/tags/list"


def test_accesslog_disabled_logs_nothing_and_still_sets_the_request_id(caplog):
    caplog.set_level(logging.INFO, logger="registry.access")
    client = _client(log={"accesslog": {"disabled": True}})
    r = client.simulate_get("/v2/")
    assert r.status_code == 200 and r.headers["X-Request-Id"]
    assert _access(caplog) == []


def test_request_finished_hears_bytes_in_and_out_without_an_access_log():
    heard = []

    class Plugin:
        @hookimpl
        def registry_request_finished(self, method, route, status, bytes_in, bytes_out):
            heard.append((method, route, status, bytes_in, bytes_out))

    pm = create_plugin_manager(plugins=[Plugin()])
    cfg = {"version": "0.1", "storage": {"inmemory": None}, "log": {"accesslog": {"disabled": True}}}
    client = falcon.testing.TestClient(create_app(cfg, pm, driver=InMemoryDriver()))
    bad = client.simulate_post("/v2/x/blobs/uploads/", params={"digest": "sha256:" + "0" * 64}, body=b"abc")
    client.simulate_get("/v2/")
    assert bad.status_code == 400 and len(bad.content) > 0
    assert heard == [("POST", "uploads", 400, 3, len(bad.content)), ("GET", "base", 200, 0, 2)]


def _record(name: str, msg: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


ACCESS = {"method": "GET", "route": "/v2/", "repository": None, "status": 200, "user_agent": 'evil"\nua x=1'}


def test_text_lines_quote_what_could_forge_a_field_or_a_line():
    line = _TextFormatter({"env": "prod"}).format(_record("registry.access", "GET /v2/ 200", access=ACCESS))
    assert "\n" not in line
    assert line.endswith(" GET /v2/ 200" + ' user_agent="evil\\"\\nua x=1" env=prod')
    assert "repository" not in line


@pytest.mark.parametrize("formatter", [_JsonFormatter, _LogstashFormatter])
def test_json_and_logstash_lines_carry_the_access_fields_and_the_plugin(formatter):
    entry = json.loads(formatter({"env": "prod"}).format(_record("registry.access", "GET /v2/ 200", access=ACCESS)))
    assert entry["status"] == 200 and entry["user_agent"] == ACCESS["user_agent"] and entry["env"] == "prod"
    assert "repository" not in entry
    plugin = json.loads(formatter({}).format(_record("registry_prometheus.plugin", "hello")))
    assert plugin["plugin"] == "prometheus"
    if formatter is _LogstashFormatter:
        assert plugin["@version"] == "1" and plugin["message"] == "hello" and "@timestamp" in plugin
    else:
        assert plugin["msg"] == "hello" and "time" in plugin


def test_text_plugin_lines_name_the_plugin_and_core_lines_do_not():
    assert _TextFormatter({}).format(_record("registry_bugsnag", "sent")).endswith("registry_bugsnag: sent plugin=bugsnag")
    assert "plugin=" not in _TextFormatter({}).format(_record("registry.app", "hi"))


@pytest.mark.parametrize("kind", ["json", "logstash"])
def test_a_served_request_is_logged_once_in_the_configured_format(tmp_path, env, kind):  # noqa: F811
    config = write(tmp_path, MINIMAL + f"log:\n  formatter: {kind}\n  fields:\n    service: reg\n"
                   "http:\n  addr: 127.0.0.1:0\n")
    server = Serving(config, env)
    try:
        port = int(server.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        r = requests.get(f"http://127.0.0.1:{port}/v2/no/such/manifests/latest", timeout=10,
                         headers={"Authorization": "Bearer top-secret-token", "User-Agent": "served/1"})
        assert r.status_code == 404
        match = server.wait_for(r'^\{.*"route": "/v2/\{name\}/manifests/\{reference\}".*\}$')
        entry = json.loads(match.group(0))
        assert entry["request_id"] == r.headers["X-Request-Id"]
        assert (entry["status"], entry["repository"], entry["user_agent"], entry["service"]) == (
            404, "no/such", "served/1", "reg")
        assert entry["logger"] == "registry.access"
        assert "top-secret-token" not in "".join(server.seen)
    finally:
        server.stop()


def test_text_time_is_the_standard_one_for_every_line():
    text, standard = _TextFormatter({}), logging.Formatter()
    for created in (1_700_000_000.0, 1_700_000_000.5, 1_700_000_001.25, 1_700_000_000.999):
        record = _record("registry.access", "x", access={})
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert text.formatTime(record) == standard.formatTime(record)


def test_access_records_format_with_any_standard_formatter(caplog):
    caplog.set_level(logging.INFO, logger="registry.access")
    _client().simulate_get("/v2/")
    [record] = [r for r in caplog.records if r.name == "registry.access"]
    every = logging.Formatter("%(asctime)s %(created)f %(relativeCreated)d %(msecs)d %(levelname)s %(levelno)s "
                              "%(name)s %(pathname)s %(filename)s %(module)s %(funcName)s %(lineno)d %(thread)d "
                              "%(threadName)s %(process)d %(processName)s %(message)s")
    assert every.format(record).endswith("GET /v2/ 200")


def test_a_level_above_info_writes_no_access_line(caplog):
    caplog.set_level(logging.WARNING, logger="registry.access")
    _client().simulate_get("/v2/")
    assert _access(caplog) == []
