"""Fuzzing the whole HTTP API with schemathesis against schemas/openapi.yaml.

Every operation of the description is fuzzed in-process (WSGI, no sockets) over an in-memory registry
seeded with an image, so the spec's examples hit real content: first its examples, then the
coverage phase (boundary and schema-violating values, undeclared methods), then Hypothesis-generated
positive and negative cases. A stateful run follows the description's links (start an upload, then
patch, finish, fetch and delete it; push a manifest, then fetch and delete it).

Every response must: not be a 5xx; have a status, content type, headers and body the description
allows; carry the OCI error envelope when it is an error; carry `Docker-Distribution-API-Version`.

The budget is fixed: the seed and `derandomize` make every run of the same session send the same
requests (Hypothesis also draws constants from the modules loaded, so running other test files first
moves the count by a percent or so), and `test_budget` (last in this module) checks the total stays
within a few thousand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from registry.app import create_app
from registry.errors import RegistryError
from registry.plugins import by_name, create_plugin_manager
from tests.conftest import Pusher

SPEC = Path(__file__).resolve().parent.parent / "schemas" / "openapi.yaml"

#: Examples per operation in the fuzzing phase (positive and negative modes share them); with the
#: examples and coverage phases and the stateful run this comes to about 2,700 requests in all.
MAX_EXAMPLES = 45
STATEFUL_EXAMPLES = 30
STATEFUL_STEPS = 8
#: The most requests the whole module may send; the least it must (so a broken generator is noticed).
BUDGET = (1500, 6000)
SEED = 20240501

# Schemathesis's own settings, as its schemathesis.toml would hold them. `positive_data_acceptance`
# allows 400 and 416: whether a schema-valid request succeeds depends on the registry's state (a
# manifest's blobs must have been pushed, a digest must match the body, a range must fit the blob).
CONFIG = f"""
seed = {SEED}
suppress-health-check = ["all"]

[generation]
mode = "all"
max-examples = {MAX_EXAMPLES}
deterministic = true
database = "none"
no-shrink = true

# An upload session is consumed by more than DELETE: a PUT that finishes it (201), or one whose digest
# does not match (400, the session is cancelled, as in Distribution). This check only knows DELETE,
# so POST -> PUT -> DELETE on one session reads to it as "created, then missing".
[checks.ensure_resource_availability]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", 400, 401, 403, 404, 416, 429]

[phases.coverage]
unexpected-methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "TRACE"]

# OPTIONS answers from the route alone: a few cases show that much.
[[operations]]
include-method = "OPTIONS"
generation = {{ max-examples = 8 }}
"""

EMPTY_JSON = b"{}"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Counter:
    """WSGI middleware counting the requests that reach the app, and by status class."""

    def __init__(self, app) -> None:
        self.app = app
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.started = time.monotonic()

    def __call__(self, environ, start_response):
        if not self.requests:
            self.started = time.monotonic()
        self.requests += 1

        def counting_start_response(status, headers, exc_info=None):
            key = status[0] + "xx"
            self.by_status[key] = self.by_status.get(key, 0) + 1
            return start_response(status, headers, exc_info)

        return self.app(environ, counting_start_response)


def _seeded_app():
    pm = create_plugin_manager()
    driver = by_name(pm, "registry_storage_drivers")["inmemory"].factory({})
    app = create_app({"version": 0.1, "storage": {"inmemory": {}, "delete": {"enabled": True}}}, pm, driver=driver)
    # The spec's examples name this content: repository fuzz/seeded, tag latest, the empty JSON blob.
    pusher = Pusher(falcon.testing.TestClient(app))
    pusher.blob("fuzz/seeded", EMPTY_JSON)
    subject, _ = pusher.image("fuzz/seeded", "latest")
    pusher.image("fuzz/seeded", "signature", layers=(b"sig",), extra={
        "artifactType": "application/vnd.example.sig",
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    })
    for i in range(3):
        pusher.image(f"fuzz/other{i}", f"v{i}", layers=(f"layer-{i}".encode(),))
    return app


APP = Counter(_seeded_app())
schema = schemathesis.openapi.from_path(SPEC, config=SchemathesisConfig.from_str(CONFIG))
schema.app = APP

_KNOWN_CODES = set()


def _error_codes() -> set[str]:
    if not _KNOWN_CODES:
        stack = [RegistryError]
        while stack:
            cls = stack.pop()
            _KNOWN_CODES.add(cls.code)
            stack.extend(cls.__subclasses__())
    return _KNOWN_CODES


def oci_error_body(ctx, response, case) -> None:
    """Every error response (4xx and 5xx) carries the OCI error envelope as JSON."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", f"error with Content-Type {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and body["errors"], body
    for entry in body["errors"]:
        assert isinstance(entry.get("code"), str) and isinstance(entry.get("message"), str), entry
        assert entry["code"] in _error_codes(), entry
        assert set(entry) <= {"code", "message", "detail"}, entry
    return None


def api_version_header(ctx, response, case) -> None:
    """`Docker-Distribution-API-Version: registry/2.0` on every response, errors included."""
    assert response.headers.get("docker-distribution-api-version") == ["registry/2.0"], response.headers
    return None


CHECKS = [oci_error_body, api_version_header]
#: Cases generated per operation (the coverage phase's undeclared-method probes come on top).
CASES: dict[str, int] = {}


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_api(case):
    CASES[case.operation.label] = CASES.get(case.operation.label, 0) + 1
    case.call_and_validate(additional_checks=CHECKS)


class APIWorkflow(schema.as_state_machine()):
    def validate_response(self, response, case, additional_checks=None, **kwargs):
        super().validate_response(response, case, additional_checks=CHECKS, **kwargs)


TestAPIWorkflow = APIWorkflow.TestCase
TestAPIWorkflow.settings = settings(
    max_examples=STATEFUL_EXAMPLES,
    stateful_step_count=STATEFUL_STEPS,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_budget():
    """Runs last: the module sent a bounded number of requests, none answered with a 5xx."""
    operations = len(list(schema.get_all_operations()))
    if len(CASES) < operations:
        pytest.skip(f"only {len(CASES)} of {operations} operations were fuzzed in this session")
    elapsed = time.monotonic() - APP.started
    print(f"\nfuzzed {APP.requests} requests in {elapsed:.1f}s: {dict(sorted(APP.by_status.items()))}")
    for label, count in sorted(CASES.items()):
        print(f"  {count:5d}  {label}")
    low, high = BUDGET
    assert low <= APP.requests <= high, APP.requests
    assert "5xx" not in APP.by_status
