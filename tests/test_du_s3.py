"""``registry du``, ``--rebuild`` and quota counters on the s3 driver against moto's real S3 server
(started by contrib/dev/start-moto.sh, as the s3 plugin's own tests do): everything goes through the
driver API, nothing assumes a file system."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import falcon.testing
import pytest

pytest.importorskip("registry_s3")

_S3_TESTS = str(Path(__file__).resolve().parents[1] / "registry_plugins" / "s3" / "tests")
if _S3_TESTS not in sys.path:
    sys.path.insert(0, _S3_TESTS)

from s3_servers import S3Server, moto_server  # noqa: E402,F401  (a fixture, registered by import)

from registry.app import create_app  # noqa: E402
from registry.ops.quota import read_usage  # noqa: E402
from registry.ops.usage import disk_usage, rebuild_counters  # noqa: E402
from registry.plugins import create_plugin_manager  # noqa: E402
from registry.storage.store import Store  # noqa: E402
from tests.test_du import push_shared_set  # noqa: E402


def test_du_and_quotas_on_s3(moto_server: S3Server) -> None:  # noqa: F811 - the fixture
    bucket = moto_server.new_bucket()
    config = {"version": 0.1, "storage": {"s3": moto_server.options(bucket), "delete": {"enabled": True}},
              "quotas": [{"pattern": "team-a", "scope": "namespace", "limit": 20_000}]}
    app = create_app(config, create_plugin_manager())
    c = falcon.testing.TestClient(app)
    exp = push_shared_set(c)
    store = app.registry_context.store
    report = disk_usage(Store(store.driver))
    assert {r.name: r.bytes for r in report.repositories} == {n: sum(b.values()) for n, b in exp.repos.items()}
    assert report.total_bytes == exp.total()
    team = sum(sum(exp.repos[n].values()) for n in ("team-a/web", "team-a/api"))
    # The counters kept on each push, in the bucket, agree with the walk.
    assert read_usage(store.driver, "team-a") == (0, team)
    assert read_usage(store.driver, "solo")[0] == sum(exp.repos["solo"].values())
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket, Prefix="docker/registry/v2/")
            .get("Contents", [])]
    assert any("/team-a/_usage/w-" in k for k in keys), keys
    # A namespace push over the limit is refused; --rebuild through the driver keeps the numbers.
    big = b"z" * (20_000 - team + 1)
    r = c.simulate_post("/v2/team-a/more/blobs/uploads/",
                        params={"digest": "sha256:" + hashlib.sha256(big).hexdigest()}, body=big)
    assert r.status_code == 403 and "namespace 'team-a'" in r.json["errors"][0]["message"], r.text
    rebuild_counters(Store(store.driver))
    assert read_usage(store.driver, "team-a") == (0, team)
    keys = [o["Key"] for o in moto_server.client().list_objects_v2(Bucket=bucket, Prefix="docker/registry/v2/")
            .get("Contents", [])]
    assert not any("/_usage/w-" in k for k in keys) and any(k.endswith("/team-a/_usage/base") for k in keys)
    assert json.loads(json.dumps(report.to_dict()))["total"]["repositories"] == 3
    app.shutdown()
