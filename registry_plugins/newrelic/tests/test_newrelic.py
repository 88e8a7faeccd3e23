"""The New Relic plugin with the real agent, offline: ``NEW_RELIC_DEVELOPER_MODE`` makes the agent
talk to its built-in fake collector, and its audit log (``NEW_RELIC_AUDIT_LOG``) holds every
payload it would have sent; the test reads the recorded transactions and errors from there.

The agent is process-global and instruments modules as they are imported, so the registry runs in a
subprocess (``served_app.py``), never in the test process."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SERVED = Path(__file__).with_name("served_app.py")
SECRET = "c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3N3b3Jk"


def payloads(audit_log: str) -> dict[str, list[Any]]:
    """Each collector method's payloads, from the audit log (pretty-printed Python literals)."""
    found: dict[str, list[Any]] = {}
    for record in re.split(r"\n=+\n", audit_log):
        params = re.search(r"^PARAMS: (\{.*\})$", record, re.M)
        data = re.search(r"^DATA: (.*)", record, re.M | re.S)
        if params and data:
            method = ast.literal_eval(params.group(1))["method"]
            found.setdefault(method, []).append(ast.literal_eval(data.group(1).strip()))
    return found


def test_transactions_are_named_by_route_and_500s_recorded(tmp_path):
    audit = tmp_path / "audit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "NEW_RELIC_"))}
    env.update(NEW_RELIC_DEVELOPER_MODE="true", NEW_RELIC_AUDIT_LOG=str(audit), NEW_RELIC_STARTUP_TIMEOUT="10",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), SERVED_SECRET=SECRET)
    r = subprocess.run([sys.executable, str(SERVED)], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert (seen["base"], seen["missing"], seen["broken"]) == (200, 404, 500)
    assert seen["broken_body"]["errors"][0]["code"] == "UNKNOWN"  # the client still gets the OCI error
    sent = payloads(audit.read_text())

    [_, _, _, metrics] = sent["metric_data"][-1]
    names = {spec["name"] for spec, _ in metrics}
    assert {"WebTransaction/Registry/GET /v2/", "WebTransaction/Registry/GET /v2/{name}/manifests/{reference}"} <= names

    # One error: the 500 (the 404 is the client's, not recorded), in the route's transaction.
    [[_, errors]] = sent["error_data"]
    assert [(e[1], e[3]) for e in errors] == [
        ("WebTransaction/Registry/GET /v2/{name}/manifests/{reference}", "registry.storage.driver:StorageError")]
    [error] = errors
    assert "injected fault" in error[2]
    assert error[4]["userAttributes"] == {"request.id": seen["broken_id"]}
    assert error[4]["agentAttributes"]["http.statusCode"] == 500
    assert SECRET not in audit.read_text()


def test_without_a_licensekey_the_agent_is_not_started_and_nothing_is_wrapped():
    import registry_newrelic.plugin as plugin

    from registry.plugins import create_plugin_manager

    pm = create_plugin_manager()
    plugin.registry_configure({"version": "0.1", "reporting": {"newrelic": {"name": "x"}}}, pm)
    assert plugin.registry_wsgi_middleware(object()) is None
    assert pm.get_plugin(plugin.NAMING) is None  # no per-request hook
    assert plugin.registry_config_schemas() == {"reporting.newrelic": plugin.SCHEMA}


def test_the_clients_errors_are_ignored_and_the_500s_are_not():
    import registry_newrelic.plugin as plugin

    names = plugin.client_error_classes()
    assert "registry.errors:ManifestUnknown" in names and "falcon.errors:HTTPNotFound" in names
    assert "registry.errors:InternalError" not in names and "registry.errors:Unavailable" not in names
